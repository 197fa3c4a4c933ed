"""Slice -> network input, in numpy + PIL only (no torch), so the ONNX path and the web service share it.

A slice is a 2-D float32 array in [0, 1] (see :mod:`covidct.data.readers`). The network sees it resized to
``image_size`` x ``image_size``, replicated to 3 channels (the backbones are ImageNet models), and normalised
with the backbone's mean and std. Optionally (``crop`` / ``standardize``, recorded in checkpoints and ONNX
metadata under ``preprocess``) it is first cropped to the lungs and/or rescaled inside them
(:mod:`covidct.data.crop`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from covidct.data.crop import CROPS, DEFAULT_MARGIN, STANDARDIZE, Box, lung_preprocess
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


#: Slices above this many pixels are box-reduced in numpy before PIL resizes them (see :func:`pil_float`).
HUGE_PIXELS = 16 * 1024 * 1024


def box_reduce(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor`` x ``factor`` blocks (float32; edge rows/columns beyond a whole block dropped),
    computed along one axis at a time so no full-size copy of ``image`` is made."""
    h, w = (n // factor * factor for n in image.shape)
    rows = np.add.reduceat(image[:h, :w], np.arange(0, h, factor), axis=0, dtype=np.float32)
    out = np.add.reduceat(rows, np.arange(0, w, factor), axis=1, dtype=np.float32)
    out /= np.float32(factor * factor)
    return out


def pil_float(image: np.ndarray, target: tuple[int, int]) -> Image.Image:
    """``image`` as a PIL "F" image to be resized to ``target`` (width, height).

    PIL copies the array; for a huge slice (over :data:`HUGE_PIXELS`: a 64-Mpixel upload is 256 MB in
    float32) the copy is avoided by first box-reducing it by the largest integer factor that keeps it at
    least twice the target, so PIL's bilinear downscale sees nearly the same pixels (issue 11)."""
    array = np.asarray(image, dtype=np.float32)
    if array.size > HUGE_PIXELS:
        factor = min(array.shape[0] // (2 * target[1]), array.shape[1] // (2 * target[0]))
        if factor >= 2:
            array = box_reduce(array, factor)
    return Image.fromarray(np.ascontiguousarray(array), mode="F")


def resize_slice(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of a 2-D float slice to ``size`` x ``size`` (float32)."""
    if image.ndim != 2:
        raise ConfigError(f"expected a 2-D slice, got shape {image.shape}")
    if image.shape == (size, size):
        return image.astype(np.float32, copy=False)
    pil = pil_float(image, (size, size))
    return np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)


@dataclass(frozen=True, kw_only=True)
class Preprocess:
    """(Lung crop / standardisation,) resize, replicate to 3 channels, normalise: ``(H, W)`` in [0, 1] ->
    ``(3, S, S)`` float32."""

    image_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop: str = "none"  # "lungs": crop to the lungs' bounding box (+ margin) before resizing
    standardize: str = "none"  # "lungs": 1st/99th percentiles inside the lung mask -> 0/1
    crop_margin: float = DEFAULT_MARGIN

    def __post_init__(self) -> None:
        check_image_size(self.image_size)
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(f"mean/std must have 3 entries and std > 0, got {self.mean}, {self.std}")
        if self.crop not in CROPS:
            raise ConfigError(f"crop must be one of {', '.join(CROPS)}, got {self.crop!r}")
        if self.standardize not in STANDARDIZE:
            choices = ", ".join(STANDARDIZE)
            raise ConfigError(f"standardize must be one of {choices}, got {self.standardize!r}")
        if not 0.0 <= self.crop_margin <= 0.5:
            raise ConfigError(f"crop_margin must be in [0, 0.5], got {self.crop_margin}")

    @classmethod
    def from_meta(cls, meta: Any) -> Preprocess:
        """From a :class:`~covidct.models.metadata.ModelMeta` (object or mapping) with ``image_size``,
        ``mean``, ``std`` and optionally ``preprocess`` (:meth:`record`; absent in older checkpoints: no
        crop)."""
        get: Callable[..., Any] = (
            meta.get if isinstance(meta, Mapping) else lambda k, d=None: getattr(meta, k, d)
        )
        lungs = dict(get("preprocess", None) or {})
        return cls(
            image_size=int(get("image_size")),
            mean=tuple(get("mean")),
            std=tuple(get("std")),
            crop=str(lungs.get("crop", "none")),
            standardize=str(lungs.get("standardize", "none")),
            crop_margin=float(lungs.get("crop_margin", DEFAULT_MARGIN)),
        )

    @property
    def uses_lungs(self) -> bool:
        """Whether a lung mask is computed for each slice (crop or standardisation on)."""
        return self.crop != "none" or self.standardize != "none"

    def record(self) -> dict[str, Any]:
        """The lung options as stored in checkpoint / ONNX metadata (``preprocess``)."""
        return {"crop": self.crop, "standardize": self.standardize, "crop_margin": self.crop_margin}

    def _lungs(self, image: np.ndarray) -> tuple[np.ndarray, Box, bool]:
        if image.ndim != 2:
            raise ConfigError(f"expected a 2-D slice, got shape {image.shape}")
        return lung_preprocess(image, crop=self.crop, standardize=self.standardize, margin=self.crop_margin)

    def box(self, image: np.ndarray) -> Box:
        """The region of ``image`` the network sees (the whole slice without a lung crop)."""
        return self._lungs(image)[1] if self.crop != "none" else (0, image.shape[0], 0, image.shape[1])

    def prepare_flagged(self, image: np.ndarray) -> tuple[np.ndarray, bool]:
        """``(H, W)`` -> ``(S, S)`` in [0, 1] (lung options, resize) and whether lungs were found."""
        image, _, found = self._lungs(image)
        return self.resize(image), found

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """``(H, W)`` -> ``(S, S)`` in [0, 1]: the lung options, then the resize."""
        return self.prepare_flagged(image)[0]

    def resize(self, image: np.ndarray) -> np.ndarray:
        return resize_slice(image, self.image_size)

    def normalize(self, resized: np.ndarray) -> np.ndarray:
        """``(S, S)`` in [0, 1] -> ``(3, S, S)`` normalised."""
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        return (resized[None, :, :].astype(np.float32, copy=False) - mean) / std

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.normalize(self.prepare(image))

    def batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Stack several slices into ``(N, 3, S, S)``."""
        return np.stack([self(image) for image in images]).astype(np.float32, copy=False)

    def batch_flagged(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[bool]]:
        """:meth:`batch` and, per slice, whether its lungs were found (always ``True`` without lungs)."""
        prepared = [self.prepare_flagged(image) for image in images]
        pixels = np.stack([self.normalize(p) for p, _ in prepared]).astype(np.float32, copy=False)
        return pixels, [found for _, found in prepared]
