"""Dataset discovery: layouts, aliases, class order, unreadable files, duplicates, manifest round trip."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from ct_dicom import write_ct
from PIL import Image

from covidct.data.manifest import (
    MANIFEST_COLUMNS,
    NO_PATIENTS_WARNING,
    canonical_label,
    class_order,
    load_manifest,
    resolve_aliases,
    save_manifest,
    scan_dataset,
)
from covidct.errors import ConfigError, DataError


def png(path: Path, value: int, size: tuple[int, int] = (8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, dtype=np.uint8)).save(path)
    return path


def dicom_slice(path: Path, z: float, value: int = 1000) -> Path:
    return write_ct(path, np.full((4, 4), value, dtype=np.uint16), z=z, series_uid="1.2.3", patient_id="X")


def test_class_folders_layout_with_bad_files_and_duplicates(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    png(root / "COVID" / "Covid (1).png", 10)
    png(root / "COVID" / "Covid (2).png", 20, (6, 9))
    png(root / "COVID" / "Covid (10).png", 10)  # exact duplicate of Covid (1)
    png(root / "non-COVID" / "Non-Covid (1).png", 30, (12, 5))
    (root / "non-COVID" / "broken.png").write_text("not a png")
    (root / "non-COVID" / "empty.png").write_bytes(b"")
    (root / "non-COVID" / "notes.txt").write_text("x")
    (root / ".hidden").mkdir()
    png(root / ".hidden" / "x.png", 1)
    scan = scan_dataset(root)
    assert scan.layout == "class_folders" and scan.classes == ("COVID-19", "non-COVID")
    assert [Path(s.path).name for s in scan.samples] == [
        "Covid (1).png",
        "Covid (2).png",
        "Covid (10).png",
        "Non-Covid (1).png",
    ]
    assert all(s.patient_id is None for s in scan.samples) and not scan.has_patients
    assert scan.warning == NO_PATIENTS_WARNING and "optimistic" in scan.warning
    assert {Path(p).name: r for p, r in scan.skipped}.keys() == {"broken.png", "empty.png", "notes.txt"}
    assert "empty" in dict((Path(p).name, r) for p, r in scan.skipped)["empty.png"]
    assert [tuple(Path(p).name for p in group) for group in scan.duplicates] == [
        ("Covid (1).png", "Covid (10).png")
    ]
    assert scan.size_range() == ((6, 12), (5, 9))
    assert scan.class_counts() == {"COVID-19": (3, 0), "non-COVID": (1, 0)}


def test_class_patient_layout_pngs_and_dicom_series(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    for k in (1, 2, 10):
        png(root / "Covid" / "Patient (1)" / f"{k}.png", k)
    png(
        root / "Healthy" / "Patient (1)" / "1.png", 50
    )  # same folder name as a COVID patient: another patient
    for name, z in [("s_b.dcm", 8.0), ("s_a.dcm", -4.0), ("s_c.dcm", 2.0)]:
        dicom_slice(root / "CAP" / "cap001" / name, z, value=1024 + int(z))
    scan = scan_dataset(root)
    assert scan.layout == "class_patient" and scan.has_patients and scan.warning is None
    assert scan.classes == ("COVID-19", "Healthy", "Pneumonia")
    assert scan.class_counts() == {"COVID-19": (3, 1), "Healthy": (1, 1), "Pneumonia": (3, 1)}
    assert {s.patient_id for s in scan.samples} == {"Covid/Patient (1)", "Healthy/Patient (1)", "CAP/cap001"}
    covid = [Path(s.path).name for s in scan.samples if s.label == "COVID-19"]
    assert covid == ["1.png", "2.png", "10.png"]
    cap = [Path(s.path).name for s in scan.samples if s.label == "Pneumonia"]
    assert cap == ["s_a.dcm", "s_c.dcm", "s_b.dcm"]  # anatomical order, not file-name order
    formats = {r.format for r in scan.rows}
    assert formats == {"png", "dicom"}


def test_dicom_without_pixels_is_listed_not_fatal(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    png(root / "Normal" / "p1" / "1.png", 1)
    bad = dicom_slice(root / "CAP" / "p2" / "a.dcm", 0.0)
    from pydicom import dcmread

    ds = dcmread(bad)
    del ds.PixelData
    ds.save_as(bad)
    dicom_slice(root / "CAP" / "p2" / "b.dcm", 1.0)
    scan = scan_dataset(root)
    assert [Path(s.path).name for s in scan.samples if s.label == "Pneumonia"] == ["b.dcm"]
    assert len(scan.skipped) == 1 and "pixel data" in scan.skipped[0][1]
    assert [r.readable for r in scan.rows if Path(r.path).name == "a.dcm"] == [False]


def test_csv_layout_relative_paths_aliases_and_classes(tmp_path: Path) -> None:
    png(tmp_path / "imgs" / "a.png", 1)
    png(tmp_path / "imgs" / "b.png", 2)
    png(tmp_path / "other" / "c.png", 3)
    (tmp_path / "lists").mkdir()
    csv_path = tmp_path / "lists" / "labels.csv"
    csv_path.write_text(
        "path,label,patient_id\n../imgs/a.png,Normal,p1\n../imgs/b.png,Tuberculosis,p2\n"
        f"{tmp_path / 'other' / 'c.png'},covid,p3\n../imgs/missing.png,Normal,p4\n"
    )
    scan = scan_dataset(csv_path)
    assert scan.layout == "csv" and scan.has_patients
    assert scan.classes == ("COVID-19", "Healthy", "Tuberculosis")  # canonical first, then the others sorted
    assert {Path(s.path).name: s.label for s in scan.samples} == {
        "a.png": "Healthy",
        "b.png": "Tuberculosis",
        "c.png": "COVID-19",
    }
    assert Path(scan.samples[0].path).is_absolute()
    assert [(Path(p).name, r) for p, r in scan.skipped] == [("missing.png", "file not found")]
    custom = scan_dataset(
        csv_path, aliases={"Tuberculosis": "Pneumonia"}, classes=["Healthy", "COVID-19", "Pneumonia"]
    )
    assert custom.classes == ("Healthy", "COVID-19", "Pneumonia")
    assert {s.label for s in custom.samples} == {"Healthy", "Pneumonia", "COVID-19"}
    with pytest.raises(ConfigError, match="Tuberculosis"):
        scan_dataset(csv_path, classes=["Healthy", "COVID-19"])
    (tmp_path / "bad.csv").write_text("file,class\nx.png,Normal\n")
    with pytest.raises(DataError, match="path,label"):
        scan_dataset(tmp_path / "bad.csv")


def test_manifest_round_trip(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    png(root / "COVID-19" / "p1" / "1.png", 1)
    png(root / "COVID-19" / "p1" / "2.png", 1)
    png(root / "Healthy" / "p2" / "1.png", 2, (5, 7))
    (root / "Healthy" / "p2" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n trunc")
    scan = scan_dataset(root)
    out = save_manifest(scan, tmp_path / "m" / "manifest.csv")
    header = out.read_text().splitlines()[0]
    assert tuple(header.split(",")) == MANIFEST_COLUMNS
    back = load_manifest(out)
    assert back.samples == scan.samples and back.classes == scan.classes and back.rows == scan.rows
    assert back.duplicates == scan.duplicates and len(back.duplicates) == 1
    assert len(back.skipped) == 1 and back.has_patients
    row = next(r for r in back.rows if r.label == "Healthy" and r.readable)
    assert (row.height, row.width, row.format) == (5, 7, "png") and len(row.sha256) == 64


def test_nifti_volume_in_patient_folder_gives_one_sample_per_slice(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    (root / "COVID" / "p1").mkdir(parents=True)
    nib.save(
        nib.Nifti1Image(np.zeros((6, 5, 3), dtype=np.float32), np.eye(4)), root / "COVID" / "p1" / "v.nii.gz"
    )
    png(root / "Normal" / "p2" / "1.png", 1)
    scan = scan_dataset(root)
    vol = [s.path for s in scan.samples if s.label == "COVID-19"]
    assert [p.rsplit("#", 1)[1] for p in vol] == ["0", "1", "2"]
    assert {(r.height, r.width) for r in scan.rows if r.format == "nifti"} == {(5, 6)}


def test_errors_for_unusable_roots(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        scan_dataset(tmp_path / "nope")
    (tmp_path / "flat").mkdir()
    png(tmp_path / "flat" / "a.png", 1)
    with pytest.raises(DataError, match="no class folders"):
        scan_dataset(tmp_path / "flat")
    (tmp_path / "bad" / "COVID").mkdir(parents=True)
    (tmp_path / "bad" / "COVID" / "x.png").write_text("nope")
    with pytest.raises(DataError, match="no readable images") as info:
        scan_dataset(tmp_path / "bad")
    assert str(info.value).startswith(str(tmp_path / "bad"))


def test_csv_duplicate_rows_are_one_sample_or_a_clear_error(tmp_path: Path) -> None:
    png(tmp_path / "a.png", 1)
    png(tmp_path / "b.png", 2)
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("path,label,patient_id\na.png,Normal,p1\nb.png,covid,p2\na.png,Healthy,p1\n")
    scan = scan_dataset(csv_path)
    assert sorted(Path(s.path).name for s in scan.samples) == ["a.png", "b.png"]
    assert len(scan.rows) == 2
    assert any("1 duplicate row(s)" in w and "line 4 repeats line 2" in w for w in scan.warnings), (
        scan.warnings
    )
    csv_path.write_text("path,label,patient_id\na.png,Normal,p1\nb.png,covid,p2\na.png,covid,p1\n")
    with pytest.raises(
        DataError, match=r"lines 2 and 4 give .*a\.png two labels \('Healthy' and 'COVID-19'\)"
    ):
        scan_dataset(csv_path)
    csv_path.write_text("path,label,patient_id\na.png,Normal,p1\na.png,Normal,p9\nb.png,covid,p2\n")
    with pytest.raises(DataError, match="lines 2 and 3 .* two patient ids"):
        scan_dataset(csv_path)


def test_manifest_with_duplicate_rows(tmp_path: Path) -> None:
    png(tmp_path / "a.png", 1)
    png(tmp_path / "b.png", 2)
    (tmp_path / "labels.csv").write_text("path,label\na.png,Normal\nb.png,covid\n")
    manifest = save_manifest(scan_dataset(tmp_path / "labels.csv"), tmp_path / "manifest.csv")
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join([*lines, lines[1]]) + "\n")
    back = load_manifest(manifest)
    assert len(back.samples) == 2 and any("duplicate row" in w for w in back.warnings)
    a_line = next(n for n, line in enumerate(lines) if "a.png" in line)
    manifest.write_text("\n".join([*lines, lines[a_line].replace(",Healthy,", ",COVID-19,")]) + "\n")
    with pytest.raises(DataError, match=f"lines {a_line + 1} and 4 .* two labels"):
        load_manifest(manifest)


@pytest.mark.parametrize("spelling", ["non-COVID", "Non-COVID", "non-covid", "Non-Covid", "NON-COVID"])
def test_non_covid_is_its_own_class_not_healthy(spelling: str) -> None:
    """issue 10: "non-COVID" (not infected by SARS-CoV-2) is not evidence of a healthy lung."""
    aliases = resolve_aliases()
    assert canonical_label(spelling, aliases) == "non-COVID"
    assert canonical_label("Normal", aliases) == canonical_label("healthy", aliases) == "Healthy"
    assert class_order(["Healthy", "non-COVID", "COVID-19", "Pneumonia"]) == (
        "COVID-19",
        "non-COVID",
        "Healthy",
        "Pneumonia",
    )


def test_non_covid_folder_and_csv_label_stay_non_covid(tmp_path: Path) -> None:
    png(tmp_path / "ds" / "Non-COVID" / "a.png", 1)
    png(tmp_path / "ds" / "Normal" / "b.png", 2)
    scan = scan_dataset(tmp_path / "ds")
    assert scan.classes == ("non-COVID", "Healthy")
    assert {Path(s.path).name: s.label for s in scan.samples} == {"a.png": "non-COVID", "b.png": "Healthy"}
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\nds/Non-COVID/a.png,non-covid\n")
    assert [s.label for s in scan_dataset(manifest).samples] == ["non-COVID"]
