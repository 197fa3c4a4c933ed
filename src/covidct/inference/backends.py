"""Backend and precision selection: one loader for ``predict``, ``serve``, ``bench``, ``evaluate`` (#15).

``load_predictor(path, backend=None, precision="auto", ...)``:

- ``backend=None``: by suffix (``.onnx`` -> onnxruntime, else a torch checkpoint); ``"torch"``, ``"onnx"``
  (a checkpoint is exported to a temporary ONNX file first), ``"openvino"`` (reads the ONNX export directly; a
  checkpoint is exported first).
- ``precision``: ``"auto"`` (openvino: bf16 where the CPU reports BF16 capability, unless a parity record says
  the model disagrees with fp32, see :mod:`covidct.inference.parity`; torch: fp16 autocast on CUDA; else
  fp32),
  ``"fp32"``, ``"bf16"`` (openvino only).

No torch import here (the ONNX/OpenVINO paths never import torch).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from covidct.errors import ConfigError

if TYPE_CHECKING:
    from covidct.inference.parity import ParityReport
    from covidct.inference.predictor import Predictor

BACKENDS = ("torch", "onnx", "openvino")
PRECISIONS = ("auto", "fp32", "bf16")
ONNX_SUFFIXES = (".onnx",)


def check_backend(backend: str | None, precision: str = "auto") -> None:
    """Unknown names and impossible combinations are :class:`ConfigError` (before any model is loaded)."""
    if backend is not None and backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}: use {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}: use {', '.join(PRECISIONS)}")
    if precision == "bf16" and backend != "openvino":
        raise ConfigError("precision bf16 runs with --backend openvino")


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
    from covidct.inference.predictor import OnnxPredictor

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
        return OnnxPredictor(path if is_onnx else _exported(path), **kwargs)
    from covidct.inference.torch_backend import TorchPredictor

    if precision == "fp32":
        kwargs.setdefault("amp", False)
    return TorchPredictor.load(path, **kwargs)


def _exported(checkpoint: Path) -> Path:
    from covidct.inference.export import export_to_temp

    return export_to_temp(checkpoint)
