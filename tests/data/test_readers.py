"""Readers on files the tests write: PNG/JPEG (8/16-bit), TIFF, DICOM (series, multi-frame), NIfTI, bad."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import tifffile
from ct_dicom import ct_dataset
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian

from covidct.data.readers import detect_format, load_series, load_slice, split_source
from covidct.data.window import Window
from covidct.errors import ConfigError, DataError

WIDE = Window(4000, 0)  # maps HU -2000..2000 linearly onto 0..1: hu = v * 4000 - 2000


def to_hu(v: np.ndarray | float) -> np.ndarray:
    return np.asarray(v, dtype=np.float64) * 4000 - 2000


def write_dicom(
    path: Path,
    stored: np.ndarray,
    *,
    slope: float = 1.0,
    intercept: float = -1024.0,
    z: float | None = 0.0,
    location: float | None = None,
    instance: int | None = 1,
    series_uid: str = "1.2.3.4",
    pixels: bool = True,
    iop: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> Path:
    """A minimal CT slice (or multi-frame file when ``stored`` is 3-D); other syntaxes get junk JPEG data."""
    explicit = transfer_syntax == ExplicitVRLittleEndian
    ds = ct_dataset(
        stored,
        z=z,
        position=(-10.0, -10.0),
        iop=iop,
        location=location,
        instance=instance,
        slope=slope,
        intercept=intercept,
        series_uid=series_uid,
        patient_id="PAT-1",
        transfer_syntax=transfer_syntax,
        pixels=pixels and explicit,
    )
    if pixels and not explicit:
        ds.PixelData = encapsulate([b"\xff\xd8junk"])
        ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


# ----------------------------------------------------------------------------------------------- PIL images
@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "LA"])
def test_8bit_png_modes_give_luminance(tmp_path: Path, mode: str) -> None:
    gray = np.array([[0, 64], [128, 255]], dtype=np.uint8)
    im = Image.fromarray(gray, "L").convert(mode)
    im.save(tmp_path / "a.png")
    out = load_slice(tmp_path / "a.png")
    assert out.dtype == np.float32 and out.shape == (2, 2)
    np.testing.assert_allclose(out, gray / 255.0, atol=1.5 / 255)


def test_colour_png_uses_luminance_weights(tmp_path: Path) -> None:
    Image.fromarray(np.array([[[255, 0, 0], [0, 0, 255]]], dtype=np.uint8), "RGB").save(tmp_path / "c.png")
    np.testing.assert_allclose(load_slice(tmp_path / "c.png"), [[76 / 255, 29 / 255]], atol=1.5 / 255)


def test_jpeg(tmp_path: Path) -> None:
    gray = np.full((16, 16), 100, dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "a.jpg", quality=95)
    out = load_slice(tmp_path / "a.jpg")
    assert out.shape == (16, 16) and abs(float(out.mean()) - 100 / 255) < 2 / 255


def test_16bit_png_normalizations(tmp_path: Path) -> None:
    arr = np.array([[1000, 2000], [3000, 5000]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "a16.png")
    assert Image.open(tmp_path / "a16.png").mode.startswith("I")
    np.testing.assert_allclose(load_slice(tmp_path / "a16.png"), [[0, 0.25], [0.5, 1.0]], atol=1e-6)
    np.testing.assert_allclose(
        load_slice(tmp_path / "a16.png", normalization=(0, 4000)), [[0.25, 0.5], [0.75, 1]]
    )
    np.testing.assert_allclose(
        load_slice(tmp_path / "a16.png", normalization="0,10000"), [[0.1, 0.2], [0.3, 0.5]]
    )
    # "window": values are HU; 1000 HU and above are white in the lung window, (-600 would be 0.5)
    assert load_slice(tmp_path / "a16.png", normalization="window", window="4000,0")[0, 0] == pytest.approx(
        0.75
    )
    with pytest.raises(ConfigError):
        load_slice(tmp_path / "a16.png", normalization="bogus")


def test_16bit_tiff_minmax_window_and_pages(tmp_path: Path) -> None:
    hu = np.array([[-1000, -600], [0, 150]], dtype=np.int16)
    tifffile.imwrite(tmp_path / "s.tif", hu)
    np.testing.assert_allclose(load_slice(tmp_path / "s.tif"), (hu + 1000) / 1150.0, atol=1e-6)
    lung = load_slice(tmp_path / "s.tif", normalization="window", window="lung")
    np.testing.assert_allclose(lung, [[350 / 1500, 0.5], [0.9, 1.0]], atol=1e-6)
    tifffile.imwrite(tmp_path / "u.tiff", np.array([[0, 65535]], dtype=np.uint16))
    np.testing.assert_allclose(load_slice(tmp_path / "u.tiff"), [[0.0, 1.0]])
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([hu, hu + 100]))
    with pytest.raises(DataError, match="pages"):
        load_slice(tmp_path / "stack.tif")
    page1 = load_slice(f"{tmp_path / 'stack.tif'}#1", normalization=(-1000, 1000))
    assert page1[0, 0] == pytest.approx(0.05)


# ----------------------------------------------------------------------------------------------- DICOM
def test_dicom_hu_and_windows(tmp_path: Path) -> None:
    stored = np.array([[0, 424], [1024, 1074]], dtype=np.uint16)  # slope 1, intercept -1024 -> HU
    path = write_dicom(tmp_path / "s.dcm", stored)
    hu = to_hu(load_slice(path, window=WIDE))
    np.testing.assert_allclose(hu, [[-1024, -600], [0, 50]], atol=0.01)
    lung = [[326 / 1500, 0.5], [0.9, 1400 / 1500]]  # (hu + 1350) / 1500
    np.testing.assert_allclose(load_slice(path), lung, atol=1e-6)
    np.testing.assert_allclose(load_slice(path, window="mediastinal"), [[0, 0], [125 / 350, 0.5]], atol=1e-6)
    np.testing.assert_allclose(load_slice(path, window="1000,-500"), [[0, 0.4], [1, 1]], atol=1e-6)


def test_dicom_slope_and_intercept(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "s.dcm", np.array([[0, 500, 1000]]), slope=2.0, intercept=-1000.0)
    np.testing.assert_allclose(to_hu(load_slice(path, window=WIDE)), [[-1000, 0, 1000]], atol=0.01)


def _write_series(folder: Path, zs: list[float], names: list[str], **kw: object) -> None:
    folder.mkdir()
    for z, name in zip(zs, names, strict=True):
        value = int(z) + 1024  # each slice's HU equals its z, so the order is visible in the pixels
        write_dicom(folder / name, np.full((4, 4), value), z=z, **kw)  # type: ignore[arg-type]


def test_series_ordered_by_position_not_file_name(tmp_path: Path) -> None:
    zs = [30.0, -10.0, 50.0, 10.0, -30.0]
    names = ["a.dcm", "b.dcm", "c.dcm", "d.dcm", "e.dcm"]  # name order != position order
    _write_series(tmp_path / "ser", zs, names, instance=None)
    series = load_series(tmp_path / "ser", window=WIDE)
    assert series.positions == sorted(zs)
    np.testing.assert_allclose(to_hu(series.images[:, 0, 0]), sorted(zs), atol=0.01)
    assert [Path(s).name for s in series.sources] == ["e.dcm", "b.dcm", "d.dcm", "a.dcm", "c.dcm"]
    assert series.patient_id == "PAT-1" and series.images.shape == (5, 4, 4)


def test_series_position_projected_on_the_normal(tmp_path: Path) -> None:
    # orientation rows along x, columns along -z: the normal is +y; z of the position is irrelevant
    folder = tmp_path / "cor"
    folder.mkdir()
    for i, y in enumerate([5.0, -5.0, 0.0]):
        ds_path = write_dicom(folder / f"{i}.dcm", np.full((2, 2), 1024 + int(y)), iop=(1, 0, 0, 0, 0, -1))
        ds = pydicom.dcmread(ds_path)
        ds.ImagePositionPatient = [0.0, y, 100.0 - 40 * i]
        ds.save_as(ds_path)
    series = load_series(folder, window=WIDE)
    np.testing.assert_allclose(to_hu(series.images[:, 0, 0]), [-5, 0, 5], atol=0.01)


def test_series_fallbacks_slice_location_then_instance(tmp_path: Path) -> None:
    _write_series(
        tmp_path / "loc", [3.0, 1.0, 2.0], ["1.dcm", "2.dcm", "3.dcm"], location=None, instance=None
    )
    folder = tmp_path / "loc2"
    folder.mkdir()
    for name, loc in [("x.dcm", 20.0), ("y.dcm", -20.0), ("z.dcm", 0.0)]:
        write_dicom(folder / name, np.full((2, 2), 1024 + int(loc)), z=None, location=loc)
    np.testing.assert_allclose(
        to_hu(load_series(folder, window=WIDE).images[:, 0, 0]), [-20, 0, 20], atol=0.01
    )
    folder = tmp_path / "inst"
    folder.mkdir()
    for name, inst in [("x.dcm", 3), ("y.dcm", 1), ("z.dcm", 2)]:
        write_dicom(folder / name, np.full((2, 2), 1024 + inst), z=None, instance=inst)
    series = load_series(folder, window=WIDE)
    assert series.positions is None
    np.testing.assert_allclose(to_hu(series.images[:, 0, 0]), [1, 2, 3], atol=0.01)


def test_series_folder_with_two_series_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "two"
    folder.mkdir()
    write_dicom(folder / "a.dcm", np.zeros((2, 2)), series_uid="1.1")
    write_dicom(folder / "b.dcm", np.zeros((2, 2)), series_uid="1.2")
    with pytest.raises(DataError, match="2 DICOM series"):
        load_series(folder)


def test_multiframe_dicom(tmp_path: Path) -> None:
    frames = np.stack([np.full((3, 3), 1024 + 10 * k) for k in range(4)])
    path = write_dicom(tmp_path / "mf.dcm", frames, z=None, slope=1.0, intercept=-1024.0)
    series = load_series(path, window=WIDE)
    assert series.images.shape == (4, 3, 3) and series.sources[2] == f"{path}#2"
    np.testing.assert_allclose(to_hu(series.images[:, 1, 1]), [0, 10, 20, 30], atol=0.01)
    np.testing.assert_allclose(to_hu(load_slice(f"{path}#3", window=WIDE)), 30, atol=0.01)
    with pytest.raises(DataError, match="load_series"):
        load_slice(path)
    with pytest.raises(DataError, match="out of range"):
        load_slice(f"{path}#9")


def test_enhanced_multiframe_per_frame_positions(tmp_path: Path) -> None:
    frames = np.stack([np.full((2, 2), 1024 + z) for z in (20, 0, 10)])
    path = write_dicom(tmp_path / "enh.dcm", frames, z=None, slope=1.0, intercept=0.0)
    ds = pydicom.dcmread(path)
    del ds.RescaleSlope, ds.RescaleIntercept
    shared, pvt, orient = Dataset(), Dataset(), Dataset()
    pvt.RescaleSlope, pvt.RescaleIntercept = 1.0, -1024.0
    orient.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PixelValueTransformationSequence, shared.PlaneOrientationSequence = [pvt], [orient]
    ds.SharedFunctionalGroupsSequence = [shared]
    per = []
    for z in (20.0, 0.0, 10.0):
        item, pos = Dataset(), Dataset()
        pos.ImagePositionPatient = [0.0, 0.0, z]
        item.PlanePositionSequence = [pos]
        per.append(item)
    ds.PerFrameFunctionalGroupsSequence = per
    ds.save_as(path)
    series = load_series(path, window=WIDE)
    assert series.positions == [0.0, 10.0, 20.0]
    np.testing.assert_allclose(to_hu(series.images[:, 0, 0]), [0, 10, 20], atol=0.01)


# ----------------------------------------------------------------------------------------------- NIfTI
def test_nifti_orientation_hu_and_slices(tmp_path: Path) -> None:
    data = np.full((4, 3, 2), -1000.0, dtype=np.float32)  # (i, j, k) in RAS: i -> right, j -> anterior
    data[3, 2, 1] = 0.0  # most right, most anterior voxel of the top slice
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "v.nii.gz")
    series = load_series(tmp_path / "v.nii.gz", window=WIDE)
    assert series.images.shape == (2, 3, 4) and series.positions == [0.0, 1.0]
    assert series.sources == [f"{tmp_path / 'v.nii.gz'}#0", f"{tmp_path / 'v.nii.gz'}#1"]
    top = to_hu(series.images[1])
    # radiological display: anterior at the top row, the patient's right on the left column
    assert top[0, 0] == pytest.approx(0, abs=0.01) and top[1:, :].max() < -900 and top[:, 1:].max() < -900
    # the same anatomy stored left-right flipped with an LAS affine reads back identically
    las = np.diag([-1.0, 1, 1, 1])
    las[0, 3] = 3.0
    nib.save(nib.Nifti1Image(data[::-1].copy(), las), tmp_path / "las.nii")
    np.testing.assert_allclose(load_series(tmp_path / "las.nii", window=WIDE).images, series.images)
    np.testing.assert_allclose(load_slice(f"{tmp_path / 'v.nii.gz'}#1", window=WIDE), series.images[1])


# ----------------------------------------------------------------------------------------------- bad files
def _assert_data_error(path: Path, match: str) -> None:
    with pytest.raises(DataError, match=match) as info:
        load_slice(path)
    assert str(info.value).startswith(f"{path}: ")


def test_bad_files_give_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    _assert_data_error(tmp_path / "empty.png", "empty file")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(
        tmp_path / "t.png"
    )
    (tmp_path / "trunc.png").write_bytes((tmp_path / "t.png").read_bytes()[:300])
    _assert_data_error(tmp_path / "trunc.png", "truncated")
    (tmp_path / "text.png").write_text("hello, I am not an image\n")
    _assert_data_error(tmp_path / "text.png", "not a readable")
    (tmp_path / "notes.txt").write_text("x")
    _assert_data_error(tmp_path / "notes.txt", "unknown file type")
    _assert_data_error(tmp_path / "missing.png", "not found")
    (tmp_path / "text.dcm").write_text("not dicom at all")
    _assert_data_error(tmp_path / "text.dcm", "not a DICOM")
    write_dicom(tmp_path / "nopix.dcm", np.zeros((2, 2)), pixels=False)
    _assert_data_error(tmp_path / "nopix.dcm", "without pixel data")
    (tmp_path / "bad.nii.gz").write_bytes(b"\x1f\x8b garbage")
    _assert_data_error(tmp_path / "bad.nii.gz", "NIfTI")


def test_unsupported_transfer_syntax_names_the_package(tmp_path: Path) -> None:
    htj2k = "1.2.840.10008.1.2.4.201"  # no plugin installed here: pydicom lists what to install
    _assert_data_error(write_dicom(tmp_path / "ht.dcm", np.zeros((2, 2)), transfer_syntax=htj2k), "openjpeg")
    mpeg2 = "1.2.840.10008.1.2.4.100"  # no decoder in pydicom at all
    _assert_data_error(
        write_dicom(tmp_path / "mp.dcm", np.zeros((2, 2)), transfer_syntax=mpeg2), "unsupported"
    )


def test_detect_format_and_source_ids(tmp_path: Path) -> None:
    write_dicom(tmp_path / "IM0001", np.zeros((2, 2)))
    assert detect_format(tmp_path / "IM0001") == "dicom"  # no extension: the DICM marker decides
    assert detect_format(tmp_path / "x.nii.gz") == "nifti" and detect_format(tmp_path / "y.TIF") == "tiff"
    assert detect_format(tmp_path / "z.txt") is None
    assert split_source(f"{tmp_path}/v.nii.gz#12") == (tmp_path / "v.nii.gz", 12)
    assert split_source(tmp_path / "a.png") == (tmp_path / "a.png", None)
    np.testing.assert_allclose(to_hu(load_slice(tmp_path / "IM0001", window=WIDE)), -1024, atol=0.01)
