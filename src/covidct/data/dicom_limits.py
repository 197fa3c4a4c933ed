"""Size bounds for DICOM files, checked from the header before any pixel is decoded or inflated (issue 11).

A few hundred bytes of DICOM can announce gigabytes: ``NumberOfFrames x Rows x Columns x SamplesPerPixel x
BitsAllocated/8`` is only paid when the pixels are decoded, and with the *Deflated* transfer syntax the whole
dataset is compressed, so pydicom inflates all of it into memory just to read the header. This module reads
the header without that cost (a lazily inflating stream for deflated files, ``stop_before_pixels`` for the
others), computes the decoded size, refuses what exceeds :class:`DicomLimits` with a ``DataError``, and for
deflated files also bounds the inflated length of the whole dataset (counted in a streaming pass, never held)
before pydicom reads it.

The CLI uses :data:`DEFAULT_LIMITS` (``COVIDCT_DICOM_MAX_MB`` raises the byte bound); the service checks its
own, tighter, per-request limits with the same functions."""

from __future__ import annotations

import io
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from covidct.errors import DataError

PIXEL_TAGS = frozenset(
    {0x7FE00010, 0x7FE00008, 0x7FE00009}
)  # PixelData, FloatPixelData, DoubleFloatPixelData
DEFLATED_UIDS = frozenset({"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95"})  # deflated dataset (JPIP too)
MAX_HEADER_BYTES = 64 * 2**20  # inflated bytes before the pixel data (icons, overlays, sequences)
_CHUNK = 1 << 20
_MB = 2**20


@dataclass(frozen=True, kw_only=True)
class DicomLimits:
    """Largest decoded pixel data one DICOM file may announce."""

    max_bytes: int = 512 * _MB  # frames x rows x columns x samples x bytes per sample
    max_frame_pixels: int = 64 * _MB  # rows x columns of one frame

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_frame_pixels < 1:
            raise ValueError(f"DICOM limits must be >= 1, got {self.max_bytes}, {self.max_frame_pixels}")


class DicomTooLarge(DataError):
    """A DICOM file that announces (or inflates to) more than the limits allow."""


def _default_limits() -> DicomLimits:
    text = os.environ.get("COVIDCT_DICOM_MAX_MB", "").strip()
    try:
        return DicomLimits(max_bytes=int(float(text) * _MB)) if text else DicomLimits()
    except ValueError:
        return DicomLimits()


DEFAULT_LIMITS = _default_limits()


@dataclass(frozen=True)
class PixelSize:
    """What the header announces: ``pixels`` = frames x rows x columns x samples; ``nbytes`` decoded."""

    frames: int
    rows: int
    columns: int
    samples: int
    bytes_per_sample: int

    @property
    def frame_pixels(self) -> int:
        return self.rows * self.columns

    @property
    def pixels(self) -> int:
        return self.frames * self.rows * self.columns * self.samples

    @property
    def nbytes(self) -> int:
        return self.pixels * self.bytes_per_sample

    def describe(self) -> str:
        samples = f" x {self.samples} samples" if self.samples != 1 else ""
        return (
            f"{self.frames} frame(s) x {self.rows} x {self.columns}{samples} x {self.bytes_per_sample} bytes "
            f"= {self.nbytes / _MB:.1f} MiB decoded"
        )


@dataclass(frozen=True)
class Header:
    """A DICOM header read without its pixel data. ``pixel_offset``: where the pixel data element starts
    (in the inflated dataset for deflated files), None when the header was read to the end without
    finding one."""

    dataset: Any
    pixel_offset: int | None
    deflated: bool


def _int_tag(ds: Any, name: str, default: int, path: object) -> int:
    value = ds.get(name, default)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise DataError(path, f"DICOM {name} is not an integer ({value!r})") from None
    if number < 0:
        raise DataError(path, f"DICOM {name} is negative ({number})")
    return number


