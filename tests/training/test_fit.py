"""fit(): checkpoints, log, config/env records, resume, determinism, frozen backbone, balancing options."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from covidct.data.manifest import Sample
from covidct.models.checkpoint import load_checkpoint
from covidct.models.factory import create_model
from covidct.models.registry import get_spec
from covidct.training.config import TrainConfig
from covidct.training.fit import LOG_COLUMNS, fit

CLASSES = ("COVID-19", "Healthy")
TINY = dict(batch_size=4, image_size=32, pretrained=False, lr=1e-3, device="cpu")


def _split(samples: list[Sample]) -> tuple[list[Sample], list[Sample]]:
    val_patients = {"cov3", "hea3"}
    return (
        [s for s in samples if s.patient_id not in val_patients],
        [s for s in samples if s.patient_id in val_patients],
    )


def test_fit_writes_a_self_describing_best_checkpoint(disc_samples: list[Sample], tmp_path: Path) -> None:
    train, val = _split(disc_samples)
    result = fit(train, val, CLASSES, "resnet10t", TrainConfig(epochs=2, **TINY), tmp_path / "run")
    assert result.best_path == tmp_path / "run" / "best.pt"
    loaded = load_checkpoint(result.best_path)
    meta = loaded.meta
    assert (
        meta.classes == CLASSES
        and meta.image_size == 32
        and meta.cam_layer == get_spec("resnet10t").cam_layer
    )
    assert len(meta.mean) == 3 and meta.config["epochs"] == 2 and meta.window["name"] == "lung"
    log = pd.read_csv(result.log_path)
    assert list(log.columns) == list(LOG_COLUMNS) and list(log["epoch"]) == [1, 2]
    assert log["best"].sum() >= 1 and result.best_epoch in (1, 2)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["image_size"] == 32
    env = json.loads((tmp_path / "run" / "env.json").read_text())
    assert env["seed"] == 0 and len(env["data_hash"]) == 64 and env["packages"]["torch"]
    assert (tmp_path / "run" / "last.pt").is_file()
    # the returned model holds the best weights
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, result.model.state_dict()[key])


def test_same_seed_same_weights_and_resume_matches(disc_samples: list[Sample], tmp_path: Path) -> None:
    train, val = _split(disc_samples)
    cfg = TrainConfig(epochs=2, **TINY)
    a = fit(train, val, CLASSES, "resnet10t", cfg, tmp_path / "a")
    b = fit(train, val, CLASSES, "resnet10t", cfg, tmp_path / "b")
    log_a, log_b = pd.read_csv(a.log_path), pd.read_csv(b.log_path)
    pd.testing.assert_frame_equal(log_a.drop(columns="seconds"), log_b.drop(columns="seconds"))
    # interrupted after epoch 1, then resumed to epoch 2: same path as the uninterrupted run
    fit(train, val, CLASSES, "resnet10t", TrainConfig(epochs=1, **TINY), tmp_path / "c")
    c = fit(train, val, CLASSES, "resnet10t", cfg, tmp_path / "c", resume=True)
    log_c = pd.read_csv(c.log_path)
    assert list(log_c["epoch"]) == [1, 2]
    pd.testing.assert_frame_equal(log_a.drop(columns="seconds"), log_c.drop(columns="seconds"))
    last = torch.load(tmp_path / "c" / "last.pt", weights_only=True)
    assert last["extra"]["epoch"] == 2 and "optimizer" in last["extra"] and "scheduler" in last["extra"]


def test_freeze_backbone_trains_only_the_head(disc_samples: list[Sample], tmp_path: Path) -> None:
    train, val = _split(disc_samples)
    result = fit(
        train,
        val,
        CLASSES,
        "resnet10t",
        TrainConfig(epochs=1, freeze_backbone=True, augment=False, **TINY),
        tmp_path / "frozen",
    )
    torch.manual_seed(0)
    initial = create_model("resnet10t", 2, pretrained=False).state_dict()
    trained = result.model.state_dict()
    assert torch.equal(initial["conv1.0.weight"], trained["conv1.0.weight"])
    assert not torch.equal(initial["fc.weight"], trained["fc.weight"])


@pytest.mark.parametrize(
    "options",
    [
        {"class_weighting": "balanced"},
        {"sampler": "balanced", "workers": 1},
        {"patience": 1, "epochs": 3, "cache": False},
    ],
)
def test_training_options_run(disc_samples: list[Sample], tmp_path: Path, options: dict) -> None:
    train, val = _split(disc_samples)
    train = train[:-3]  # unbalanced classes
    settings = {**TINY, "epochs": 1, **options}
    result = fit(train, val, CLASSES, "resnet10t", TrainConfig(**settings), tmp_path / "r")
    assert result.best_path.is_file() and 1 <= result.epochs_run <= settings["epochs"]
