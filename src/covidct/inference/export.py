"""Export a covidct checkpoint to ONNX and check it against PyTorch (issue #5).

The graph has one input ``input`` (``batch x 3 x S x S``, float32, preprocessed as in
:mod:`covidct.data.preprocess`) and one output ``logits`` (``batch x n_classes``); the batch axis is dynamic,
the spatial size is the checkpoint's. Class names, input size, mean/std, CT window, model name and covidct
version go into ``metadata_props`` (see :mod:`covidct.inference.onnx_meta`), so the file alone is enough to
predict.

Exporter: the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``) first. With a fixed
spatial size it traces all 20 registry backbones at their paper input sizes, including timm's
TF-"same"-padding EfficientNets (their runtime padding becomes constant ``Pad`` nodes), in seconds. The dynamo
exporter (torch 2.14's default) is the fallback: it also handles what the tracer cannot (timm's VGG head at
inputs below 224 px, where ``adaptive_avg_pool2d`` upsamples), but is slower on large models.
``metadata_props["exporter"]`` records which one ran. Checked by tests over a representative set and all 20
(marked slow).

Parity: the max absolute logit difference between onnxruntime and PyTorch on the same random inputs must be
<= ``tolerance x max(1, max |logit|)``: an absolute 1e-3 for trained models (logits of order 1-10), relative
for untrained random-weight nets whose logits can reach 1e8 (InceptionV3 at 75 px).
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from covidct import __version__
from covidct.errors import CheckpointError, ConfigError
from covidct.inference.onnx_meta import WEIGHTS_HASH_KEY, onnx_metadata, onnx_weights_sha256, open_session
from covidct.inference.runtime import ort_session_options
from covidct.inference.torch_backend import load_checkpoint_checked
from covidct.models.metadata import ModelMeta
from covidct.utils import atomic_path

OPSET = 17
DEFAULT_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ExportResult:
    """An exported model and its parity check against PyTorch."""

    path: Path
    model_name: str
    classes: tuple[str, ...]
    input_size: int
    max_abs_diff: float | None  # None when the check was skipped
    max_abs_logit: float | None
    exporter: str
    tolerance: float
    opset: int


def export_onnx(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    check: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    opset: int = OPSET,
    check_batch: int = 2,
    seed: int = 0,
) -> ExportResult:
    """Export ``checkpoint`` to ``out`` (atomic) and compare onnxruntime with PyTorch on the same random
    inputs.

    Raises:
        CheckpointError: unreadable checkpoint, a failed export, or a parity difference above ``tolerance``.
    """
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise ConfigError(f"{out}: the exported file must end in .onnx")
    if tolerance <= 0:
        raise ConfigError(f"tolerance must be > 0, got {tolerance}")
    loaded = load_checkpoint_checked(checkpoint)
    meta = loaded.meta
    model = loaded.model.eval()
    with atomic_path(out) as tmp:
        exporter = export_module(model, tmp, image_size=meta.image_size, opset=opset)
        write_metadata(tmp, meta, exporter=exporter)
        diff = scale = None
        if check:
            diff, scale = parity_check(model, tmp, image_size=meta.image_size, batch=check_batch, seed=seed)
            allowed = tolerance * max(1.0, scale)
            if not np.isfinite(diff) or diff > allowed:
                raise CheckpointError(
                    f"{checkpoint}: ONNX export does not match PyTorch (max abs logit diff {diff:.3g} > "
                    f"{allowed:.3g} = tolerance x max(1, max |logit| {scale:.3g})); nothing written to {out}"
                )
    return ExportResult(
        path=out,
        model_name=meta.model_name,
        classes=meta.classes,
        input_size=meta.image_size,
        max_abs_diff=diff,
        max_abs_logit=scale,
        tolerance=tolerance,
        opset=opset,
        exporter=exporter,
    )


def export_module(
    model: torch.nn.Module, path: str | os.PathLike[str], *, image_size: int, opset: int = OPSET
) -> str:
    """Trace ``model`` (eval mode, CPU) into an ONNX file with a dynamic batch axis; returns the exporter
    used.

    The TorchScript exporter first; if it cannot express the graph (e.g. timm's VGG head upsampling a feature
    map smaller than 7x7 with ``adaptive_avg_pool2d`` at input sizes below 224), the dynamo exporter.
    """
    model = model.to(memory_format=torch.contiguous_format)
    dummy = torch.zeros(1, 3, image_size, image_size)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings from TF-"same" padding; exporter deprecation notes
        try:
            torch.onnx.export(
                model,
                (dummy,),
                str(path),
                dynamo=False,
                opset_version=opset,
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                input_names=["input"],
                output_names=["logits"],
                do_constant_folding=True,
            )
            return "torchscript"
        except Exception as exc:  # the exporters raise many types; fall back, then report both
            first = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the dynamo exporter prints progress lines
                torch.onnx.export(
                    model,
                    (dummy,),
                    str(path),
                    dynamo=True,
                    opset_version=max(opset, 18),
                    external_data=False,
                    dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                    input_names=["input"],
                    output_names=["logits"],
                    do_constant_folding=True,
                )
            return "dynamo"
        except Exception as exc:
            second = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    raise CheckpointError(
        f"ONNX export failed for this model (torchscript exporter: {first}; dynamo: {second})"
    )


def write_metadata(path: str | os.PathLike[str], meta: ModelMeta, **extra: str) -> None:
    """Write covidct's ``metadata_props`` (and the weights hash) into the ONNX file at ``path``."""
    proto = onnx.load(str(path))
    props = onnx_metadata(meta, **extra)
    props[WEIGHTS_HASH_KEY] = onnx_weights_sha256(proto)
    props["covidct_version"] = props.get("covidct_version") or __version__
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "covidct"
    proto.producer_version = __version__
    onnx.save(proto, str(path))


def parity_check(
    model: torch.nn.Module,
    onnx_path: str | os.PathLike[str],
    *,
    image_size: int,
    batch: int = 2,
    seed: int = 0,
) -> tuple[float, float]:
    """Max absolute logit difference between PyTorch and onnxruntime on the same random (normal) inputs, and
    the largest absolute PyTorch logit (the scale the difference is judged against)."""
    x = np.random.default_rng(seed).standard_normal((batch, 3, image_size, image_size)).astype(np.float32)
    with torch.inference_mode():
        expected = model(torch.from_numpy(x)).float().numpy()
    session = open_session(onnx_path, ort_session_options())
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    if got.shape != expected.shape:
        raise CheckpointError(f"{onnx_path}: ONNX output shape {got.shape} != PyTorch {expected.shape}")
    return float(np.abs(got - expected).max()), float(np.abs(expected).max())


def export_to_temp(checkpoint: str | os.PathLike[str]) -> Path:
    """Export to a temporary file removed at exit (for ``predict --backend onnx CHECKPOINT``)."""
    folder = Path(tempfile.mkdtemp(prefix="covidct-onnx-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return export_onnx(checkpoint, folder / f"{Path(checkpoint).stem}.onnx").path
