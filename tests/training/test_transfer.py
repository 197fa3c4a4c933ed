"""Fine-tuning details: fresh head (first loss log K), head warm-up, discriminative LR, the feature-cached
linear probe (hit on a second run, invalidated by a changed image or model)."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from covidct.data.manifest import Sample
from covidct.models.factory import create_model
from covidct.training.config import TrainConfig
from covidct.training.fit import fit

CLASSES = ("COVID-19", "Healthy")


def _split(samples: list[Sample]) -> tuple[list[Sample], list[Sample]]:
    return samples[::2], samples[1::2]


def test_fresh_head_starts_at_log_k(disc_samples: list[Sample], tmp_path: Path) -> None:
    # lr ~ 0: the epoch's mean training loss is the loss of the initial head on every batch
    cfg = TrainConfig(epochs=1, image_size=32, pretrained=False, lr=1e-12, batch_size=4, augment=False)
    train, val = _split(disc_samples)
    result = fit(train, val, CLASSES, "resnet10t", cfg, tmp_path / "run")
    assert result.history[0]["train_loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert result.weights is not None and result.weights.source == "none"


def _backbone(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    head = {id(p) for p in model.get_classifier().parameters()}
    return {k: v.clone() for k, v in model.state_dict(keep_vars=True).items() if id(v) not in head}


def test_head_warmup_keeps_backbone_and_its_bn_statistics(
    disc_samples: list[Sample], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import covidct.training.fit as fit_module

    torch.manual_seed(0)
    start = create_model("resnet10t", 2, pretrained=False)
    before = _backbone(start)
    monkeypatch.setattr(fit_module, "create_model_with_report", _fixed(start))
    cfg = TrainConfig(epochs=1, image_size=32, pretrained=False, lr=1e-2, batch_size=4, head_warmup=1)
    train, val = _split(disc_samples)
    result = fit(train, val, CLASSES, "resnet10t", cfg, tmp_path / "run")
    after = _backbone(result.model)
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and running statistics
    assert result.model.get_classifier().weight.abs().sum() > 0  # the head trained
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert saved["head_warmup"] == 1 and saved["backbone_lr_scale"] == 1.0


def _fixed(model: torch.nn.Module):
    from covidct.models.weights import WeightsReport

    def create(*args, **kwargs):
        return model, WeightsReport(source="none", location="", matched=0, total=0)

    return create


def test_backbone_lr_scale_slows_only_the_backbone(
    disc_samples: list[Sample], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import covidct.training.fit as fit_module

    torch.manual_seed(0)
    start = create_model("resnet10t", 2, pretrained=False)
    before = {k: v for k, v in _backbone(start).items() if k.endswith("weight") and "conv" in k}
    monkeypatch.setattr(fit_module, "create_model_with_report", _fixed(start))
    cfg = TrainConfig(
        epochs=1, image_size=32, pretrained=False, lr=1e-2, batch_size=4, backbone_lr_scale=1e-6
    )
    train, val = _split(disc_samples)
    result = fit(train, val, CLASSES, "resnet10t", cfg, tmp_path / "run")
    after = _backbone(result.model)
    moved = max(float((before[k] - after[k]).abs().max()) for k in before)
    assert 0 < moved < 1e-6  # Adam steps ~ lr x scale per step; unscaled it moves ~1e-2
    assert float(result.model.get_classifier().weight.abs().max()) > 1e-3


def _copy(disc_data: Path, tmp_path: Path) -> list[Sample]:
    root = tmp_path / "data"
    shutil.copytree(disc_data, root)
    return [
        Sample(path=str(p), label=p.parent.parent.name, patient_id=p.parent.name)
        for p in sorted(root.glob("*/*/*.png"))
    ]


def test_feature_cache_hits_on_second_run_and_follows_image_and_model(
    disc_data: Path, tmp_path: Path
) -> None:
    samples = _copy(disc_data, tmp_path)
    train, val = _split(samples)
    cfg = TrainConfig(
        epochs=3,
        image_size=32,
        pretrained=False,
        seed=0,
        lr=1e-2,
        batch_size=4,
        freeze_backbone=True,
        feature_cache_dir=str(tmp_path / "features"),
    )
    first = fit(train, val, CLASSES, "resnet10t", cfg, tmp_path / "a")
    assert (first.feature_stats.hits, first.feature_stats.computed) == (0, len(samples))
    second = fit(train, val, CLASSES, "resnet10t", cfg, tmp_path / "b")
    assert (second.feature_stats.hits, second.feature_stats.computed) == (len(samples), 0)
    assert [r["val_loss"] for r in second.history] == [r["val_loss"] for r in first.history]

    edited = Path(train[0].path)
    pixels = np.asarray(Image.open(edited)).copy()
    pixels[:4, :4] = 255 - pixels[:4, :4]
    Image.fromarray(pixels).save(edited)
    third = fit(train, val, CLASSES, "resnet10t", cfg, tmp_path / "c")
    assert (third.feature_stats.hits, third.feature_stats.computed) == (len(samples) - 1, 1)

    other_size = fit(train, val, CLASSES, "resnet10t", replace(cfg, image_size=40), tmp_path / "d")
    assert other_size.feature_stats.computed == len(samples)  # preprocessing is part of the identity
    other_seed = fit(train, val, CLASSES, "resnet10t", replace(cfg, seed=1), tmp_path / "e")
    assert other_seed.feature_stats.computed == len(samples)  # other random backbone weights: other features


def test_linear_probe_checkpoint_predicts_like_its_head_on_features(disc_data: Path, tmp_path: Path) -> None:
    from covidct.data.preprocess import Preprocess
    from covidct.data.readers import load_slice
    from covidct.models.checkpoint import load_checkpoint
    from covidct.training.features import FeatureStats, extract_features, head_network

    samples = _copy(disc_data, tmp_path)
    train, val = _split(samples)
    cfg = TrainConfig(
        epochs=4,
        image_size=32,
        pretrained=False,
        lr=5e-2,
        batch_size=4,
        freeze_backbone=True,
        feature_cache_dir=str(tmp_path / "features"),
    )
    result = fit(train, val, CLASSES, "resnet10t", cfg, tmp_path / "run")
    loaded = load_checkpoint(result.best_path).model.eval()
    pre = Preprocess.from_meta(result.meta)
    stats = FeatureStats()
    feats = extract_features(loaded, val, CLASSES, pre, cache_dir=tmp_path / "features", stats=stats)
    assert (stats.hits, stats.computed) == (
        len(val),
        0,
    )  # the saved backbone has the identity of the trained one
    x = torch.stack([torch.from_numpy(pre(load_slice(s.path))) for s in val])
    with torch.no_grad():
        full = loaded(x)
        head = head_network(loaded).eval()(feats.features)
    assert torch.allclose(full, head, atol=1e-4)


def test_cv_linear_probe_computes_each_image_once(disc_data: Path, tmp_path: Path) -> None:
    from covidct.evaluation.predictions import read_predictions
    from covidct.training.config import CVConfig
    from covidct.training.cv import cross_validate

    cache = tmp_path / "features"
    cfg = CVConfig(
        data=str(disc_data),
        model="resnet10t",
        out=str(tmp_path / "cv"),
        folds=2,
        repeats=1,
        train=TrainConfig(
            epochs=2,
            image_size=32,
            pretrained=False,
            lr=1e-2,
            batch_size=4,
            freeze_backbone=True,
            feature_cache_dir=str(cache),
        ),
    )
    result = cross_validate(cfg)
    table = read_predictions(result.predictions)
    assert len(table) == 24 and table["fold"].nunique() == 2
    assert len(list(cache.rglob("*.npy"))) == 24  # one feature file per image, shared by folds and splits
    envs = [json.loads(p.read_text()) for p in sorted((tmp_path / "cv").rglob("r0_f*/env.json"))]
    # fold 0 computes its 12 training + validation slices (its 12 test slices right after); fold 1 reads all
    assert [e["feature_cache"]["computed"] for e in envs] == [12, 0]
