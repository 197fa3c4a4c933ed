"""Images the service sends back: base64 PNGs, thumbnails, display-size slices, jet-coloured CAM overlays."""

from __future__ import annotations

import base64
import functools
import io

import numpy as np
from PIL import Image

from covidct.data.preprocess import pil_float

THUMBNAIL_SIZE = 128
OVERLAY_ALPHA = 0.4
DISPLAY_MAX = 1024  # /explain images, heatmaps and overlays: longer side at most this (pixels)


def png_base64(array: np.ndarray) -> str:
    """A uint8 (H, W), (H, W, 3) or (H, W, 4) array as a base64 PNG string."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", optimize=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def thumbnail(image: np.ndarray, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    pil = Image.fromarray(to_uint8(image))
    pil.thumbnail((size, size), Image.Resampling.BILINEAR)
    return np.asarray(pil)


def display_image(image: np.ndarray, max_side: int = DISPLAY_MAX) -> np.ndarray:
    """``image`` (float, [0, 1]) shrunk so its longer side is at most ``max_side`` (float32; as is if
    smaller)."""
    h, w = image.shape
    if max(h, w) <= max_side:
        return image.astype(np.float32, copy=False)
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    pil = pil_float(image, size)
    return np.asarray(pil.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0), dtype=np.float32)


@functools.cache
def jet_lut() -> np.ndarray:
    """The jet colormap as a 256 x RGBA uint8 table (matplotlib is imported on first use: only /explain)."""
    from matplotlib import colormaps

    return (colormaps["jet"](np.linspace(0.0, 1.0, 256)) * 255.0 + 0.5).astype(np.uint8)


def colorize(cam: np.ndarray) -> np.ndarray:
    """A CAM in [0, 1] -> RGBA uint8 with the jet colormap (as the paper's figures and ``explain/render``),
    via a 256-entry table (no float64 RGBA copy of the map)."""
    return jet_lut()[to_uint8(cam)]


def overlay(image: np.ndarray, heat_rgba: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """The heatmap blended over the slice, computed in float32."""
    gray = np.clip(image, 0.0, 1.0).astype(np.float32, copy=False)[..., None]
    mixed = np.float32(1.0 - alpha) * gray + np.float32(alpha / 255.0) * heat_rgba[..., :3].astype(np.float32)
    return to_uint8(mixed)
