"""Read CT slices and volumes into float32 arrays in [0, 1] (issue #2).

- ``load_slice(path)``: one 2-D image. 8-bit PNG/JPEG/BMP in any mode (L, RGB, RGBA, P -> luminance) / 255;
  16-bit PNG/TIFF with ``normalization`` ("minmax" per image, "window": values are HU, or fixed ``(lo, hi)``);
  single-frame DICOM as HU (pixel * RescaleSlope + RescaleIntercept) through ``window``. A source id
  ``"vol.nii.gz#k"`` / ``"multi.dcm#k"`` / ``"stack.tif#k"`` names slice ``k`` of a volume.
- ``load_series(path)``: a DICOM series folder (ordered by ImagePositionPatient projected on the slice normal,
  then SliceLocation, then InstanceNumber; never by file name), a multi-frame DICOM, or a NIfTI volume
  (canonical RAS orientation, axial slices, values are HU) -> :class:`Series`.

Every failure raises ``DataError(path, reason)``: the message starts with the file's path.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from covidct.data.window import Window, apply_window, parse_window
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


# ----------------------------------------------------------------------------------------------- dispatch
def detect_format(path: PathLike) -> str | None:
    """``"png" | "jpeg" | "bmp" | "tiff" | "dicom" | "nifti"`` from the suffix (or DICM marker), else None."""
    p = Path(path)
    name = p.name.lower()
    if name.endswith(".nii.gz"):
        return "nifti"
    fmt = SUFFIX_FORMATS.get(p.suffix.lower())
    if fmt is None and p.is_file() and _has_dicm_marker(p):
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


def load_slice(
    path: PathLike, *, window: str | Window = "lung", normalization: Normalization = "minmax"
) -> np.ndarray:
    """One 2-D image as float32 in [0, 1]; ``window`` applies to HU (DICOM, NIfTI, normalization="window")."""
    file, index = split_source(path)
    fmt = _checked_format(file)
    win = parse_window(window)
    norm = parse_normalization(normalization)
    if fmt in PIL_FORMATS and index is None:
        return _load_pil(file, norm, win)
    if fmt == "tiff":
        return _load_tiff(file, norm, win, index)
    if fmt == "dicom" and index is None:
        ds = _read_dicom(file)
        if _n_frames(ds) == 1:
            return _dicom_frames(ds, file, win, norm)[0]
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


def load_series(path: PathLike, *, window: str | Window = "lung") -> Series:
    """A DICOM series folder, a multi-frame DICOM or a NIfTI volume as an ordered :class:`Series`."""
    p = Path(path)
    win = parse_window(window)
    if p.is_dir():
        return _load_dicom_folder(p, win)
    fmt = _checked_format(p)
    if fmt == "nifti":
        return _load_nifti(p, win)
    if fmt == "dicom":
        return _load_dicom_file_series(p, win)
    if fmt == "tiff":
        image = _load_tiff(p, "minmax", win, None)
        return Series(image[None], [str(p)], None, None)
    return Series(load_slice(p, window=win)[None], [str(p)], None, None)


def _checked_format(path: Path) -> str:
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


# ----------------------------------------------------------------------------------------------- 2-D images
def _to_unit(arr: np.ndarray, norm: str | tuple[float, float], win: Window) -> np.ndarray:
    """8-bit -> /255; wider integers and floats -> min-max, HU window or fixed range."""
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255.0)
    if arr.dtype == bool:
        return arr.astype(np.float32)
    data = arr.astype(np.float32)
    if norm == "window":
        return apply_window(data, win)
    if norm == "minmax":
        lo, hi = float(data.min()), float(data.max())
        if hi <= lo:
            return np.zeros_like(data)
    else:
        lo, hi = norm
    out = (data - np.float32(lo)) / np.float32(hi - lo)
    return np.clip(out, 0.0, 1.0, out=out)


def _luminance(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        dtype = arr.dtype
        lum = arr[..., :3].astype(np.float32) @ _LUMA
        return np.rint(lum).astype(dtype) if np.issubdtype(dtype, np.integer) else lum
    return arr


def _load_pil(path: Path, norm: str | tuple[float, float], win: Window) -> np.ndarray:
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
    return _to_unit(require_finite(arr, path), norm, win)


def _load_tiff(path: Path, norm: str | tuple[float, float], win: Window, index: int | None) -> np.ndarray:
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
    arr = _luminance(require_finite(arr, path))
    if arr.ndim != 2:
        raise DataError(path, f"expected a 2-D grayscale image, got shape {arr.shape}")
    return _to_unit(arr, norm, win)


# ----------------------------------------------------------------------------------------------- DICOM
def _has_dicm_marker(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


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
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on malformed files; all are data errors
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
    except Exception as exc:  # noqa: BLE001 - decoder plugins raise arbitrary types on corrupt streams
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
    except Exception:  # noqa: BLE001 - only for a message
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
        return np.stack([_to_unit(_luminance(frame), "minmax", win) for frame in raw])
    if not _is_hu(ds):
        return np.stack([_to_unit(frame, norm, win) for frame in raw])
    if "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        lut = ds.get("ModalityLUTSequence")
        if not lut or any(key not in lut[0] for key in ("LUTDescriptor", "LUTData")):
            raise DataError(path, "empty or incomplete ModalityLUTSequence (no LUTDescriptor/LUTData)")
        try:
            hu = np.asarray(apply_modality_lut(raw, ds), dtype=np.float32)
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types on a malformed LUT
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
        keys = [float(np.dot(ipp, normal)) for ipp, _ in geometry]
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


def _load_dicom_folder(folder: Path, win: Window) -> Series:
    files = dicom_files(folder)
    if not files:
        raise DataError(folder, "no DICOM files in this folder")
    ordered, positions, patient = order_dicom_files(files, folder)
    images = []
    for f in ordered:
        ds = _read_dicom(f)
        if _n_frames(ds) != 1:
            raise DataError(f, "a multi-frame file inside a series folder: load it on its own")
        images.append(_dicom_frames(ds, f, win)[0])
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise DataError(folder, f"slices of different sizes in one series: {sorted(shapes)}")
    return Series(np.stack(images), [str(f) for f in ordered], patient, positions)


def _load_dicom_file_series(path: Path, win: Window) -> Series:
    ds = _read_dicom(path)
    frames = _dicom_frames(ds, path, win)
    patient = str(ds.get("PatientID", "") or "").strip() or None
    n = frames.shape[0]
    geometry = [_geometry(ds, k, path) for k in range(n)]
    if n > 1 and all(ipp and iop for ipp, iop in geometry):
        iop0 = np.asarray(geometry[0][1])
        normal = np.cross(iop0[:3], iop0[3:])
        keys = [float(np.dot(ipp, normal)) for ipp, _ in geometry]
        order = sorted(range(n), key=lambda i: keys[i])
        positions: list[float] | None = [keys[i] for i in order]
    else:  # frames in stored order (the file defines it)
        order, positions = list(range(n)), None
    sources = [f"{path}#{k}" if n > 1 else str(path) for k in order]
    return Series(frames[order], sources, patient, positions)


# ----------------------------------------------------------------------------------------------- NIfTI
def _load_nifti(path: Path, win: Window) -> Series:
    import nibabel as nib

    try:
        img = nib.as_closest_canonical(nib.load(str(path)))  # RAS+: i -> right, j -> anterior, k -> superior
        data = img.get_fdata(dtype=np.float32)
    except Exception as exc:  # noqa: BLE001 - nibabel/gzip/zlib raise many types on malformed files
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


# ----------------------------------------------------------------------------------------------- probing
@dataclass(frozen=True)
class ImageInfo:
    """What a dataset scan records about a file; ``n_slices > 1`` for volumes, stacks, multi-frame files."""

    format: str
    height: int
    width: int
    n_slices: int = 1


def probe_image(path: PathLike) -> ImageInfo:
    """Validate a file by decoding its pixels (without normalising them); raise DataError if unreadable."""
    p = Path(path)
    fmt = _checked_format(p)
    if fmt in PIL_FORMATS:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(p) as im:
                im.load()
                return ImageInfo(fmt, im.height, im.width)
        except UnidentifiedImageError:
            raise DataError(
                p, f"not a readable {p.suffix or 'image'} file (unknown or corrupt image data)"
            ) from None
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
            raise DataError(p, f"truncated or corrupt image ({exc})") from None
    if fmt == "tiff":
        import tifffile

        try:
            with tifffile.TiffFile(p) as tif:
                n = len(tif.pages)
        except (tifffile.TiffFileError, OSError, ValueError, EOFError) as exc:
            raise DataError(p, f"truncated or corrupt TIFF ({exc})") from None
        image = _load_tiff(p, "minmax", parse_window("lung"), 0)
        return ImageInfo(fmt, image.shape[0], image.shape[1], n)
    if fmt == "dicom":
        ds = _read_dicom(p)
        frames = _dicom_frames(ds, p, parse_window("lung"))  # HU too: bad rescale tags, NaN/Inf pixels
        _geometry(ds, None, p)  # ordering tags must be numbers
        _tag_number(ds, "SliceLocation", p)
        _tag_number(ds, "InstanceNumber", p)
        return ImageInfo(fmt, int(frames.shape[1]), int(frames.shape[2]), int(frames.shape[0]))
    series = _load_nifti(p, parse_window("lung"))
    return ImageInfo(fmt, int(series.images.shape[1]), int(series.images.shape[2]), len(series))
