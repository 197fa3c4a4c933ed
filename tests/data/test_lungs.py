"""Lung masks: phantoms (IoU against the true lungs), hand-made slices, the real DICOM series (anatomy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ct_dicom import write_ct
from PIL import Image

from covidct.data.lungs import (
    hu_from_window,
    iou,
    lung_fraction,
    lung_mask_for,
    lung_mask_hu,
    lung_mask_intensity,
    mask_relpath,
    write_lung_masks,
)


@pytest.fixture(scope="module")
def phantoms96(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from covidct.data.synth import synthesize_dataset

    out = tmp_path_factory.mktemp("lung_phantoms")
    return synthesize_dataset(out, patients_per_class=4, slices_per_patient=4, size=96, seed=0)


def _ious(dataset, cls: str, *, hu: bool) -> list[float]:  # type: ignore[no-untyped-def]
    scores = []
    for path in sorted((dataset.images_dir / cls).rglob("*.png")):
        image = np.asarray(Image.open(path), dtype=np.float32) / 255
        truth = np.asarray(Image.open(dataset.lungs_for(path))) > 127
        mask = lung_mask_hu(hu_from_window(image, "lung")) if hu else lung_mask_intensity(image)
        scores.append(iou(mask, truth))
    return scores


@pytest.mark.parametrize("hu", [True, False], ids=["hu", "intensity"])
@pytest.mark.parametrize("cls", ["Healthy", "COVID-19"])
def test_phantom_lungs_iou(phantoms96, cls: str, hu: bool) -> None:  # type: ignore[no-untyped-def]
    """Measured (96 px, 16 slices per class): HU 0.97 / 0.96, intensity 0.97 / 0.93 (Healthy / COVID-19)."""
    scores = _ious(phantoms96, cls, hu=hu)
    assert len(scores) == 16
    assert np.mean(scores) >= 0.9, scores
    assert min(scores) >= 0.8, scores


def test_phantom_consolidation_is_the_known_limitation(phantoms96) -> None:  # type: ignore[no-untyped-def]
    """Dense lobar consolidation at the pleura is as dense as soft tissue: a threshold method leaves it out
    (measured mean IoU 0.64 HU, 0.61 intensity). Pinned so a change is noticed; ``--lungs`` takes better
    masks."""
    scores = _ious(phantoms96, "Pneumonia", hu=True)
    assert 0.4 <= np.mean(scores) < 0.9


def test_synth_writes_true_lung_masks(phantoms96) -> None:  # type: ignore[no-untyped-def]
    image = next((phantoms96.images_dir / "Healthy").rglob("*.png"))
    lungs = np.asarray(Image.open(phantoms96.lungs_for(image))) > 127
    assert phantoms96.lungs_dir == phantoms96.images_dir.parent / "lungs"
    assert 0.1 < lungs.mean() < 0.5
    lesion = np.asarray(
        Image.open(phantoms96.mask_for(next((phantoms96.images_dir / "COVID-19").rglob("*.png"))))
    )
    lung_of_lesion = np.asarray(
        Image.open(phantoms96.lungs_for(next((phantoms96.images_dir / "COVID-19").rglob("*.png"))))
    )
    assert ((lesion > 127) & ~(lung_of_lesion > 127)).sum() == 0  # lesions lie inside the lungs


def _hand_slice(size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """HU: air, a body disc with two lung ellipses (vessels inside), a trachea on the midline."""
    y, x = np.mgrid[:size, :size]
    hu = np.full((size, size), -1000.0)
    hu[(x - 64) ** 2 / 56**2 + (y - 64) ** 2 / 44**2 <= 1] = 40.0
    lungs = np.zeros((size, size), dtype=bool)
    for cx in (38, 90):
        lungs |= (x - cx) ** 2 / 18**2 + (y - 66) ** 2 / 28**2 <= 1
    hu[lungs] = -850.0
    hu[(x - 38) ** 2 + (y - 60) ** 2 <= 4] = 60.0  # a vessel inside the left lung
    hu[(x - 64) ** 2 + (y - 40) ** 2 <= 16] = -1000.0  # the trachea
    return hu, lungs


def test_hu_method_drops_outside_air_and_trachea_fills_vessels() -> None:
    hu, truth = _hand_slice()
    mask = lung_mask_hu(hu)
    assert iou(mask, truth) > 0.95
    assert not mask[40, 64]  # trachea
    assert mask[60, 38]  # vessel
    assert not mask[0, 0] and not mask[5, 64]  # air outside the body


def test_intensity_method_on_an_8bit_screenshot_with_text() -> None:
    hu, truth = _hand_slice()
    image = np.clip((hu + 1350) / 1500, 0, 1)  # lung window, then 8-bit like a viewer screenshot
    image[2:8, 2:40] = 1.0  # burned-in text at the corner
    image = np.round(image * 255) / 255
    mask = lung_mask_intensity(image)
    assert iou(mask, truth) > 0.9
    assert not mask[2:8, 2:40].any()


def test_blank_and_bad_inputs() -> None:
    assert not lung_mask_intensity(np.zeros((32, 32))).any()
    assert not lung_mask_hu(np.full((32, 32), 40.0)).any()
    assert lung_fraction(np.ones((4, 4), bool)) == 1.0
    assert iou(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0
    with pytest.raises(ValueError):
        lung_mask_hu(np.zeros((2, 3, 4)))
    assert hu_from_window(np.zeros((2, 2)), "mediastinal") is None  # the window clips the lung threshold


def test_mask_for_picks_the_method_by_source(tmp_path: Path) -> None:
    hu, _ = _hand_slice()
    image = np.clip((hu + 1350) / 1500, 0, 1).astype(np.float32)
    assert lung_mask_for(image, str(tmp_path / "a.png"))[1] == "intensity"
    assert lung_mask_for(image, str(tmp_path / "vol.nii.gz#3"))[1] == "hu"
    assert lung_mask_for(image, str(tmp_path / "vol.nii.gz#3"), "mediastinal")[1] == "intensity"
    assert mask_relpath(str(tmp_path / "d" / "x.dcm"), [tmp_path]) == Path("d/x.png")
    assert mask_relpath(str(tmp_path / "vol.nii.gz#3"), [tmp_path / "vol.nii.gz"]) == Path("vol/3.png")


def test_write_lung_masks_for_a_dicom_series(dicom_series_hu: Path, tmp_path: Path) -> None:
    result = write_lung_masks([dicom_series_hu], tmp_path / "lungs")
    assert [r.method for r in result.rows] == ["hu"] * 3 and [r.order for r in result.rows] == [0, 1, 2]
    first = np.asarray(Image.open(result.out / result.rows[0].mask)) > 127
    assert first.shape == (128, 128) and first.any()
    assert result.table.read_text().splitlines()[0] == "source,group,order,mask,method,lung_fraction"


@pytest.fixture
def dicom_series_hu(tmp_path: Path) -> Path:
    """Three CT slices of the hand-made chest, in HU."""
    folder = tmp_path / "series"
    folder.mkdir()
    hu, _ = _hand_slice()
    for k in range(3):
        write_ct(
            folder / f"IM{k:04d}.dcm",
            hu + 1024,
            z=float(-k),
            instance=k + 1,
            series_uid="1.2.3.5",
            patient_id="P8",
        )
    return folder


@pytest.mark.real_data
@pytest.mark.slow  # ~235 JPEG-lossless 512 px slices: ~1 min on 2 cores
@pytest.mark.parametrize("series", ["COVID-19/P001", "CAP/cap001", "Normal/normal001"])
def test_real_series_lung_fraction_follows_the_anatomy(shared_data: Path, series: str) -> None:
    """Ordered by slice position (ImagePositionPatient): near zero at one end (apex or below the
    diaphragm), small at both ends, largest mid-chest. Measured: peaks 0.30 / 0.38 / 0.25 (COVID-19 / CAP /
    Normal), end slices 0.00-0.06."""
    from covidct.data.lungs import HU_WINDOW
    from covidct.data.readers import load_series

    loaded = load_series(shared_data / "covid-ct-md" / series, window=HU_WINDOW)
    assert loaded.positions is not None
    order = np.argsort(loaded.positions)
    fractions = np.array(
        [lung_fraction(lung_mask_hu(hu_from_window(loaded.images[i], HU_WINDOW))) for i in order]
    )
    n = len(fractions)
    peak = fractions.max()
    assert 0.15 < peak < 0.6, fractions
    assert n // 5 <= int(np.argmax(fractions)) <= n - n // 5, fractions  # the peak is mid-chest
    assert fractions[0] < 0.3 * peak and fractions[-1] < 0.3 * peak, fractions
    assert min(fractions[0], fractions[-1]) < 0.02, fractions
    mid = fractions[n // 3 : 2 * n // 3]
    assert mid.min() > 0.5 * peak, fractions  # no slice mid-chest loses its lungs
