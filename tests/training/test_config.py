"""TrainConfig / CVConfig validation and resolution."""

from __future__ import annotations

import pytest

from covidct.config import config_to_dict, load_config
from covidct.errors import ConfigError
from covidct.models.registry import get_spec
from covidct.training.config import AUGMENT_PRESETS, AugmentSettings, CVConfig, TrainConfig


def test_defaults_follow_the_paper() -> None:
    cfg = TrainConfig()
    assert (cfg.lr, cfg.label_smoothing, cfg.augment, cfg.pretrained) == (1e-4, 0.1, "paper", True)


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
        {"augment": "heavy"},
        {"rotation": 400.0},
        {"augment": "none", "rotation": 10.0},
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


def test_paper_augmentation_is_the_default_and_resolved_into_the_config() -> None:
    """issue 10: the authors' ImageDataGenerator settings, not +-15 deg with a vertical flip."""
    resolved = TrainConfig().resolve(get_spec("resnet10t"))
    assert resolved.augmentation == AugmentSettings(
        rotation=360.0, horizontal_flip=True, vertical_flip=False, zoom=0.15, shift=0.15, shear=0.15
    )
    light = TrainConfig(augment="light", rotation=30).resolve(get_spec("resnet10t"))
    assert light.augmentation is not None and light.augmentation.rotation == 30.0
    assert light.augmentation.vertical_flip and light.augmentation.shear == pytest.approx(8.5308, abs=1e-3)
    assert TrainConfig(augment="none").resolve(get_spec("resnet10t")).augmentation is None
    recorded = config_to_dict(resolved)
    assert recorded["augment"] == "paper" and recorded["augmentation"]["rotation"] == 360.0
    replay = load_config(TrainConfig, None, **{**recorded, "augment": "light"}).resolve(get_spec("resnet10t"))
    assert replay.augmentation == AUGMENT_PRESETS["light"]  # the recorded settings are derived, not inputs


def test_old_boolean_augment_replays_as_it_ran() -> None:
    assert TrainConfig(augment=True).augment == "light" and TrainConfig(augment=False).augment == "none"


def test_build_augment_follows_the_settings() -> None:
    from torchvision.transforms import v2

    from covidct.training.augment import build_augment

    paper = build_augment(AUGMENT_PRESETS["paper"]).transforms
    assert [type(t) for t in paper] == [v2.RandomHorizontalFlip, v2.RandomAffine]  # no vertical flip
    affine = paper[-1]
    assert list(affine.degrees) == [-360.0, 360.0] and list(affine.shear) == [-0.15, 0.15]
    assert tuple(affine.scale) == (0.85, 1.15) and tuple(affine.translate) == (0.15, 0.15)
    light = build_augment(AUGMENT_PRESETS["light"]).transforms
    assert v2.RandomVerticalFlip in [type(t) for t in light] and list(light[-1].degrees) == [-15.0, 15.0]
