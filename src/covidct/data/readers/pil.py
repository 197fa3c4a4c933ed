"""PNG, JPEG and BMP through PIL: any mode (L, RGB, RGBA, P -> luminance); 8-bit / 255, 16-bit normalised."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from covidct.data.readers.base import ImageInfo, require_finite, to_unit
from covidct.data.window import Window
from covidct.errors import DataError

#: Above this many pixels an integer image is converted to float32 a strip at a time (see :func:`_to_unit`).
STRIP_PIXELS = 16 * 1024 * 1024


def load_pil(path: Path, norm: str | tuple[float, float], win: Window) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("L", "I", "F") or im.mode.startswith("I;16"):
                return _to_unit(im, path, norm, win)
            # RGB, RGBA, P, LA, 1, CMYK, ... -> luminance, as PIL defines it
            return _to_unit(im.convert("L"), path, norm, win)
    except UnidentifiedImageError:
        raise DataError(
            path, f"not a readable {path.suffix or 'image'} file (unknown or corrupt image data)"
        ) from None
    except Image.DecompressionBombError as exc:
        raise DataError(path, f"image too large ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DataError(path, f"truncated or corrupt image ({exc})") from None


def _array(im: Any) -> np.ndarray:
    arr = np.asarray(im)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def _to_unit(im: Any, path: Path, norm: str | tuple[float, float], win: Window) -> np.ndarray:
    """The decoded image as float32 in [0, 1].

    A huge integer image (a 64-Mpixel 16-bit PNG upload, issue 11) is converted in strips into one float32
    buffer, with min-max taken from PIL's extrema, so no full-size integer copy sits beside PIL's own pixels
    and the result: the same values as the whole-image path, at about half its peak memory."""
    if im.width * im.height <= STRIP_PIXELS or im.mode == "F":
        arr = _array(im)
        if arr.ndim != 2:
            raise DataError(path, f"expected a 2-D grayscale image, got shape {arr.shape}")
        return to_unit(require_finite(arr, path), norm, win)
    if norm == "minmax" and im.mode != "L":  # 8-bit images are divided by 255, never min-max scaled
        lo, hi = (float(v) for v in im.getextrema())
        if hi <= lo:
            return np.zeros((im.height, im.width), dtype=np.float32)
        norm = (lo, hi)
    out = np.empty((im.height, im.width), dtype=np.float32)
    rows = max(1, STRIP_PIXELS // (8 * im.width))
    for top in range(0, im.height, rows):
        bottom = min(im.height, top + rows)
        out[top:bottom] = to_unit(_array(im.crop((0, top, im.width, bottom))), norm, win)
    return out


def probe_pil(path: Path, fmt: str) -> ImageInfo:
    """Decode a PNG/JPEG/BMP file's pixels (without normalising them): its size, or DataError."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return ImageInfo(fmt, im.height, im.width)
    except UnidentifiedImageError:
        raise DataError(
            path, f"not a readable {path.suffix or 'image'} file (unknown or corrupt image data)"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise DataError(path, f"truncated or corrupt image ({exc})") from None
