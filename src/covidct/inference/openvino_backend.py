"""The OpenVINO backend of :class:`~covidct.inference.predictor.Predictor` (issue #15): reads covidct's ONNX
export directly (``openvino.Core().read_model``), compiles it for the CPU with a precision hint. No torch.

Precision: ``fp32`` (``INFERENCE_PRECISION_HINT=f32``), ``bf16`` (``bf16``; native only where the CPU reports
``BF16`` in ``OPTIMIZATION_CAPABILITIES`` - AVX512-BF16/AMX; elsewhere OpenVINO emulates it, slowly),
``auto``: bf16 where the CPU reports BF16 and the model's parity record (``covidct bench --parity``) does not
show it disagreeing with fp32, else fp32. ``precision_note`` says why when ``auto`` refused bf16.

Thread safety: one infer request per calling thread (a compiled model may be shared; a request may not).
"""

from __future__ import annotations

import os
import threading
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from covidct.errors import CheckpointError, ConfigError, CovidCTWarning
from covidct.inference.onnx_meta import read_metadata_props, record_meta
from covidct.inference.parity_record import ParityReport, load_parity_record
from covidct.inference.predictor import Predictor
from covidct.inference.runtime import resolve_threads

_HINTS = {"fp32": "f32", "bf16": "bf16"}


@lru_cache(maxsize=1)
def _core() -> Any:
    return ov.Core()


@lru_cache(maxsize=1)
def cpu_capabilities() -> tuple[str, ...]:
    """OpenVINO's ``OPTIMIZATION_CAPABILITIES`` of the CPU (e.g. ``FP32``, ``INT8``, ``BF16``)."""
    return tuple(str(c) for c in _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def cpu_has_bf16() -> bool:
    """Whether the CPU runs bf16 natively (OpenVINO reports ``BF16``)."""
    return "BF16" in cpu_capabilities()


def resolve_precision(requested: str, parity: ParityReport | None = None) -> tuple[str, str]:
    """``(precision, note)``: what ``requested`` means on this CPU for a model with this parity record."""
    if requested in ("fp32", "bf16"):
        note = (
            ""
            if requested == "fp32" or cpu_has_bf16()
            else ("bf16 requested on a CPU without native BF16: OpenVINO emulates it (slower than fp32)")
        )
        return requested, note
    if requested != "auto":
        raise ConfigError(f"unknown precision {requested!r}: use auto, fp32 or bf16")
    if not cpu_has_bf16():
        return "fp32", ""
    if parity is not None and parity.precision == "bf16" and not parity.passed:
        return "fp32", f"auto precision: bf16 refused, using fp32 ({parity.summary()})"
    return "bf16", ""


class OpenVinoPredictor(Predictor):
    """OpenVINO on the CPU; the model file is covidct's ONNX export (metadata in ``metadata_props``)."""

    backend = "openvino"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        precision: str = "auto",
        threads: int | None = None,
        device: str = "cpu",
        batch_size: int = 1,
        prefetch: bool = True,
        parity: ParityReport | None = None,
        source: str | os.PathLike[str] | None = None,
    ) -> None:
        if device != "cpu":
            raise ConfigError(
                f"--backend openvino runs on the CPU (got device {device!r}); "
                "for CUDA use --backend torch or onnx"
            )
        self.path = Path(path)
        self.source = Path(source) if source is not None else self.path  # what the user gave (.pt or .onnx)
        self.record = read_metadata_props(self.path)
        super().__init__(record_meta(self.record, self.path), batch_size=batch_size, prefetch=prefetch)
        if precision == "auto" and parity is None and cpu_has_bf16():
            parity = load_parity_record(self.source)
        self.requested_precision = precision
        self.precision, self.precision_note = resolve_precision(precision, parity)
        if self.precision_note:
            warnings.warn(self.precision_note, CovidCTWarning, stacklevel=2)
        core = _core()
        try:
            model = core.read_model(str(self.path))
        except Exception as exc:  # openvino's own exception types
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise CheckpointError(f"{self.path}: OpenVINO cannot read this model ({reason})") from None
        self.threads = resolve_threads(threads)
        self.compiled = core.compile_model(
            model,
            "CPU",
            {
                "INFERENCE_PRECISION_HINT": _HINTS[self.precision],
                "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_NUM_THREADS": self.threads,
            },
        )
        self._local = threading.local()

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        request.infer({0: np.ascontiguousarray(pixels, dtype=np.float32)})
        return np.array(request.get_output_tensor(0).data, dtype=np.float32)
