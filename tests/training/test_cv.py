"""Cross-validation: model-independent patient-grouped folds, per-fold predictions, resume, determinism."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from covidct.errors import ConfigError, CovidCTWarning
from covidct.evaluation.predictions import read_predictions
from covidct.report.run_metrics import write_run_metrics
from covidct.training.config import CVConfig, TrainConfig
from covidct.training.cv import cross_validate, fold_patients, plan_cv

TINY = TrainConfig(epochs=1, batch_size=4, image_size=32, pretrained=False, lr=1e-3, device="cpu")


def _cfg(data: Path, out: Path, **kw) -> CVConfig:
    return CVConfig(
        data=str(data),
        model=kw.pop("model", "resnet10t"),
        out=str(out),
        folds=kw.pop("folds", 2),
        repeats=kw.pop("repeats", 1),
        seed=0,
        train=kw.pop("train", TINY),
    )


def test_plan_records_grouped_folds_independent_of_the_model(disc_data: Path, tmp_path: Path) -> None:
    plan = plan_cv(_cfg(disc_data, tmp_path / "run", folds=2, repeats=2))
    assert plan.grouped and len(plan.jobs) == 4
    for repeat, fold in plan.jobs:
        parts = fold_patients(plan, repeat, fold)
        assert np.intersect1d(parts["train"], parts["test"]).size == 0
        assert np.intersect1d(parts["val"], parts["test"]).size == 0
        assert np.intersect1d(parts["train"], parts["val"]).size == 0 and parts["val"]
    table = pd.read_csv(tmp_path / "run" / "folds.csv")
    assert list(table.columns) == ["path", "patient_id", "label", "repeat", "fold", "split"]
    assert set(table["split"]) == {"train", "val", "test"}
    for (_, _), part in table.groupby(["repeat", "fold"]):
        test = part.loc[part["split"] == "test", "patient_id"].to_numpy()
        rest = part.loc[part["split"] != "test", "patient_id"].to_numpy()
        assert np.intersect1d(test, rest).size == 0 and len(part) == len(plan.samples)
    for name in ("config.json", "env.json", "manifest.csv", "warnings.json"):
        assert (tmp_path / "run" / name).is_file()
    other = plan_cv(
        _cfg(disc_data, tmp_path / "other", folds=2, repeats=2, model="efficientnet_b0"), write=False
    )
    for key, (train, val, test) in plan.splits.items():
        assert all(np.array_equal(a, b) for a, b in zip((train, val, test), other.splits[key], strict=True))


def test_rerun_into_a_run_with_other_options_is_refused(disc_data: Path, tmp_path: Path) -> None:
    plan_cv(_cfg(disc_data, tmp_path / "run"))
    with pytest.raises(ConfigError, match="other options"):
        plan_cv(
            _cfg(disc_data, tmp_path / "run", train=TrainConfig(epochs=5, image_size=32, pretrained=False))
        )


def test_slice_level_folds_warn_and_record_it(disc_data: Path, tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    for png in disc_data.glob("*/*/*.png"):  # class folders without patient folders
        target = flat / png.parent.parent.name / f"{png.parent.name}_{png.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(png, target)
    with pytest.warns(CovidCTWarning, match="slice-level"):
        plan = plan_cv(_cfg(flat, tmp_path / "run"))
    assert not plan.grouped
    recorded = json.loads((tmp_path / "run" / "warnings.json").read_text())["warnings"]
    assert any("slice-level" in w for w in recorded)


def test_cv_writes_fold_predictions_resumes_and_is_deterministic(disc_data: Path, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        first = cross_validate(_cfg(disc_data, tmp_path / "a"))
    assert first.run_metrics is not None
    write_run_metrics(first.run_metrics)  # what `covidct cv` does after the API call
    assert (first.trained, first.skipped_jobs) == (2, 0)
    files = sorted((tmp_path / "a" / "folds").glob("r*_f*/predictions.csv"))
    assert [f.parent.name for f in files] == ["r0_f0", "r0_f1"]
    table = read_predictions(tmp_path / "a" / "predictions.csv")
    assert list(table.columns) == [
        "path",
        "patient_id",
        "label",
        "prob_COVID-19",
        "prob_Healthy",
        "fold",
        "repeat",
        "model",
        "run_id",
    ]
    assert len(table) == 24 and table["path"].is_unique  # each slice tested once per repeat
    assert (table["model"] == "resnet10t").all() and (tmp_path / "a" / "metrics.json").is_file()
    assert not (files[0].parent / "last.pt").exists() and (files[0].parent / "best.pt").is_file()

    # resume: delete one fold's predictions; only that fold trains again
    mtime_kept = files[0].stat().st_mtime_ns
    os.utime(files[0], ns=(mtime_kept - 10**9, mtime_kept - 10**9))
    mtime_kept = files[0].stat().st_mtime_ns
    files[1].unlink()
    second = cross_validate(_cfg(disc_data, tmp_path / "a"))
    assert (second.trained, second.skipped_jobs) == (1, 1)
    assert files[0].stat().st_mtime_ns == mtime_kept and files[1].is_file()
    third = cross_validate(_cfg(disc_data, tmp_path / "a"))
    assert (third.trained, third.skipped_jobs) == (0, 2)

    # same seed, other folder: the same probabilities
    again = cross_validate(_cfg(disc_data, tmp_path / "b"))
    a = read_predictions(again.predictions).drop(columns="run_id")
    b = read_predictions(tmp_path / "a" / "predictions.csv").drop(columns="run_id")
    pd.testing.assert_frame_equal(a, b)
