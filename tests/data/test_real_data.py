"""Real data in ../shared/data: the JPEG-Lossless DICOM series and the 2-class PNG set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from covidct.data.readers import load_series, load_slice
from covidct.data.window import Window

pytestmark = pytest.mark.real_data
WIDE = Window(4000, 0)


def test_jpeg_lossless_slice_decodes_to_plausible_hu(shared_data: Path) -> None:
    path = next(iter(sorted((shared_data / "covid-ct-md" / "COVID-19" / "P001").glob("*.dcm"))))
    assert (
        pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.70"
    )
    hu = load_slice(path, window=WIDE).astype(np.float64) * 4000 - 2000
    assert hu.shape == (512, 512)
    corners = np.concatenate([hu[:20, :20].ravel(), hu[:20, -20:].ravel()])  # outside the body: air
    assert -1100 < np.median(corners) < -900
    centre = hu[200:312, 200:312]
    assert centre.max() > 0  # soft tissue / bone inside the body


def test_series_comes_back_in_slice_order(shared_data: Path) -> None:
    folder = shared_data / "covid-ct-md" / "CAP" / "cap001"
    series = load_series(folder)
    assert series.images.shape == (84, 512, 512) and series.images.dtype == np.float32
    assert 0.0 <= float(series.images.min()) and float(series.images.max()) <= 1.0
    locations = [float(pydicom.dcmread(s, stop_before_pixels=True).SliceLocation) for s in series.sources]
    assert np.all(np.diff(locations) > 0)  # strictly monotonic (inferior -> superior)
    assert series.positions is not None and np.all(np.diff(series.positions) > 0)
    names = [Path(s).name for s in series.sources]
    assert names != sorted(names)  # the file names do not carry the order


def test_scan_sarscov2_ct(shared_data: Path) -> None:
    from covidct.data.manifest import scan_dataset

    scan = scan_dataset(shared_data / "sarscov2-ct")
    assert len(scan.samples) == 2481 and not scan.skipped
    assert scan.layout == "class_folders" and scan.classes == ("COVID-19", "non-COVID")
    assert scan.class_counts() == {"COVID-19": (1252, 0), "non-COVID": (1229, 0)}
    assert not scan.has_patients and "slice-level" in (scan.warning or "")
    pairs = {tuple(Path(p).name for p in group) for group in scan.duplicates}
    assert pairs == {("Covid (128).png", "Covid (129).png"), ("Covid (134).png", "Covid (135).png")}
    assert scan.size_range() == ((119, 416), (182, 534))


def test_scan_covid_ct_md_patients_and_slice_order(shared_data: Path) -> None:
    from covidct.data.manifest import scan_dataset

    root = shared_data / "covid-ct-md"
    scan = scan_dataset(root)
    assert scan.layout == "class_patient" and scan.has_patients and not scan.skipped
    assert scan.classes == ("COVID-19", "Healthy", "Pneumonia")
    assert scan.class_counts() == {"COVID-19": (74, 1), "Healthy": (77, 1), "Pneumonia": (84, 1)}
    location = {}
    for line in (root / "slice-labels.csv").read_text().splitlines()[1:]:
        cells = line.split(",")
        location[str(root / cells[0])] = float(cells[4])
    for patient in {s.patient_id for s in scan.samples}:
        z = [location[s.path] for s in scan.samples if s.patient_id == patient]
        assert np.all(np.diff(z) > 0), patient  # slices in anatomical order (inferior -> superior)
    assert {r.format for r in scan.rows} == {"dicom"} and scan.size_range() == ((512, 512), (512, 512))
