"""The PyTorch backend of :class:`~covidct.inference.predictor.Predictor` (imports torch; the ONNX path never
imports this module).

CPU defaults, each measured on the 2-core dev machine (docs/speed.md): glibc malloc tuning (removes the 3-7x
page-fault slowdown of batched high-resolution EfficientNets), channels-last weights and inputs (oneDNN's
preferred layout for depthwise convs), ``torch.inference_mode``. On CUDA: channels-last + fp16 autocast.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

from covidct.errors import CheckpointError, ConfigError
from covidct.inference.predictor import Predictor
from covidct.inference.runtime import tune_malloc
from covidct.models.checkpoint import LoadedCheckpoint, load_checkpoint
from covidct.models.metadata import ModelMeta


def resolve_device(device: str) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"``; CUDA without a GPU is a :class:`ConfigError`."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}: use cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda requested but torch sees no CUDA GPU")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported device {device!r}: use cpu or cuda")
    return dev


def load_checkpoint_checked(path: str | os.PathLike[str]) -> LoadedCheckpoint:
    """:func:`~covidct.models.checkpoint.load_checkpoint`, also mapping the low-level errors torch's
    weights-only unpickler raises on some truncated/garbage files (``struct.error``, ...) to
    CheckpointError."""
    try:
        return load_checkpoint(Path(path))
    except (struct.error, UnicodeDecodeError, IndexError, EOFError) as exc:
        raise CheckpointError(f"{path}: corrupt or not a covidct checkpoint ({type(exc).__name__})") from None


class TorchPredictor(Predictor):
    """A covidct checkpoint run by PyTorch."""

    backend = "torch"

    def __init__(
        self,
        model: torch.nn.Module,
        meta: ModelMeta,
        *,
        device: str = "cpu",
        threads: int | None = None,
        batch_size: int = 1,
        channels_last: bool = True,
        amp: bool | None = None,
        malloc_tuning: bool = True,
        prefetch: bool = True,
    ) -> None:
        super().__init__(meta, batch_size=batch_size, prefetch=prefetch)
        if malloc_tuning:
            tune_malloc()
        if threads:
            torch.set_num_threads(int(threads))
        self.device = resolve_device(device)
        self.channels_last = channels_last
        self.amp = (self.device.type == "cuda") if amp is None else amp
        self.precision = "fp16" if self.amp and self.device.type == "cuda" else "fp32"  # autocast: CUDA only
        model = model.eval().to(self.device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model

    @classmethod
    def load(cls, path: str | os.PathLike[str], **kwargs: Any) -> TorchPredictor:
        """From a covidct checkpoint (clear :class:`~covidct.errors.CheckpointError` if missing or corrupt);
        the predictor keeps the checkpoint's whole metadata (timm name, CAM layer, creation time)."""
        loaded = load_checkpoint_checked(path)
        return cls(loaded.model, loaded.meta, **kwargs)

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, enabled=self.amp and self.device.type == "cuda"),
        ):
            out = self.model(x)
        return out.float().cpu().numpy()
