"""PNG, JPEG and BMP through PIL: any mode (L, RGB, RGBA, P -> luminance); 8-bit / 255, 16-bit normalised."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from covidct.data.readers.base import ImageInfo, require_finite, to_unit
from covidct.data.window import Window
from covidct.errors import DataError


def load_pil(path: Path, norm: str | tuple[float, float], win: Window) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("L", "I", "F") or im.mode.startswith("I;16"):
                arr = np.asarray(im)
            else:  # RGB, RGBA, P, LA, 1, CMYK, ... -> luminance, as PIL defines it
                arr = np.asarray(im.convert("L"))
    except UnidentifiedImageError:
        raise DataError(
            path, f"not a readable {path.suffix or 'image'} file (unknown or corrupt image data)"
        ) from None
    except Image.DecompressionBombError as exc:
        raise DataError(path, f"image too large ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DataError(path, f"truncated or corrupt image ({exc})") from None
    if arr.ndim != 2:
        raise DataError(path, f"expected a 2-D grayscale image, got shape {arr.shape}")
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return to_unit(require_finite(arr, path), norm, win)


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
