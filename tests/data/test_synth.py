"""Synthetic phantoms: deterministic, scan-able, and lesions that look like their class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covidct.data.manifest import scan_dataset
from covidct.data.synth import synthesize_dataset
from covidct.errors import ConfigError


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("synth")
    return synthesize_dataset(out, patients_per_class=4, slices_per_patient=4, size=96, seed=3)


def _arrays(root: Path, label: str) -> list[np.ndarray]:
    return [np.asarray(Image.open(p)) for p in sorted((root / label).rglob("*.png"))]


def test_layout_and_scan(synth) -> None:
    assert synth.n_images == 48 and synth.classes == ("COVID-19", "Healthy", "Pneumonia")
    scan = scan_dataset(synth.images_dir)
    assert scan.layout == "class_patient" and scan.has_patients and not scan.skipped
    assert scan.class_counts() == {c: (16, 4) for c in ("COVID-19", "Healthy", "Pneumonia")}
    assert scan.size_range() == ((96, 96), (96, 96))
    first = Path(scan.samples[0].path)
    assert synth.mask_for(first).is_file() and synth.mask_for(first).parts[-3:] == (
        "COVID-19",
        "p001",
        "1.png",
    )


def test_deterministic_by_seed(tmp_path: Path, synth) -> None:
    again = synthesize_dataset(tmp_path / "a", patients_per_class=4, slices_per_patient=4, size=96, seed=3)
    other = synthesize_dataset(tmp_path / "b", patients_per_class=1, slices_per_patient=4, size=96, seed=4)
    same = again.images_dir / "Pneumonia" / "p002" / "3.png"
    assert same.read_bytes() == (synth.images_dir / "Pneumonia" / "p002" / "3.png").read_bytes()
    assert (again.masks_dir / "COVID-19" / "p004" / "4.png").read_bytes() == (
        synth.masks_dir / "COVID-19" / "p004" / "4.png"
    ).read_bytes()
    assert (other.images_dir / "COVID-19" / "p001" / "1.png").read_bytes() != (
        synth.images_dir / "COVID-19" / "p001" / "1.png"
    ).read_bytes()


def test_ct_like_intensities(synth) -> None:
    image = _arrays(synth.images_dir, "Healthy")[0].astype(float) / 255
    hu = image * 1500 - 1350  # the images are in the lung window
    assert -1100 < np.median(hu[:5, :5]) < -900  # air outside the body
    centre_row = hu[48]
    assert (centre_row[15:40] < -700).mean() > 0.5 and (centre_row[56:81] < -700).mean() > 0.5  # two lungs
    assert hu[48, 46:50].mean() > -200  # mediastinum between them


def test_masks_match_classes(synth) -> None:
    masks = {c: _arrays(synth.masks_dir, c) for c in synth.classes}
    images = {c: _arrays(synth.images_dir, c) for c in synth.classes}
    assert all(set(np.unique(m)) <= {0, 255} for ms in masks.values() for m in ms)
    assert all(m.max() == 0 for m in masks["Healthy"])
    assert all(m.max() == 255 for m in masks["COVID-19"] + masks["Pneumonia"])
    # COVID-19: bilateral in most slices; pneumonia: mostly one lung
    bilateral = [(m[:, :48] > 0).any() and (m[:, 48:] > 0).any() for m in masks["COVID-19"]]
    one_sided = [not ((m[:, :48] > 0).any() and (m[:, 48:] > 0).any()) for m in masks["Pneumonia"]]
    assert np.mean(bilateral) > 0.6 and np.mean(one_sided) > 0.5
    # consolidation is larger and denser than ground glass; both are brighter than normal lung
    area = {c: np.mean([(m > 0).mean() for m in masks[c]]) for c in ("COVID-19", "Pneumonia")}
    assert area["Pneumonia"] > area["COVID-19"]
    inside = {
        c: np.mean([im[m > 0].mean() for im, m in zip(images[c], masks[c], strict=True)])
        for c in ("COVID-19", "Pneumonia")
    }
    lung = np.mean([np.median(im[30:66, 15:35]) for im in images["Healthy"]])
    assert lung < inside["COVID-19"] < inside["Pneumonia"]


def test_ggo_is_peripheral(synth) -> None:
    # lesion pixels sit nearer the lung border than lung pixels in general (distance to the nearest non-lung)
    from scipy.ndimage import binary_fill_holes, binary_opening, distance_transform_edt, label

    near, overall = [], []
    for im, m in zip(
        _arrays(synth.images_dir, "COVID-19"), _arrays(synth.masks_dir, "COVID-19"), strict=True
    ):
        hu = im.astype(float) / 255 * 1500 - 1350
        parts, _ = label(binary_opening(hu < -300, iterations=1))
        border = np.unique(np.concatenate([parts[0], parts[-1], parts[:, 0], parts[:, -1]]))
        outside = np.isin(parts, border)  # air around the body, above and below the table
        lung = binary_fill_holes((parts > 0) & ~outside)  # vessels and lesions are holes in the lungs
        depth = distance_transform_edt(lung)
        near.append(depth[(m > 0) & lung].mean())
        overall.append(depth[lung].mean())
    assert np.mean(near) < 0.8 * np.mean(overall), (np.mean(near), np.mean(overall))


def test_bad_options(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        synthesize_dataset(tmp_path, classes=("COVID-19", "Tuberculosis"))
    with pytest.raises(ConfigError):
        synthesize_dataset(tmp_path, size=8)
    with pytest.raises(ConfigError):
        synthesize_dataset(tmp_path, patients_per_class=0)
