"""Intermediate activation maps: timm feature_info stages, hooks removed, grids + overview written."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from covidct.data.preprocess import Preprocess
from covidct.errors import ConfigError
from covidct.explain.activations import compute_activations
from covidct.models.factory import create_model


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("resnet10t", 3, pretrained=False)


def hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_stages_top_channels_and_files(model, tmp_path) -> None:
    image = np.random.default_rng(0).random((48, 60)).astype(np.float32)
    model.train()
    maps = compute_activations(model, image, Preprocess(image_size=64), top=4, source="x.png")
    assert model.training and hooks(model) == 0
    assert [s.name for s in maps.stages] == [d["module"] for d in model.feature_info]
    for stage in maps.stages:
        assert stage.maps.shape[0] == 4 and len(stage.channels) == 4
        means = stage.maps.mean(axis=(1, 2))
        assert np.all(np.diff(means) <= 1e-6)  # most active first
        assert stage.mean_map.shape == stage.maps.shape[1:]
    files = maps.save(tmp_path / "act")
    assert len(files) == len(maps.stages) + 1
    assert files[-1].name == "overview.png"
    assert all(f.stat().st_size > 1000 for f in files)


def test_hooks_removed_on_error(model) -> None:
    with pytest.raises(ConfigError, match="nope"):
        compute_activations(
            model, np.zeros((32, 32), np.float32), Preprocess(image_size=32), stages=["layer1", "nope"]
        )
    assert hooks(model) == 0
    with pytest.raises(ConfigError, match="top"):
        compute_activations(model, np.zeros((32, 32), np.float32), Preprocess(image_size=32), top=0)
