"""SliceDataset: shapes, normalisation, decode-once cache, unreadable files skipped."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from covidct.data.dataset import SliceCache, SliceDataset, collate_skip_none
from covidct.data.preprocess import Preprocess
from covidct.errors import CovidCTWarning, DataError

CLASSES = ("COVID-19", "Healthy")


@dataclass(frozen=True)
class S:
    path: str
    label: str
    patient_id: str | None = None


@pytest.fixture()
def pngs(tmp_path: Path) -> list[S]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(6):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (40, 50), dtype=np.uint8)).save(path)
        out.append(S(str(path), CLASSES[i % 2]))
    return out


class CountingLoader:
    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def __call__(self, path: str) -> np.ndarray:
        self.calls[path] = self.calls.get(path, 0) + 1
        if path.endswith("broken.png"):
            raise DataError(path, "not an image")
        return np.asarray(Image.open(path), dtype=np.float32) / 255.0


def test_items_match_preprocess(pngs: list[S]) -> None:
    pre = Preprocess(image_size=32)
    loader = CountingLoader()
    ds = SliceDataset(pngs, CLASSES, pre, loader=loader)
    x, y = ds[1]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == 1
    expected = pre(loader(pngs[1].path))
    np.testing.assert_allclose(x.numpy(), expected, atol=1e-5)


def test_cache_decodes_each_file_once(pngs: list[S]) -> None:
    loader = CountingLoader()
    cache = SliceCache([s.path for s in pngs], 32, loader=loader, workers=2)
    ds = SliceDataset(pngs, CLASSES, Preprocess(image_size=32), cache=cache, loader=loader)
    for _epoch in range(3):
        batches = list(DataLoader(ds, batch_size=4, shuffle=True, collate_fn=collate_skip_none))
        assert sum(len(b[1]) for b in batches) == len(pngs)
    assert loader.calls == {s.path: 1 for s in pngs}
    uncached = SliceDataset(pngs, CLASSES, Preprocess(image_size=32), loader=loader)
    uncached[0], uncached[0]
    assert loader.calls[pngs[0].path] == 3  # without the cache every access decodes
    # cached values equal the uncached ones up to float16 storage
    np.testing.assert_allclose(ds[0][0].numpy(), uncached[0][0].numpy(), atol=0.02)


def test_unreadable_file_is_reported_and_skipped(pngs: list[S], tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"nope")
    samples = [*pngs, S(str(broken), CLASSES[0])]
    loader = CountingLoader()
    with pytest.warns(CovidCTWarning, match="broken.png"):
        cache = SliceCache([s.path for s in samples], 32, loader=loader)
    ds = SliceDataset(samples, CLASSES, Preprocess(image_size=32), cache=cache)
    assert len(ds) == len(pngs)
    assert ds.skipped == [(str(broken), "not an image")]
    uncached = SliceDataset(samples, CLASSES, Preprocess(image_size=32), loader=loader)
    with pytest.warns(CovidCTWarning):
        batch = collate_skip_none([uncached[len(samples) - 1], uncached[0]])
    assert batch[0].shape[0] == 1  # the unreadable item is dropped from the batch


def test_augment_runs_before_normalisation(pngs: list[S]) -> None:
    seen = []

    def augment(x: torch.Tensor) -> torch.Tensor:
        seen.append((tuple(x.shape), float(x.min()), float(x.max())))
        return torch.zeros_like(x)

    pre = Preprocess(image_size=16)
    ds = SliceDataset(pngs, CLASSES, pre, augment=augment, loader=CountingLoader())
    x, _ = ds[0]
    assert seen[0][0] == (1, 16, 16) and 0.0 <= seen[0][1] and seen[0][2] <= 1.0
    np.testing.assert_allclose(x[:, 0, 0].numpy(), -np.asarray(pre.mean) / np.asarray(pre.std), rtol=1e-5)
