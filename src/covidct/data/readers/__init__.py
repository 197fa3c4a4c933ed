"""Read CT slices and volumes into float32 arrays in [0, 1] (issue #2).

- ``load_slice(path)``: one 2-D image. 8-bit PNG/JPEG/BMP in any mode (L, RGB, RGBA, P -> luminance) / 255;
  16-bit PNG/TIFF with ``normalization`` ("minmax" per image, "window": values are HU, or fixed ``(lo, hi)``);
  single-frame DICOM as HU (pixel * RescaleSlope + RescaleIntercept) through ``window``. A source id
  ``"vol.nii.gz#k"`` / ``"multi.dcm#k"`` / ``"stack.tif#k"`` names slice ``k`` of a volume.
- ``load_series(path)``: a DICOM series folder (ordered by ImagePositionPatient projected on the slice normal,
  then SliceLocation, then InstanceNumber; never by file name), a multi-frame DICOM, or a NIfTI volume
  (canonical RAS orientation, axial slices, values are HU) -> :class:`Series`.

Every failure raises ``DataError(path, reason)``: the message starts with the file's path.

One module per format (:mod:`.pil`, :mod:`.tiff`, :mod:`.dicom`, :mod:`.nifti`) behind the two functions here;
:mod:`.base` holds what they share.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from covidct.data.readers.base import (
    PIL_FORMATS,
    SUFFIX_FORMATS,
    ImageInfo,
    Normalization,
    PathLike,
    Series,
    TagError,
    checked_format,
    detect_format,
    parse_normalization,
    require_finite,
    split_source,
)
from covidct.data.readers.dicom import (
    dicom_files,
    load_dicom_file_series,
    load_dicom_folder,
    load_dicom_slice,
    n_frames,
    order_dicom_files,
    probe_dicom,
    read_dicom_header,
    slice_positions,
    tag_numbers,
)
from covidct.data.readers.nifti import load_nifti, probe_nifti
from covidct.data.readers.pil import load_pil, probe_pil
from covidct.data.readers.tiff import load_tiff, probe_tiff
from covidct.data.window import Window, parse_window
from covidct.errors import DataError

__all__ = [
    "PIL_FORMATS",
    "SUFFIX_FORMATS",
    "ImageInfo",
    "Normalization",
    "PathLike",
    "Series",
    "TagError",
    "detect_format",
    "dicom_files",
    "load_series",
    "load_slice",
    "n_frames",
    "order_dicom_files",
    "parse_normalization",
    "probe_image",
    "read_dicom_header",
    "require_finite",
    "slice_positions",
    "split_source",
    "tag_numbers",
]


def load_slice(
    path: PathLike, *, window: str | Window = "lung", normalization: Normalization = "minmax"
) -> np.ndarray:
    """One 2-D image as float32 in [0, 1]; ``window`` applies to HU (DICOM, NIfTI, normalization="window")."""
    file, index = split_source(path)
    fmt = checked_format(file)
    win = parse_window(window)
    norm = parse_normalization(normalization)
    if fmt in PIL_FORMATS and index is None:
        return load_pil(file, norm, win)
    if fmt == "tiff":
        return load_tiff(file, norm, win, index)
    if fmt == "dicom" and index is None:
        image = load_dicom_slice(file, win, norm)
        if image is not None:
            return image
    if fmt in PIL_FORMATS:
        raise DataError(file, f"a 2-D image has no slice #{index}")
    series = load_series(file, window=win)
    if index is None:
        if len(series) != 1:
            raise DataError(file, f"a volume of {len(series)} slices: use load_series() or '{file}#k'")
        return series.images[0]
    wanted = f"{file}#{index}"
    if wanted not in series.sources:
        raise DataError(file, f"slice #{index} out of range (the volume has {len(series)} slices)")
    return series.images[series.sources.index(wanted)]


def load_series(
    path: PathLike, *, window: str | Window = "lung", check: Callable[[], None] | None = None
) -> Series:
    """A DICOM series folder, a multi-frame DICOM or a NIfTI volume as an ordered :class:`Series`.

    ``check`` runs before each file of a series folder is decoded (a caller's time budget or pause point).
    """
    p = Path(path)
    win = parse_window(window)
    if p.is_dir():
        return load_dicom_folder(p, win, check=check)
    fmt = checked_format(p)
    if fmt == "nifti":
        return load_nifti(p, win)
    if fmt == "dicom":
        return load_dicom_file_series(p, win)
    if fmt == "tiff":
        image = load_tiff(p, "minmax", win, None)
        return Series(image[None], [str(p)], None, None)
    return Series(load_slice(p, window=win)[None], [str(p)], None, None)


def probe_image(path: PathLike) -> ImageInfo:
    """Validate a file by decoding its pixels (without normalising them); raise DataError if unreadable."""
    p = Path(path)
    fmt = checked_format(p)
    if fmt in PIL_FORMATS:
        return probe_pil(p, fmt)
    if fmt == "tiff":
        return probe_tiff(p)
    if fmt == "dicom":
        return probe_dicom(p)
    return probe_nifti(p)
