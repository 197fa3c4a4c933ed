"""Readers never pass on NaN/Inf pixels, and malformed numeric DICOM tags are one clear DataError each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hostile_files import float_tiff, nifti, truncated_dicom, write_dicom

from covidct.data.manifest import scan_dataset
from covidct.data.readers import load_series, load_slice, probe_image
from covidct.errors import DataError


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_tiff_with_one_non_finite_pixel_is_an_error(tmp_path: Path, bad: float) -> None:
    path = float_tiff(tmp_path / "slice.tif", bad)
    with pytest.raises(DataError, match=r"slice\.tif: non-finite pixel values"):
        load_slice(path)
    with pytest.raises(DataError, match="non-finite"):
        probe_image(path)


def test_nifti_with_inf_is_an_error(tmp_path: Path) -> None:
    path = nifti(tmp_path / "vol.nii.gz")
    with pytest.raises(DataError, match=r"vol\.nii\.gz: non-finite voxel values \(0 NaN, 1 infinite"):
        load_series(path)
    with pytest.raises(DataError, match="non-finite"):
        load_slice(f"{path}#1")


def test_dicom_float_pixel_data_with_nan_is_an_error(tmp_path: Path) -> None:
    pixels = np.full((32, 32), -800.0, dtype=np.float32)
    pixels[3, 3] = np.nan
    path = write_dicom(tmp_path / "float.dcm", float_pixels=pixels)
    with pytest.raises(DataError, match=r"float\.dcm: non-finite pixel values \(1 NaN"):
        load_slice(path)


@pytest.mark.parametrize(
    ("tag", "text", "reason"),
    [
        ("RescaleIntercept", "nan", "RescaleIntercept is not a finite number ('nan')"),
        ("RescaleSlope", "1e309", "RescaleSlope is not a finite number ('1e309')"),
        ("RescaleSlope", "abc", "RescaleSlope is not a number ('abc')"),
        ("ImagePositionPatient", "abc", "ImagePositionPatient is not a number"),
        ("SliceLocation", "x1", "SliceLocation is not a number ('x1')"),
    ],
)
def test_malformed_numeric_tags_are_data_errors(tmp_path: Path, tag: str, text: str, reason: str) -> None:
    path = write_dicom(tmp_path / "bad.dcm", raw={tag: text})
    with pytest.raises(DataError, match="bad.dcm: " + reason.replace("(", r"\(").replace(")", r"\)")):
        probe_image(path)


def test_huge_slope_overflowing_float32_is_an_error(tmp_path: Path) -> None:
    path = write_dicom(
        tmp_path / "big.dcm", raw={"RescaleSlope": "1e38"}
    )  # finite, but x stored value -> Inf
    with pytest.raises(DataError, match=r"big\.dcm: non-finite Hounsfield"):
        load_slice(path)


def test_empty_modality_lut_is_an_error(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "lut.dcm", modality_lut=True)
    with pytest.raises(DataError, match=r"lut\.dcm: empty or incomplete ModalityLUTSequence"):
        load_slice(path)


def test_truncated_dicom_says_truncated(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"cut\.dcm: truncated DICOM file"):
        load_slice(truncated_dicom(tmp_path / "cut.dcm"))
    cut = write_dicom(tmp_path / "cut2.dcm")
    cut.write_bytes(cut.read_bytes()[:-40])  # inside the pixel data
    with pytest.raises(DataError, match=r"cut2\.dcm: truncated DICOM file"):
        load_slice(cut)


@pytest.mark.parametrize("tag", ["ImagePositionPatient", "SliceLocation"])
def test_series_with_a_non_numeric_position_names_the_file(tmp_path: Path, tag: str) -> None:
    folder = tmp_path / "series"
    folder.mkdir()
    for k in range(3):
        write_dicom(folder / f"{k}.dcm", z=float(k), raw={tag: "abc"} if k == 1 else None)
    with pytest.raises(DataError, match=rf"1\.dcm: {tag} is not a number"):
        load_series(folder)


def test_scan_skips_and_reports_a_bad_series_file(tmp_path: Path) -> None:
    """One malformed slice no longer aborts the scan: it is skipped with its reason, the rest stays."""
    for cls in ("COVID-19", "Healthy"):
        for p in ("P1", "P2"):
            folder = tmp_path / "data" / cls / p
            folder.mkdir(parents=True)
            for k in range(3):
                bad = cls == "Healthy" and p == "P2" and k == 1
                write_dicom(
                    folder / f"{k}.dcm", z=float(k), raw={"ImagePositionPatient": "abc"} if bad else None
                )
    scan = scan_dataset(tmp_path / "data")
    assert len(scan.samples) == 11
    assert [Path(p).name for p, _ in scan.skipped] == ["1.dcm"]
    assert "ImagePositionPatient is not a number" in scan.skipped[0][1]
