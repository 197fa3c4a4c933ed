"""The onnxruntime backend of :class:`~covidct.inference.predictor.Predictor`: covidct's ONNX export, its
metadata read from ``metadata_props`` (:mod:`covidct.inference.onnx_meta`). No torch."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from covidct.errors import ConfigError
from covidct.inference.onnx_meta import open_session, session_meta, verify_weights
from covidct.inference.predictor import Predictor
from covidct.inference.runtime import ort_session_options


class OnnxPredictor(Predictor):
    """onnxruntime on CPU (or CUDA if its provider is installed); the session is thread-safe."""

    backend = "onnx"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        threads: int | None = None,
        device: str = "cpu",
        batch_size: int = 1,
        prefetch: bool = True,
    ) -> None:
        self.path = Path(path)
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ConfigError(
                    "device cuda: this onnxruntime has no CUDAExecutionProvider (pip onnxruntime-gpu)"
                )
            providers.insert(0, "CUDAExecutionProvider")
        elif device != "cpu":
            raise ConfigError(f"unknown device {device!r}: use cpu or cuda")
        self.session = open_session(self.path, ort_session_options(threads), providers)
        verify_weights(self.path, self.session)
        super().__init__(session_meta(self.session, self.path), batch_size=batch_size, prefetch=prefetch)
        self.input_name = self.session.get_inputs()[0].name

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(pixels, dtype=np.float32)})[0]
        return np.asarray(out)
