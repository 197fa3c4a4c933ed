"""Which backend runs a model file: the one loader for ``predict``, ``serve``, ``bench``, ``evaluate`` (#15).

``load_predictor(path, backend=None, precision="auto", ...)``: ``backend=None`` picks by suffix (``.onnx``
-> onnxruntime, else a torch checkpoint); ``"onnx"`` and ``"openvino"`` export a checkpoint to a temporary
ONNX file first. Names and precisions: :mod:`covidct.inference.backends`. Backends are imported when chosen,
so the ONNX/OpenVINO paths never import torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from covidct.errors import ConfigError
from covidct.inference.backends import ONNX_SUFFIXES, check_backend

if TYPE_CHECKING:
    from covidct.inference.parity_record import ParityReport
    from covidct.inference.predictor import Predictor


def load_predictor(
    path: str | os.PathLike[str],
    *,
    backend: str | None = None,
    precision: str = "auto",
    parity: ParityReport | None = None,
    **kwargs: Any,
) -> Predictor:
    """A predictor for a checkpoint or ONNX file (see the module docstring). ``kwargs``: ``device``,
    ``threads``, ``batch_size``, ``prefetch``. ``parity`` overrides the model's saved parity record."""
    check_backend(backend, precision)
    path = Path(path)
    is_onnx = path.suffix.lower() in ONNX_SUFFIXES
    if is_onnx and backend == "torch":
        raise ConfigError(f"{path}: an ONNX model runs with --backend onnx or openvino, not torch")
    if backend == "openvino":
        from covidct.inference.openvino_backend import OpenVinoPredictor

        onnx_path = path if is_onnx else _exported(path)
        return OpenVinoPredictor(onnx_path, precision=precision, parity=parity, source=path, **kwargs)
    if is_onnx or backend == "onnx":
        from covidct.inference.onnx_backend import OnnxPredictor

        return OnnxPredictor(path if is_onnx else _exported(path), **kwargs)
    from covidct.inference.torch_backend import TorchPredictor

    if precision == "fp32":
        kwargs.setdefault("amp", False)
    return TorchPredictor.load(path, **kwargs)


def _exported(checkpoint: Path) -> Path:
    from covidct.inference.export import export_to_temp

    return export_to_temp(checkpoint)
