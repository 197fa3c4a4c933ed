"""NIfTI volumes through nibabel: canonical RAS orientation, axial slices, values are HU."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from covidct.data.readers.base import ImageInfo, Series, require_finite
from covidct.data.window import Window, apply_window, parse_window
from covidct.errors import DataError


def load_nifti(path: Path, win: Window) -> Series:
    import nibabel as nib

    try:
        img = nib.as_closest_canonical(nib.load(str(path)))  # RAS+: i -> right, j -> anterior, k -> superior
        data = img.get_fdata(dtype=np.float32)
    except Exception as exc:  # nibabel/gzip/zlib raise many types on malformed files
        raise DataError(path, f"not a readable NIfTI volume ({type(exc).__name__}: {exc})") from None
    require_finite(data, path, "voxel")
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        raise DataError(path, f"expected a 3-D volume, got shape {data.shape}")
    # radiological display: rows anterior -> posterior, columns patient right -> left (as DICOM axial images)
    images = np.ascontiguousarray(np.transpose(data, (2, 1, 0))[:, ::-1, ::-1])
    z = [float((img.affine @ np.array([0.0, 0.0, k, 1.0]))[2]) for k in range(images.shape[0])]
    return Series(apply_window(images, win), [f"{path}#{k}" for k in range(images.shape[0])], None, z)


def probe_nifti(path: Path) -> ImageInfo:
    """Decode a NIfTI volume: its slice size and count, or DataError."""
    series = load_nifti(path, parse_window("lung"))
    return ImageInfo("nifti", int(series.images.shape[1]), int(series.images.shape[2]), len(series))
