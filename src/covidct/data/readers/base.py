"""What every reader shares: formats by suffix, source ids, the Series and ImageInfo records, checks.

Format modules (:mod:`.pil`, :mod:`.tiff`, :mod:`.dicom`, :mod:`.nifti`) import from here, never from each
other.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

from covidct.data.window import Window, apply_window
from covidct.errors import ConfigError, DataError

PathLike = str | os.PathLike[str]
Normalization = str | tuple[float, float]

SUFFIX_FORMATS = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".bmp": "bmp",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".dcm": "dicom",
    ".dicom": "dicom",
    ".ima": "dicom",
    ".nii": "nifti",
    ".nii.gz": "nifti",
}
PIL_FORMATS = ("png", "jpeg", "bmp")
_SOURCE_INDEX = re.compile(r"^(?P<path>.+)#(?P<index>\d+)$")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601-2, as PIL's convert("L")


class TagError(DataError):
    """A numeric DICOM tag holding text, NaN or Inf: a malformed file, not merely an untagged one."""


@dataclass(frozen=True)
class Series:
    """Slices of one volume in anatomical order (inferior -> superior for axial CT)."""

    images: np.ndarray  # (N, H, W) float32 in [0, 1]
    sources: list[str]  # one id per slice: a file path or "volume#k"
    patient_id: str | None
    positions: list[float] | None  # slice position along the normal (mm), when known

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass(frozen=True)
class ImageInfo:
    """What a dataset scan records about a file; ``n_slices > 1`` for volumes, stacks, multi-frame files."""

    format: str
    height: int
    width: int
    n_slices: int = 1


def has_dicm_marker(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def detect_format(path: PathLike) -> str | None:
    """``"png" | "jpeg" | "bmp" | "tiff" | "dicom" | "nifti"`` from the suffix (or DICM marker), else None."""
    p = Path(path)
    name = p.name.lower()
    if name.endswith(".nii.gz"):
        return "nifti"
    fmt = SUFFIX_FORMATS.get(p.suffix.lower())
    if fmt is None and p.is_file() and has_dicm_marker(p):
        return "dicom"  # DICOM files often have no extension ("IM0001", "1.2.840...")
    return fmt


def split_source(source: PathLike) -> tuple[Path, int | None]:
    """``"vol.nii.gz#3"`` -> (Path("vol.nii.gz"), 3); a plain path -> (path, None)."""
    text = os.fspath(source)
    match = _SOURCE_INDEX.match(text)
    if match and not Path(text).exists():
        return Path(match["path"]), int(match["index"])
    return Path(text), None


def parse_normalization(spec: Normalization) -> str | tuple[float, float]:
    """``"minmax"``, ``"window"``, or a fixed range ``(lo, hi)`` / ``"lo,hi"`` for >8-bit images."""
    if isinstance(spec, tuple):
        lo, hi = (float(v) for v in spec)
    elif spec in ("minmax", "window"):
        return spec
    else:
        try:
            lo, hi = (float(v) for v in str(spec).split(","))
        except ValueError:
            raise ConfigError(f"normalization must be 'minmax', 'window' or 'LO,HI', got {spec!r}") from None
    if not hi > lo:
        raise ConfigError(f"normalization range needs LO < HI, got ({lo}, {hi})")
    return (lo, hi)


def checked_format(path: Path) -> str:
    if not path.exists():
        raise DataError(path, "file not found")
    if path.is_dir():
        raise DataError(path, "is a folder, not a file (use load_series for a DICOM series folder)")
    if path.stat().st_size == 0:
        raise DataError(path, "empty file (0 bytes)")
    fmt = detect_format(path)
    if fmt is None:
        known = ", ".join(sorted(SUFFIX_FORMATS))
        raise DataError(
            path, f"unknown file type {path.suffix or '(no extension)'!r}: expected one of {known}"
        )
    return fmt


def require_finite(values: np.ndarray, path: PathLike, what: str = "pixel") -> np.ndarray:
    """``values`` if all are finite, else DataError: a NaN or Inf pixel must never become a class."""
    if values.dtype.kind in "fc" and not np.isfinite(values).all():
        n_nan = int(np.isnan(values).sum())
        n_inf = int((~np.isfinite(values)).sum()) - n_nan
        raise DataError(
            path,
            f"non-finite {what} values ({n_nan} NaN, {n_inf} infinite of {values.size}): the image cannot be "
            "classified",
        )
    return values


def to_unit(arr: np.ndarray, norm: str | tuple[float, float], win: Window) -> np.ndarray:
    """8-bit -> /255; wider integers and floats -> min-max, HU window or fixed range."""
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255.0)
    if arr.dtype == bool:
        return arr.astype(np.float32)
    if norm == "window":
        return apply_window(arr, win)
    if norm == "minmax":
        lo, hi = float(arr.min()), float(arr.max())
        if hi <= lo:
            return np.zeros(arr.shape, dtype=np.float32)
    else:  # parse_normalization left a (lo, hi) tuple
        lo, hi = cast("tuple[float, float]", norm)
    # one float32 buffer, scaled in place: a 64-Mpixel upload must not need three of them (issue 11)
    out = arr.astype(np.float32)  # a copy even for float32 input: the caller's array stays untouched
    out -= np.float32(lo)
    out /= np.float32(hi - lo)
    return np.clip(out, 0.0, 1.0, out=out)


def luminance(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        dtype = arr.dtype
        lum = arr[..., :3].astype(np.float32) @ _LUMA
        return np.rint(lum).astype(dtype) if np.issubdtype(dtype, np.integer) else lum
    return arr
