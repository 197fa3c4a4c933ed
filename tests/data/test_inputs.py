"""Input expansion for prediction: files, folders, DICOM series, NIfTI volumes, skipped files."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from ct_dicom import write_ct
from PIL import Image

from covidct.data.inputs import InputSlice, collect_inputs, iter_inputs
from covidct.errors import DataError


def png(path: Path, value: int = 10) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 6), value, dtype=np.uint8)).save(path)
    return path


def dicom_slice(path: Path, z: float) -> Path:
    return write_ct(path, np.full((4, 4), 1024 + int(z), dtype=np.uint16), z=z, series_uid="1.2.3")  # HU == z


def test_folder_expansion_groups_and_order(tmp_path: Path) -> None:
    root = tmp_path / "in"
    png(root / "lone.png")
    png(root / "COVID" / "a.png")  # a class folder is not a patient
    png(root / "p01" / "1.png")
    png(root / "p01" / "2.png")
    for name, z in [("x.dcm", 100.0), ("y.dcm", -100.0), ("z.dcm", 0.0)]:
        dicom_slice(root / "series" / name, z)
    nib.save(nib.Nifti1Image(np.full((4, 4, 2), -600.0, dtype=np.float32), np.eye(4)), root / "vol.nii.gz")
    (root / "bad.png").write_text("no")
    (root / "readme.txt").write_text("hi")
    slices, skipped = collect_inputs([root], window="lung")
    by_source = {Path(s.source).name: s for s in slices}
    assert by_source["lone.png"].group == str(root / "lone.png")
    assert by_source["a.png"].group == str(root / "COVID" / "a.png")
    assert by_source["1.png"].group == by_source["2.png"].group == str(root / "p01")
    series = [s for s in slices if s.group == str(root / "series")]
    assert [Path(s.source).name for s in series] == ["y.dcm", "z.dcm", "x.dcm"]  # anatomical order
    np.testing.assert_allclose(
        [s.image[0, 0] for s in series], [1250 / 1500, 1350 / 1500, 1450 / 1500], atol=1e-6
    )
    vol = [s for s in slices if s.group == str(root / "vol.nii.gz")]
    assert [s.source for s in vol] == [f"{root / 'vol.nii.gz'}#0", f"{root / 'vol.nii.gz'}#1"]
    np.testing.assert_allclose(vol[0].image, 0.5)
    assert sorted(Path(p).name for p, _ in skipped) == ["bad.png", "readme.txt"]
    assert all(isinstance(s, InputSlice) and s.image.dtype == np.float32 for s in slices)
    assert len(slices) == 1 + 1 + 2 + 3 + 2


def test_single_files_and_missing_paths(tmp_path: Path) -> None:
    a = png(tmp_path / "a.png", 255)
    d = dicom_slice(tmp_path / "s.dcm", 50.0)
    slices, skipped = collect_inputs([a, d, tmp_path / "missing.png"], window="mediastinal")
    assert [s.group for s in slices] == [str(a), str(d)]
    assert slices[0].image.max() == 1.0 and slices[1].image[0, 0] == pytest.approx(0.5)
    assert skipped == [(str(tmp_path / "missing.png"), "not found")]


def test_iter_is_lazy_and_nothing_readable_raises(tmp_path: Path) -> None:
    png(tmp_path / "ok" / "1.png")
    png(tmp_path / "ok" / "2.png")
    iterator = iter_inputs(tmp_path / "ok")
    first = next(iterator)
    assert Path(first.source).name == "1.png"
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"")
    with pytest.raises(DataError, match="no readable images") as info:
        collect_inputs(tmp_path / "bad")
    assert "empty file" in str(info.value) and str(info.value).startswith(str(tmp_path / "bad"))


def test_input_jobs_do_the_work_of_iter_inputs_in_its_order(tmp_path: Path) -> None:
    from covidct.data.inputs import Skipped, input_jobs

    png(tmp_path / "a" / "1.png")
    (tmp_path / "a" / "2.txt").write_text("not an image")
    (tmp_path / "a" / "3.png").write_bytes(b"\x89PNG broken")
    for k, z in enumerate((30.0, 10.0, 20.0)):
        dicom_slice(tmp_path / "b" / f"s{k}.dcm", z)
    skipped: list[tuple[str, str]] = []
    expected = [s.source for s in iter_inputs(tmp_path, skipped=skipped)]
    outs = [o for job in input_jobs(tmp_path) for o in job()]
    assert [o.source for o in outs if isinstance(o, InputSlice)] == expected
    assert [(o.path, o.reason) for o in outs if isinstance(o, Skipped)] == skipped
    assert {Path(p).name for p, _ in skipped} == {"2.txt", "3.png"}
    assert [Path(s).name for s in expected] == ["1.png", "s1.dcm", "s2.dcm", "s0.dcm"]  # series by z
