"""TIFF through tifffile: 8/16-bit and float pages, planar or interleaved RGB; ``stack.tif#k`` is page k."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from covidct.data.readers.base import ImageInfo, luminance, require_finite, to_unit
from covidct.data.window import Window, parse_window
from covidct.errors import DataError


def load_tiff(path: Path, norm: str | tuple[float, float], win: Window, index: int | None) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            n_pages = len(tif.pages)
            if index is None and n_pages > 1:
                raise DataError(path, f"a TIFF stack of {n_pages} pages: pass '{path}#k' for page k")
            if index is not None and index >= n_pages:
                raise DataError(path, f"page #{index} out of range (the file has {n_pages} pages)")
            arr = tif.pages[index or 0].asarray()
    except DataError:
        raise
    except (tifffile.TiffFileError, OSError, ValueError, EOFError, IndexError) as exc:
        if "imagecodecs" in str(exc):
            raise DataError(path, f"compressed TIFF needs 'pip install imagecodecs' ({exc})") from None
        raise DataError(path, f"truncated or corrupt TIFF ({exc})") from None
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4):
        arr = np.moveaxis(arr, 0, -1)  # planar RGB
    arr = luminance(require_finite(arr, path))
    if arr.ndim != 2:
        raise DataError(path, f"expected a 2-D grayscale image, got shape {arr.shape}")
    return to_unit(arr, norm, win)


def probe_tiff(path: Path) -> ImageInfo:
    """Decode a TIFF's first page: its size and page count, or DataError."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            n = len(tif.pages)
    except (tifffile.TiffFileError, OSError, ValueError, EOFError) as exc:
        raise DataError(path, f"truncated or corrupt TIFF ({exc})") from None
    image = load_tiff(path, "minmax", parse_window("lung"), 0)
    return ImageInfo("tiff", image.shape[0], image.shape[1], n)
