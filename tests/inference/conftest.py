"""Fixtures for inference tests: a tiny random-weight checkpoint, its ONNX export, small PNG 'patients'."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

CLASSES = ("COVID-19", "Healthy", "Pneumonia")
TINY_ARCH = "resnet10t"
TINY_SIZE = 32


def make_checkpoint(path: Path, name: str = TINY_ARCH, size: int = TINY_SIZE, *, seed: int = 0) -> Path:
    """A random-weight checkpoint; the head is re-drawn larger so probabilities differ between images."""
    import torch

    from covidct.models.checkpoint import CheckpointMeta, save_checkpoint
    from covidct.models.factory import create_model
    from covidct.models.normalization import model_normalization
    from covidct.models.registry import get_spec

    torch.manual_seed(seed)
    model = create_model(name, len(CLASSES), pretrained=False).eval()
    head = model.get_classifier()
    torch.nn.init.normal_(head.weight, std=0.5)
    spec = get_spec(name)
    mean, std = model_normalization(model)
    meta = CheckpointMeta(
        model_name=spec.name,
        timm_name=spec.timm_name,
        classes=CLASSES,
        image_size=size,
        mean=mean,
        std=std,
        cam_layer=spec.cam_layer,
    )
    return save_checkpoint(path, model, meta)


@pytest.fixture(scope="session")
def checkpoint_factory():  # type: ignore[no-untyped-def]
    """``make_checkpoint(path, name, size)`` for tests that need other backbones."""
    return make_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="session")
def tiny_onnx(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from covidct.inference.export import export_onnx

    return export_onnx(tiny_checkpoint, tmp_path_factory.mktemp("onnx") / "tiny.onnx").path


def write_patients(root: Path, counts: dict[str, int], size: int = 40, seed: int = 0) -> Path:
    """``root/<patient>/<k>.png`` 8-bit grayscale slices."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for patient, n in counts.items():
        folder = root / patient
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(n):
            Image.fromarray(rng.integers(0, 256, (size, size + 3), dtype=np.uint8)).save(folder / f"{k}.png")
    return root


@pytest.fixture()
def png_patients(tmp_path: Path) -> Path:
    return write_patients(tmp_path / "images", {"P1": 3, "P2": 2})


@pytest.fixture()
def arrays() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.random((36, 40), dtype=np.float32) for _ in range(5)]
