"""Backend and precision names, and their validation (#15). No imports beyond errors: the CLI reads these for
its options. Which backend runs a model file: :mod:`covidct.inference.load`.

- backends: ``torch`` (a checkpoint), ``onnx`` (onnxruntime; a checkpoint is exported to a temporary ONNX
  file first), ``openvino`` (reads the ONNX export directly; a checkpoint is exported first).
- precisions: ``auto`` (openvino: bf16 where the CPU reports BF16 capability, unless a parity record says the
  model disagrees with fp32, see :mod:`covidct.inference.parity`; torch: fp16 autocast on CUDA; else fp32),
  ``fp32``, ``bf16`` (openvino only).
"""

from __future__ import annotations

from covidct.errors import ConfigError

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
