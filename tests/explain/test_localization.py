"""Measured localisation: a small CNN trained on the phantoms points at the lesions (issue 4).

Setup (mirrored by ``benchmarks/localization.py``): phantoms of 10 patients per class at 96 px (seed 0); a
resnet10t (pretrained=False) trained for 12 epochs (AdamW, one-cycle lr 3e-3, horizontal flips) on p001-p007;
explained through the public API on the 12 held-out slices per class of p008-p010, with the true class as the
CAM target. The CAM layer is layer3 (a 6 x 6 map at 96 px; layer4's 3 x 3 map scores 0.00) and the method
LayerCAM (element-wise positive gradients: slightly sharper than Grad-CAM on these maps).

Two pointing games are checked. ``explain()`` scores the map's maximum with no tolerance; an upsampled 6 x 6
map always peaks at the centre of one of its 16-pixel cells, so a map that picks the right cell still misses a
small subpleural patch by 1-6 px (measured 0.50-0.58 for COVID-19, 0.67-0.75 for Pneumonia with 2 and 1 torch
threads; random maps 0.02). The >= 0.8 bar of issue 4 is asserted on the pointing game with a tolerance of
``TOLERANCE`` = 4 px (the mask dilated by 4 px, ~4 % of the slice width; Zhang et al. 2016 use 15 px at
~224 px), recomputed with ``covidct.explain.scores.localization_scores`` from the maps ``explain()`` wrote,
against random maps scored the same way. Measured on the shared 2-core CPU (~80 s): COVID-19 0.92, Pneumonia
1.00 with 2 torch threads and with 1 (random maps 0.06 with the same tolerance); energy inside the mask 0.11
vs 0.025 (COVID-19) and 0.25 vs 0.054 (Pneumonia).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from covidct.explain.api import explain

pytestmark = pytest.mark.slow

CLASSES = ("COVID-19", "Healthy", "Pneumonia")
PATIENTS = tuple(f"p{k:03d}" for k in range(1, 11))
TRAIN, HELD_OUT = PATIENTS[:7], PATIENTS[7:]
SIZE, EPOCHS, LR = 96, 12, 3e-3
LAYER, METHOD, TOLERANCE = "layer3", "layercam", 4


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from covidct.data.synth import synthesize_dataset

    out = tmp_path_factory.mktemp("loc_phantoms")
    return synthesize_dataset(out, patients_per_class=len(PATIENTS), slices_per_patient=4, size=SIZE, seed=0)


@pytest.fixture(scope="module")
def trained_checkpoint(dataset, checkpoint_saver, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from covidct.data.preprocess import Preprocess
    from covidct.data.readers import load_slice
    from covidct.models.factory import create_model

    images, labels = [], []
    for label, cls in enumerate(CLASSES):
        for patient in TRAIN:
            for path in sorted((dataset.images_dir / cls / patient).glob("*.png")):
                images.append(load_slice(path))  # the same reader explain() uses
                labels.append(label)
    torch.manual_seed(0)
    model = create_model("resnet10t", len(CLASSES), pretrained=False)
    x, y = torch.from_numpy(Preprocess(image_size=SIZE).batch(images)), torch.tensor(labels)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-4)
    steps = EPOCHS * len(x.split(16))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, LR, total_steps=steps, pct_start=0.25)
    gen = torch.Generator().manual_seed(0)
    for _ in range(EPOCHS):
        model.train()
        for idx in torch.randperm(len(x), generator=gen).split(16):
            flip = torch.rand(len(idx), generator=gen) < 0.5
            xb = torch.where(flip[:, None, None, None], x[idx].flip(-1), x[idx])
            loss = torch.nn.functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    return checkpoint_saver(tmp_path_factory.mktemp("trained") / "phantom.pt", model, image_size=SIZE)


def _scores(checkpoint: Path, dataset, cls: str, out: Path):  # type: ignore[no-untyped-def]
    """The same maps scored strictly (re-scored from the saved .npy) and by explain() with the tolerance."""
    from PIL import Image

    from covidct.explain.scores import localization_scores

    inputs = [dataset.images_dir / cls / p for p in HELD_OUT]
    result = explain(
        checkpoint,
        inputs,
        out,
        masks=dataset.masks_dir,
        target=cls,
        layer=LAYER,
        method=METHOD,
        tolerance=TOLERANCE,
    )
    items = json.loads(result.index.read_text())["items"]
    cams = [np.load(out / item["maps"][0]["npy"]) for item in items]
    masks = [np.asarray(Image.open(dataset.mask_for(item["source"]))) > 127 for item in items]
    return localization_scores(cams, masks, tolerance=0), result.localization


@pytest.mark.parametrize("cls", ["COVID-19", "Pneumonia"])
def test_pointing_game(trained_checkpoint: Path, dataset, cls: str, tmp_path: Path) -> None:
    strict, tolerant = _scores(trained_checkpoint, dataset, cls, tmp_path / "out")
    assert strict.n == tolerant.n == 4 * len(HELD_OUT) and strict.n_empty == 0
    assert tolerant.pointing_game >= 0.8, (strict, tolerant)
    assert tolerant.random_pointing_game < 0.3, tolerant
    assert strict.pointing_game > strict.random_pointing_game + 0.3, strict
    assert strict.energy_inside > 2 * strict.random_energy_inside, strict


def test_healthy_has_nothing_to_point_at(trained_checkpoint: Path, dataset, tmp_path: Path) -> None:
    result = explain(
        trained_checkpoint,
        [dataset.images_dir / "Healthy" / HELD_OUT[0]],
        tmp_path / "h",
        masks=dataset.masks_dir,
        layer=LAYER,
        method=METHOD,
    )
    assert result.localization.n == 0 and result.localization.n_empty == 4
    assert np.isnan(result.localization.pointing_game)


# ------------------------------------------------------------------------- default settings, the demo's model
@pytest.fixture(scope="module")
def demo_fold(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The model ``covidct demo`` trains, trained the way it does (DemoConfig defaults: 12 patients per
    class, 96 px phantoms, resnet10t from scratch, 15 epochs, lr 2e-3, the default augmentation; compare's
    plan_cv/run_fold), for the first of its 3 folds only; returns (checkpoint, test slices, dataset)."""
    from covidct.data.synth import synthesize_dataset
    from covidct.study.demo import DemoConfig
    from covidct.training.config import CVConfig, TrainConfig
    from covidct.training.cv import plan_cv, run_fold

    demo = DemoConfig()
    root = tmp_path_factory.mktemp("demo_fold")
    data = synthesize_dataset(
        root / "data",
        patients_per_class=demo.patients_per_class,
        slices_per_patient=demo.slices_per_patient,
        size=demo.phantom_size,
        seed=demo.seed,
    )
    train = TrainConfig(
        epochs=demo.epochs,
        image_size=demo.image_size,
        batch_size=demo.batch_size,
        lr=demo.lr,
        pretrained=False,
        seed=demo.seed,
    )
    cfg = CVConfig(
        data=str(data.images_dir),
        model=demo.models[0],
        out=str(root / "cv"),
        folds=demo.folds,
        repeats=demo.repeats,
        seed=demo.seed,
        train=train,
    )
    plan = plan_cv(cfg)
    run_fold(plan, 0, 0)
    test = [plan.samples[i].path for i in plan.splits[(0, 0)][2]]
    return plan.fold_dir(0, 0) / "best.pt", test, data


def test_default_settings_localise_with_the_demo_model(demo_fold, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue 14: with default settings (Grad-CAM, the default layer, the predicted class), the pointing game
    with a 4 px tolerance is >= 0.8 on the demo model's held-out COVID-19 and Pneumonia slices. The default
    layer is layer2 (12x12 at 96 px); layer4 (3x3) scored 0.19 in the issue."""
    checkpoint, test, data = demo_fold
    sick = [p for p in test if Path(p).parts[-3] != "Healthy"]
    result = explain(checkpoint, sick, tmp_path / "out", masks=data.masks_dir, tolerance=TOLERANCE)
    assert result.method == "gradcam" and result.layer == "layer2", result.layer_note
    assert "12x12 map at 96 px" in result.layer_note
    loc = result.localization
    assert loc.n == len(sick) and loc.n >= 24
    assert loc.pointing_game >= 0.8, loc
    assert loc.random_pointing_game < 0.4, loc
