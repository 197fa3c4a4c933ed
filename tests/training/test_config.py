"""TrainConfig / CVConfig validation and resolution."""

from __future__ import annotations

import pytest

from covidct.config import config_to_dict, load_config
from covidct.errors import ConfigError
from covidct.models.registry import get_spec
from covidct.training.config import CVConfig, TrainConfig


def test_defaults_follow_the_paper() -> None:
    cfg = TrainConfig()
    assert (cfg.lr, cfg.label_smoothing, cfg.augment, cfg.pretrained) == (1e-4, 0.1, True, True)


@pytest.mark.parametrize(
    "bad",
    [
        {"epochs": 0},
        {"batch_size": 0},
        {"lr": 0.0},
        {"label_smoothing": 1.0},
        {"dropout": 1.0},
        {"class_weighting": "inverse"},
        {"sampler": "weird"},
        {"device": "tpu"},
        {"patience": 0},
        {"workers": -1},
        {"class_weighting": "balanced", "sampler": "balanced"},
        {"pretrained": False, "weights": "w.pth"},
        {"image_size": 4},
        {"val_fraction": 1.0},
    ],
)
def test_invalid_values_raise_config_error(bad: dict) -> None:
    with pytest.raises(ConfigError):
        TrainConfig(**bad)


def test_resolve_fills_every_none_on_cpu() -> None:
    spec = get_spec("resnet10t")
    cfg = TrainConfig(device="cpu").resolve(spec)
    assert cfg.image_size == spec.input_size
    assert (cfg.device, cfg.amp, cfg.channels_last) == ("cpu", False, False)
    assert TrainConfig(image_size=64, amp=True, device="cpu").resolve(spec).amp is False  # AMP is CUDA-only


def test_cv_config_round_trips_and_flags_override(tmp_path) -> None:
    cfg = CVConfig(data="d", model="resnet10t", out="o", folds=3, train=TrainConfig(epochs=2))
    path = tmp_path / "c.json"
    import json

    path.write_text(json.dumps(config_to_dict(cfg)))
    again = load_config(CVConfig, path, folds=None, train={"epochs": 4, "seed": None})
    assert again.folds == 3 and again.train.epochs == 4 and again.train.seed == 0
    with pytest.raises(ConfigError):
        CVConfig(data="d", model="m", out="o", folds=1)
    with pytest.raises(ConfigError, match="unknown option"):
        load_config(CVConfig, None, data="d", model="m", out="o", train={"epochz": 3})
