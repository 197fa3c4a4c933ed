"""Fixtures for explain tests: an untrained tiny checkpoint and a small DICOM series written with pydicom."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

CLASSES = ("COVID-19", "Healthy", "Pneumonia")


def save_tiny_checkpoint(path: Path, model=None, *, image_size: int = 64) -> Path:  # type: ignore[no-untyped-def]
    import torch

    from covidct.models.checkpoint import CheckpointMeta, save_checkpoint
    from covidct.models.factory import create_model
    from covidct.models.normalization import model_normalization

    if model is None:
        torch.manual_seed(0)
        model = create_model("resnet10t", len(CLASSES), pretrained=False)
    mean, std = model_normalization(model)
    meta = CheckpointMeta(
        model_name="resnet10t",
        timm_name="resnet10t",
        classes=CLASSES,
        image_size=image_size,
        mean=mean,
        std=std,
    )
    return save_checkpoint(path, model, meta)


@pytest.fixture(scope="session")
def checkpoint_saver():  # type: ignore[no-untyped-def]
    """``save_tiny_checkpoint(path, model=None, *, image_size=64)`` for tests that train their own model."""
    return save_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def write_dicom_series(folder: Path, n: int = 3, size: int = 40) -> list[Path]:
    """CT slices in HU (lung-like background, a dense blob) with positions given in reverse file order."""
    from ct_dicom import write_ct

    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[:size, :size]
    paths = []
    for k in range(n):
        hu = np.full((size, size), -850.0)
        hu[(y - size // 3) ** 2 + (x - size // 2 - k) ** 2 < (size // 6) ** 2] = 40.0
        stored = (hu + 1024).astype(np.uint16)
        options = {"z": float(-k), "instance": k + 1, "series_uid": "1.2.3.4", "patient_id": "P9"}
        paths.append(write_ct(folder / f"IM{k:04d}.dcm", stored, **options))
    return paths


@pytest.fixture
def dicom_series(tmp_path: Path) -> Path:
    folder = tmp_path / "series"
    write_dicom_series(folder)
    return folder