def pixel_size(ds: Any, path: object = "<dicom>") -> PixelSize:
    """The decoded size a header announces (raises DataError for non-integer sizes)."""
    if "FloatPixelData" in ds:
        bits = 32
    elif "DoubleFloatPixelData" in ds:
        bits = 64
    else:
        bits = _int_tag(ds, "BitsAllocated", 16, path)
    return PixelSize(
        frames=max(1, _int_tag(ds, "NumberOfFrames", 1, path)),
        rows=_int_tag(ds, "Rows", 0, path),
        columns=_int_tag(ds, "Columns", 0, path),
        samples=max(1, _int_tag(ds, "SamplesPerPixel", 1, path)),
        bytes_per_sample=max(1, (bits + 7) // 8),
    )


def check_size(ds: Any, path: object, limits: DicomLimits = DEFAULT_LIMITS) -> PixelSize:
    """``pixel_size(ds)``, or DataError when it exceeds ``limits`` (before anything is decoded)."""
    size = pixel_size(ds, path)
    if size.frame_pixels > limits.max_frame_pixels:
        raise DicomTooLarge(
            path,
            f"DICOM frame too large ({size.rows} x {size.columns} = {size.frame_pixels} pixels; the limit "
            f"is {limits.max_frame_pixels}), refused before decoding",
        )
    if size.nbytes > limits.max_bytes:
        raise DicomTooLarge(
            path,
            f"DICOM pixel data too large ({size.describe()}; the limit is {limits.max_bytes / _MB:g} MiB, "
            "COVIDCT_DICOM_MAX_MB raises it), refused before decoding",
        )
    return size


# --------------------------------------------------------------------------------------------- reading
class _Inflater(io.RawIOBase):
    """A seekable read-only view of a raw-deflate stream that inflates only as far as it is read (at most
    ``cap`` bytes are ever held)."""

    def __init__(self, src: BinaryIO, cap: int, path: object) -> None:
        self._src, self._cap, self._path = src, cap, path
        self._z = zlib.decompressobj(-zlib.MAX_WBITS)
        self._buf = bytearray()
        self._pos = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def _fill(self, upto: int) -> None:
        while len(self._buf) < upto and not self._done:
            if len(self._buf) > self._cap:
                raise DicomTooLarge(
                    self._path,
                    f"deflated DICOM header inflates beyond {self._cap / _MB:g} MiB before any pixel "
                    "data, refused",
                )
            data = self._z.unconsumed_tail or self._src.read(_CHUNK)
            if not data:
                self._buf += self._z.flush()
                self._done = True
                break
            try:
                self._buf += self._z.decompress(data, _CHUNK)
            except zlib.error as exc:
                raise DataError(self._path, f"corrupt deflated DICOM ({exc})") from None
            self._done = self._z.eof

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            self._fill(self._cap + 1)
            size = len(self._buf) - self._pos
        self._fill(self._pos + size)
        data = bytes(self._buf[self._pos : self._pos + size])
        self._pos += len(data)
        return data

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence == io.SEEK_END:
            self._fill(self._cap + 1)
            offset += len(self._buf)
        self._pos = max(0, offset)
        return self._pos


def _at_pixels(tag: Any, vr: Any, length: int) -> bool:
    return int(tag) in PIXEL_TAGS


def _meta(fp: BinaryIO, force: bool) -> tuple[bytes | None, Any]:
    """(preamble, file meta) with ``fp`` left at the start of the dataset."""
    from pydicom.filereader import _read_file_meta_info, read_preamble

    preamble = read_preamble(fp, force)
    return preamble, _read_file_meta_info(fp)


def read_header(path: str | os.PathLike[str], *, force: bool = False) -> Header:
    """The header of a DICOM file up to its pixel data, without inflating or decoding the pixels.

    Raises what pydicom raises for non-DICOM input (``InvalidDicomError``, ...) and DataError for bounded
    failures. A truncated file yields the part read (``pixel_offset`` None)."""
    import pydicom
    from pydicom.dataset import FileDataset
    from pydicom.filereader import read_dataset

    with open(path, "rb") as fp:
        preamble, meta = _meta(fp, force)
        uid = str(meta.get("TransferSyntaxUID", "") or "")
        if uid not in DEFLATED_UIDS:
            fp.seek(0)
            ds = pydicom.dcmread(fp, stop_before_pixels=True, force=force)
            return Header(ds, _pixel_offset(fp), False)
        stream = _Inflater(fp, MAX_HEADER_BYTES, path)
        dataset = read_dataset(cast(BinaryIO, stream), False, True, stop_when=_at_pixels)
        offset = _pixel_offset(stream)
    ds = FileDataset(str(path), dataset, preamble, meta, False, True)
    ds.set_original_encoding(False, True, dataset._character_set)
    return Header(ds, offset, True)


def _pixel_offset(fp: Any) -> int | None:
    """``fp``'s position if the next element is pixel data (pydicom rewinds there when it
    stops), else None."""
    at = fp.tell()
    head = fp.read(4)
    fp.seek(at)
    if len(head) < 4:
        return None
    little = int.from_bytes(head[:2], "little") << 16 | int.from_bytes(head[2:], "little")
    big = int.from_bytes(head[:2], "big") << 16 | int.from_bytes(head[2:], "big")
    return at if little in PIXEL_TAGS or big in PIXEL_TAGS else None


def inflated_size(path: str | os.PathLike[str], cap: int) -> int:
    """Inflated length of a deflated DICOM's dataset, counted in a streaming pass; DataError past ``cap``."""
    with open(path, "rb") as fp:
        _meta(fp, True)
        z = zlib.decompressobj(-zlib.MAX_WBITS)
        total = 0
        while not z.eof:
            data = z.unconsumed_tail or fp.read(_CHUNK)
            if not data:
                break
            try:
                total += len(z.decompress(data, _CHUNK))
            except zlib.error as exc:
                raise DataError(path, f"corrupt deflated DICOM ({exc})") from None
            if total > cap:
                raise DicomTooLarge(
                    path,
                    f"deflated DICOM inflates beyond {cap / _MB:.1f} MiB, more than its header announces, "
                    "refused",
                )
    return total


def slack(nbytes: int) -> int:
    """Room for elements after the pixel data and encoding overhead, on top of the announced pixel bytes."""
    return _MB + nbytes // 16


def read_bounded(
    path: str | os.PathLike[str], *, header_only: bool = False, limits: DicomLimits = DEFAULT_LIMITS
) -> Any:
    """``pydicom.dcmread(path)`` once the header shows the pixel data fits ``limits`` (and, for deflated
    files, the inflated dataset is no longer than the header implies). ``header_only``: the header, no pixel
    data."""
    import pydicom

    header = read_header(path)
    size = check_size(header.dataset, path, limits)
    if header_only:
        return header.dataset
    if header.deflated:
        inflated_size(path, (header.pixel_offset or 0) + size.nbytes + slack(size.nbytes))
    return pydicom.dcmread(Path(path))
