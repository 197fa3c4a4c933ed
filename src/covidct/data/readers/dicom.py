"""DICOM through pydicom: single- and multi-frame files, series folders ordered by geometry, HU + window.

Sizes announced in the header are bounded before decoding (:mod:`covidct.data.dicom_limits`); a numeric tag
holding text, NaN or Inf is a :class:`~covidct.data.readers.base.TagError`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np

from covidct.data.readers.base import (
    ImageInfo,
    PathLike,
    Series,
    TagError,
    detect_format,
    luminance,
    require_finite,
    to_unit,
)
from covidct.data.window import Window, apply_window, parse_window
from covidct.errors import DataError


def _read_dicom(path: Path, *, header_only: bool = False) -> Any:
    """pydicom Dataset; ``header_only`` stops before the pixel data (fast ordering). Announced pixel sizes are
    bounded (``data.dicom_limits``) before decoding, for every transfer syntax."""
    from pydicom.errors import InvalidDicomError

    from covidct.data.dicom_limits import read_bounded

    try:
        return read_bounded(path, header_only=header_only)  # sizes bounded before decoding
    except DataError:
        raise
    except InvalidDicomError:
        raise DataError(path, "not a DICOM file (no 'DICM' marker after the 128-byte preamble)") from None
    except Exception as exc:  # pydicom raises many types on malformed files; all are data errors
        raise DataError(path, f"corrupt or truncated DICOM ({type(exc).__name__}: {exc})") from None


def read_dicom_header(path: PathLike) -> Any:
    """The DICOM header (no pixel data) as a pydicom Dataset; DataError if it is not DICOM."""
    return _read_dicom(Path(path), header_only=True)


def n_frames(ds: Any) -> int:
    """Frames in a DICOM dataset (1 for a plain slice)."""
    return _n_frames(ds)


def _n_frames(ds: Any) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def _ends_early(ds: Any, path: Path) -> bool:
    """pydicom stops silently at a cut: the last element read does not end where the file does."""
    tags = list(ds.keys())
    if not tags:
        return True
    try:
        last = ds.get_item(tags[-1])
        end = int(last.value_tell) + int(last.length)
        return last.length != 0xFFFFFFFF and end != path.stat().st_size
    except (AttributeError, TypeError, ValueError, OSError):  # no offsets: already converted by pydicom
        return False


def _decode_dicom(ds: Any, path: Path) -> np.ndarray:
    """Raw stored values, (frames, H, W) or (frames, H, W, 3), with clear messages for missing decoders."""
    from pydicom.pixels import get_decoder

    if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        if _ends_early(ds, path):
            raise DataError(path, "truncated DICOM file: it ends before the pixel data")
        if "Rows" in ds and "Columns" in ds:
            size = f"{ds.Rows}x{ds.Columns}"
            reason = f"the header describes a {size} image but the file ends without pixel data"
            raise DataError(path, f"truncated DICOM file: {reason}")
        raise DataError(path, "DICOM without pixel data (no PixelData element: not an image)")
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    if uid is not None and "PixelData" in ds:
        name = getattr(uid, "name", str(uid))
        try:
            decoder = get_decoder(uid)
        except NotImplementedError:
            raise DataError(
                path,
                f"unsupported transfer syntax {name} ({uid}): pydicom cannot decode it; convert the file "
                "(e.g. 'gdcmconv --raw' from python-gdcm / GDCM) to an uncompressed transfer syntax",
            ) from None
        if not decoder.is_available:
            needs = "; ".join(decoder.missing_dependencies) or "a decoder plugin"
            raise DataError(path, f"cannot decode transfer syntax {name} ({uid}): install {needs}")
    try:
        arr = np.asarray(ds.pixel_array)
    except Exception as exc:  # decoder plugins raise arbitrary types on corrupt streams
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        if "less than expected" in first:
            raise DataError(path, f"truncated DICOM file ({first})") from None
        raise DataError(path, f"cannot decode pixel data ({first})") from None
    n = _n_frames(ds)
    if n == 1:
        arr = arr[None]
    if arr.ndim not in (3, 4) or arr.shape[0] != n:
        raise DataError(path, f"unexpected pixel array shape {arr.shape} for {n} frame(s)")
    return arr


def _raw_text(ds: Any, keyword: str) -> str:
    """The stored text of a tag (for messages), even when pydicom cannot convert it."""
    try:
        value = ds.get_item(keyword).value
    except Exception:  # only for a message
        return "?"
    if isinstance(value, bytes):
        return value.decode("latin-1", "replace").strip()
    return str(value) if isinstance(value, (str, int, float)) else "\\".join(str(v) for v in value)


def tag_numbers(ds: Any, keyword: str, path: PathLike) -> list[float] | None:
    """A numeric DICOM tag (DS/IS, maybe multi-valued) as finite floats; None when absent or empty.

    DataError naming the file and the tag for text that is not a number, NaN or infinity (a "1e309" slope
    would otherwise turn every pixel into Inf, and Inf through a window into a confident class).
    """
    try:
        value = ds.get(keyword)
        if value is None or value == "":
            return None
        items = [value] if isinstance(value, (str, bytes, int, float)) else list(value)
        numbers = [float(v) for v in items]
    except (TypeError, ValueError, OverflowError):
        raise TagError(path, f"{keyword} is not a number ({_raw_text(ds, keyword)!r})") from None
    if not all(math.isfinite(v) for v in numbers):
        raise TagError(path, f"{keyword} is not a finite number ({_raw_text(ds, keyword)!r})")
    return numbers


def _tag_number(ds: Any, keyword: str, path: PathLike, default: float | None = None) -> float | None:
    numbers = tag_numbers(ds, keyword, path)
    if numbers is None:
        return default
    if len(numbers) != 1:
        raise TagError(path, f"{keyword} holds {len(numbers)} values, expected one")
    return numbers[0]


def _frame_rescale(ds: Any, k: int, path: PathLike) -> tuple[float, float]:
    """(slope, intercept) of frame k: per-frame functional group > shared group > top level."""
    per, shared = ds.get("PerFrameFunctionalGroupsSequence"), ds.get("SharedFunctionalGroupsSequence")
    for item in ([per[k]] if per and len(per) > k else []) + ([shared[0]] if shared else []):
        pvt = item.get("PixelValueTransformationSequence")
        if pvt:
            slope = _tag_number(pvt[0], "RescaleSlope", path, 1.0)
            return slope, _tag_number(pvt[0], "RescaleIntercept", path, 0.0)  # type: ignore[return-value]
    slope = _tag_number(ds, "RescaleSlope", path) or 1.0  # 0 or empty -> 1, as scanners that omit it mean
    return slope, _tag_number(ds, "RescaleIntercept", path, 0.0)  # type: ignore[return-value]


def _is_hu(ds: Any) -> bool:
    if ds.get("Modality", "") == "CT" or "RescaleIntercept" in ds:
        return True
    groups = ds.get("SharedFunctionalGroupsSequence")
    return bool(groups and groups[0].get("PixelValueTransformationSequence"))


def _dicom_frames(ds: Any, path: Path, win: Window, norm: str | tuple[float, float] = "minmax") -> np.ndarray:
    """(frames, H, W) float32 in [0, 1]: HU through the window for CT, else ``norm``."""
    raw = require_finite(_decode_dicom(ds, path), path)  # FloatPixelData can hold NaN
    if raw.ndim == 4:  # colour (secondary capture): luminance of the stored values
        return np.stack([to_unit(luminance(frame), "minmax", win) for frame in raw])
    if not _is_hu(ds):
        return np.stack([to_unit(frame, norm, win) for frame in raw])
    if "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        lut = ds.get("ModalityLUTSequence")
        if not lut or any(key not in lut[0] for key in ("LUTDescriptor", "LUTData")):
            raise DataError(path, "empty or incomplete ModalityLUTSequence (no LUTDescriptor/LUTData)")
        try:
            hu = np.asarray(apply_modality_lut(raw, ds), dtype=np.float32)
        except Exception as exc:  # pydicom raises many types on a malformed LUT
            raise DataError(path, f"invalid ModalityLUTSequence ({type(exc).__name__}: {exc})") from None
        return apply_window(require_finite(hu, path, "Hounsfield"), win)
    out = np.empty(raw.shape, dtype=np.float32)
    for k, frame in enumerate(raw):
        slope, intercept = _frame_rescale(ds, k, path)
        with np.errstate(over="ignore", invalid="ignore"):
            hu = frame.astype(np.float32) * np.float32(slope) + np.float32(intercept)
        out[k] = apply_window(require_finite(hu, path, "Hounsfield (after RescaleSlope/Intercept)"), win)
    return out


def _source_path(ds: Any, default: PathLike) -> PathLike:
    name = getattr(ds, "filename", None)
    return name if isinstance(name, (str, os.PathLike)) and name else default


def _geometry(
    ds: Any, k: int | None = None, path: PathLike = "DICOM"
) -> tuple[list[float] | None, list[float] | None]:
    """(ImagePositionPatient, ImageOrientationPatient) of a slice (or of frame k of a multi-frame file)."""
    path = _source_path(ds, path)
    ipp, iop = tag_numbers(ds, "ImagePositionPatient", path), tag_numbers(ds, "ImageOrientationPatient", path)
    if k is not None:
        per = ds.get("PerFrameFunctionalGroupsSequence")
        shared = ds.get("SharedFunctionalGroupsSequence")
        for item in ([per[k]] if per and len(per) > k else []) + ([shared[0]] if shared else []):
            if ipp is None and item.get("PlanePositionSequence"):
                ipp = tag_numbers(item.PlanePositionSequence[0], "ImagePositionPatient", path)
            if iop is None and item.get("PlaneOrientationSequence"):
                iop = tag_numbers(item.PlaneOrientationSequence[0], "ImageOrientationPatient", path)
    ok_ipp = ipp is not None and len(ipp) == 3
    ok_iop = iop is not None and len(iop) == 6
    return (ipp if ok_ipp else None), (iop if ok_iop else None)


def slice_positions(headers: list[Any], where: PathLike) -> tuple[list[int], list[float] | None]:
    """Order of DICOM slices: ImagePositionPatient on the slice normal > SliceLocation > InstanceNumber.

    Returns (order, sorted positions in mm or None for the InstanceNumber fallback). Never uses file names.
    """
    if len(headers) == 1:
        ipp, iop = _geometry(headers[0], path=where)
        z = ipp[2] if ipp else _tag_number(headers[0], "SliceLocation", _source_path(headers[0], where))
        return [0], ([float(z)] if z is not None else None)
    geometry = [_geometry(h, path=where) for h in headers]
    locations = [_tag_number(h, "SliceLocation", _source_path(h, where)) for h in headers]
    instances = [_tag_number(h, "InstanceNumber", _source_path(h, where)) for h in headers]
    keys: list[float] | None = None
    if all(ipp and iop for ipp, iop in geometry):
        iop0 = np.asarray(geometry[0][1])
        normal = np.cross(iop0[:3], iop0[3:])
        keys = [float(np.dot(cast("list[float]", ipp), normal)) for ipp, _ in geometry]
    elif all(z is not None for z in locations):
        keys = [float(z) for z in locations]  # type: ignore[arg-type]
    if keys is not None:
        order = sorted(range(len(headers)), key=lambda i: keys[i])
        return order, [keys[i] for i in order]
    if all(n is not None for n in instances):
        order = sorted(range(len(headers)), key=lambda i: instances[i])  # type: ignore[arg-type, return-value]
        return order, None
    raise DataError(
        where, "cannot order the slices: no ImagePositionPatient, SliceLocation or InstanceNumber"
    )


def dicom_files(folder: PathLike) -> list[Path]:
    """Candidate DICOM files directly in ``folder`` (by suffix or DICM marker), hidden files excluded."""
    out = []
    for entry in sorted(Path(folder).iterdir()):
        if entry.is_file() and not entry.name.startswith(".") and detect_format(entry) == "dicom":
            out.append(entry)
    return out


def order_dicom_files(
    files: list[Path], where: PathLike
) -> tuple[list[Path], list[float] | None, str | None]:
    """Read headers only; return the files of ONE series in anatomical order, positions and patient id."""
    headers = [_read_dicom(f, header_only=True) for f in files]
    series = {str(h.get("SeriesInstanceUID", "")) for h in headers}
    if len(series) > 1:
        raise DataError(where, f"holds {len(series)} DICOM series; pass one series folder at a time")
    order, positions = slice_positions(headers, where)
    patient = str(headers[0].get("PatientID", "") or "").strip() or None if headers else None
    return [files[i] for i in order], positions, patient


def load_dicom_slice(path: Path, win: Window, norm: str | tuple[float, float]) -> np.ndarray | None:
    """A single-frame DICOM file as a 2-D image in [0, 1]; None for a multi-frame file (a series)."""
    ds = _read_dicom(path)
    if _n_frames(ds) != 1:
        return None
    return _dicom_frames(ds, path, win, norm)[0]


def load_dicom_folder(folder: Path, win: Window, *, check: Callable[[], None] | None = None) -> Series:
    files = dicom_files(folder)
    if not files:
        raise DataError(folder, "no DICOM files in this folder")
    ordered, positions, patient = order_dicom_files(files, folder)
    images = []
    for f in ordered:
        if check is not None:
            check()
        ds = _read_dicom(f)
        if _n_frames(ds) != 1:
            raise DataError(f, "a multi-frame file inside a series folder: load it on its own")
        images.append(_dicom_frames(ds, f, win)[0])
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise DataError(folder, f"slices of different sizes in one series: {sorted(shapes)}")
    return Series(np.stack(images), [str(f) for f in ordered], patient, positions)


def load_dicom_file_series(path: Path, win: Window) -> Series:
    ds = _read_dicom(path)
    frames = _dicom_frames(ds, path, win)
    patient = str(ds.get("PatientID", "") or "").strip() or None
    n = frames.shape[0]
    geometry = [_geometry(ds, k, path) for k in range(n)]
    if n > 1 and all(ipp and iop for ipp, iop in geometry):
        iop0 = np.asarray(geometry[0][1])
        normal = np.cross(iop0[:3], iop0[3:])
        keys = [float(np.dot(cast("list[float]", ipp), normal)) for ipp, _ in geometry]
        order = sorted(range(n), key=lambda i: keys[i])
        positions: list[float] | None = [keys[i] for i in order]
    else:  # frames in stored order (the file defines it)
        order, positions = list(range(n)), None
    sources = [f"{path}#{k}" if n > 1 else str(path) for k in order]
    return Series(frames[order], sources, patient, positions)


def probe_dicom(path: Path) -> ImageInfo:
    """Decode a DICOM file's frames (HU too: bad rescale tags, NaN/Inf pixels) and check its ordering tags."""
    ds = _read_dicom(path)
    frames = _dicom_frames(ds, path, parse_window("lung"))
    _geometry(ds, None, path)  # ordering tags must be numbers
    _tag_number(ds, "SliceLocation", path)
    _tag_number(ds, "InstanceNumber", path)
    return ImageInfo("dicom", int(frames.shape[1]), int(frames.shape[2]), int(frames.shape[0]))
