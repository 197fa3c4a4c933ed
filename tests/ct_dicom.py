"""The one DICOM test-file factory: minimal CT slices (or multi-frame files) written with pydicom.

``write_ct(path, stored, ...)`` writes a file; ``ct_dataset(stored, ...)`` returns the dataset for tests that
alter it first (hostile tags, compressed pixel data). ``stored`` holds the raw 16-bit values (HU = stored *
slope + intercept); ``None`` leaves every pixel tag to the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

Number = float | int | str  # a string is written as is (DS/IS text)


def ct_dataset(
    stored: np.ndarray | None,
    *,
    z: Number | None = 0.0,
    position: Sequence[Number] = (0.0, 0.0),
    iop: Sequence[float] = (1, 0, 0, 0, 1, 0),
    location: Number | None = None,
    instance: int | None = None,
    slope: Number | None = 1,
    intercept: Number = -1024,
    series_uid: str = "1.2.3",
    patient_id: str | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    pixels: bool = True,
) -> Dataset:
    """A CT dataset: ImagePositionPatient ``[*position, z]`` (none when ``z`` is None), 16-bit pixels."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID = "CT", series_uid
    if patient_id is not None:
        ds.PatientID = patient_id
    if z is not None:
        ds.ImagePositionPatient = [*position, z]
        ds.ImageOrientationPatient = list(iop)
    if location is not None:
        ds.SliceLocation = location
    if instance is not None:
        ds.InstanceNumber = instance
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if stored is not None:
        arr = np.asarray(stored, dtype=np.uint16)
        ds.Rows, ds.Columns = arr.shape[-2:]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        if arr.ndim == 3:
            ds.NumberOfFrames = arr.shape[0]
        if pixels:
            ds.PixelData = arr.tobytes()
    return ds


def write_ct(path: Path, stored: np.ndarray, **options: object) -> Path:
    """:func:`ct_dataset` saved as a DICOM file at ``path`` (parent folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ct_dataset(stored, **options).save_as(path, enforce_file_format=True)  # type: ignore[arg-type]
    return path
