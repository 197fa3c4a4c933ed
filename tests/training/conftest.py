"""A tiny, easy 2-class dataset (bright disc vs none) for fast training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covidct.data.manifest import Sample


@pytest.fixture(scope="session")
def disc_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<root>/<class>/<patient>/<k>.png``: 2 classes x 4 patients x 3 slices, 32 px."""
    root = tmp_path_factory.mktemp("discs")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:32, :32]
    for ci, cls in enumerate(("COVID-19", "Healthy")):
        for p in range(4):
            folder = root / cls / f"{cls[:3].lower()}{p}"
            folder.mkdir(parents=True)
            for k in range(3):
                img = rng.normal(60, 12, (32, 32))
                if ci == 0:
                    cy, cx = rng.integers(10, 22, 2)
                    img[(yy - cy) ** 2 + (xx - cx) ** 2 < 20] += 140
                Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"{k}.png")
    return root


@pytest.fixture(scope="session")
def disc_samples(disc_data: Path) -> list[Sample]:
    return [
        Sample(path=str(p), label=p.parent.parent.name, patient_id=p.parent.name)
        for p in sorted(disc_data.glob("*/*/*.png"))
    ]
