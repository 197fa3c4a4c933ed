"""Slice -> network input, in numpy + PIL only (no torch), so the ONNX path and the web service share it.

A slice is a 2-D float32 array in [0, 1] (see :mod:`covidct.data.readers`). The network sees it resized to
``image_size`` x ``image_size``, replicated to 3 channels (the backbones are ImageNet models), and normalised
with the backbone's mean and std.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from covidct.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Largest network input side. The paper's largest network (EfficientNet-B7) takes 600 px and CT slices are
#: 512 px; one 3 x 4096 x 4096 float32 input is already 200 MB before the first convolution, so larger sizes
#: only exhaust memory (``--image-size 100000`` asked for a 120 GB batch).
MAX_IMAGE_SIZE = 4096


def check_image_size(value: int, name: str = "image_size", minimum: int = 8) -> None:
    """ConfigError unless ``minimum <= value <= MAX_IMAGE_SIZE``, with the reason for the bound."""
    if not minimum <= value <= MAX_IMAGE_SIZE:
        raise ConfigError(
            f"{name} must be between {minimum} and {MAX_IMAGE_SIZE} px, got {value} (CT slices are 512 px "
            "and the paper's largest input is 600 px; larger inputs only exhaust memory)"
        )


def resize_slice(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of a 2-D float slice to ``size`` x ``size`` (float32)."""
    if image.ndim != 2:
        raise ConfigError(f"expected a 2-D slice, got shape {image.shape}")
    if image.shape == (size, size):
        return image.astype(np.float32, copy=False)
    pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32), mode="F")
    return np.asarray(pil.resize((size, size), Image.BILINEAR), dtype=np.float32)


@dataclass(frozen=True, kw_only=True)
class Preprocess:
    """Resize, replicate to 3 channels, normalise: ``(H, W)`` in [0, 1] -> ``(3, S, S)`` float32."""

    image_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        check_image_size(self.image_size)
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(f"mean/std must have 3 entries and std > 0, got {self.mean}, {self.std}")

    @classmethod
    def from_meta(cls, meta: Any) -> Preprocess:
        """From a checkpoint meta (object or mapping) with ``image_size``, ``mean``, ``std``."""
        get = meta.get if isinstance(meta, Mapping) else lambda k: getattr(meta, k)
        return cls(image_size=int(get("image_size")), mean=tuple(get("mean")), std=tuple(get("std")))

    def resize(self, image: np.ndarray) -> np.ndarray:
        return resize_slice(image, self.image_size)

    def normalize(self, resized: np.ndarray) -> np.ndarray:
        """``(S, S)`` in [0, 1] -> ``(3, S, S)`` normalised."""
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        return (resized[None, :, :].astype(np.float32, copy=False) - mean) / std

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.normalize(self.resize(image))

    def batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Stack several slices into ``(N, 3, S, S)``."""
        return np.stack([self(image) for image in images]).astype(np.float32, copy=False)
