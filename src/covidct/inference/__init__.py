"""Inference: predictors per backend, ONNX export, parity, benchmarks, external evaluation.

``from covidct.inference import load_predictor`` (lazy: importing this package loads no backend).
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_predictor"]


def __getattr__(name: str) -> Any:
    if name == "load_predictor":
        from covidct.inference.load import load_predictor

        return load_predictor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
