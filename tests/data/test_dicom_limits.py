"""DICOM decompression bombs: announced frames x rows x columns x bytes are bounded before any decoding,
for every transfer syntax, deflated included (issue 11). The hostile files are written by the tests,
a few KB each."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)

from covidct.data import dicom_limits
from covidct.data.dicom_limits import DicomLimits, check_size, read_header
from covidct.data.readers import load_series, load_slice, probe_image, read_dicom_header
from covidct.errors import DataError


def dicom_file(
    path: Path,
    *,
    rows: int = 32,
    cols: int = 32,
    frames: int = 1,
    syntax: str = ExplicitVRLittleEndian,
    pixel_bytes: int | None = None,
    trailing: int = 0,
) -> Path:
    """A CT file announcing ``frames x rows x cols`` 16-bit pixels; ``pixel_bytes`` stores fewer than that (a
    header-only bomb), ``trailing`` adds that many zero bytes of padding after the pixel data."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.Rows, ds.Columns = "CT", "1.2.3", rows, cols
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    if syntax == RLELossless:
        ds.PixelData = encapsulate([b"\x00" * 64] * min(frames, 4))
    else:
        n = rows * cols * frames * 2 if pixel_bytes is None else pixel_bytes
        ds.PixelData = (np.arange(n // 2, dtype=np.int16) % 1000).tobytes()
    if trailing:
        ds.add_new(0xFFFCFFFC, "OB", bytes(trailing))  # DataSetTrailingPadding
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    path.write_bytes(buffer.getvalue())
    return path


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, RLELossless])
def test_announced_frames_beyond_the_limit_are_refused_before_decoding(tmp_path: Path, syntax: str) -> None:
    """8000 x 8000 x 40 frames announced (4.8 GiB decoded) in a file of a few KB."""
    path = dicom_file(tmp_path / "bomb.dcm", rows=8000, cols=8000, frames=40, syntax=syntax, pixel_bytes=4096)
    assert path.stat().st_size < 64 * 1024
    for load in (load_slice, load_series, probe_image, read_dicom_header):
        with pytest.raises(DataError, match="pixel data too large") as err:
            load(path)
        assert str(err.value).startswith(str(path)) and "40 frame(s) x 8000 x 8000" in str(err.value)


def test_one_huge_frame_is_refused(tmp_path: Path) -> None:
    path = dicom_file(
        tmp_path / "wide.dcm", rows=20000, cols=20000, syntax=DeflatedExplicitVRLittleEndian, pixel_bytes=64
    )
    with pytest.raises(DataError, match="frame too large"):
        load_slice(path)


def test_deflated_header_is_read_without_inflating_the_pixels(tmp_path: Path, monkeypatch) -> None:
    """The header of a deflated file comes from a lazily inflated stream stopped before the pixel data."""
    path = dicom_file(tmp_path / "d.dcm", rows=256, cols=256, frames=8, syntax=DeflatedExplicitVRLittleEndian)
    monkeypatch.setattr(dicom_limits, "MAX_HEADER_BYTES", 64 * 1024)  # far less than the 1 MiB of pixels
    header = read_header(path)
    assert header.deflated and header.pixel_offset is not None
    assert "PixelData" not in header.dataset and int(header.dataset.NumberOfFrames) == 8


def test_deflated_stream_longer_than_its_header_announces_is_refused(tmp_path: Path) -> None:
    """A 32 x 32 header followed by 8 MiB of padding: the inflated length is counted (streaming)
    and refused."""
    path = dicom_file(tmp_path / "long.dcm", syntax=DeflatedExplicitVRLittleEndian, trailing=8 << 20)
    assert path.stat().st_size < 64 * 1024
    with pytest.raises(DataError, match="inflates beyond"):
        load_slice(path)


def test_limits_are_configurable_and_normal_files_still_load(tmp_path: Path) -> None:
    plain = dicom_file(tmp_path / "p.dcm", rows=64, cols=48, frames=3)
    deflated = dicom_file(
        tmp_path / "d.dcm", rows=64, cols=48, frames=3, syntax=DeflatedExplicitVRLittleEndian
    )
    a, b = load_series(plain, window="1500,-600"), load_series(deflated, window="1500,-600")
    assert a.images.shape == (3, 64, 48) and np.array_equal(a.images, b.images)
    ds = pydicom.dcmread(plain, stop_before_pixels=True)
    assert check_size(ds, plain).nbytes == 3 * 64 * 48 * 2
    with pytest.raises(DataError, match="the limit is"):
        check_size(ds, plain, DicomLimits(max_bytes=1000))


@pytest.mark.parametrize("value", ["x", "-3"])
def test_non_integer_frame_count_is_a_data_error(value: str) -> None:
    ds = pydicom.Dataset()
    ds.Rows, ds.Columns = 8, 8
    ds.add_new(0x00280008, "LO", value)  # NumberOfFrames, stored as text so any value survives
    with pytest.raises(DataError, match="NumberOfFrames"):
        check_size(ds, "f.dcm")
