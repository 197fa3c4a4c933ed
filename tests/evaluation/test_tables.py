"""A study's tables recomputed from per-job predictions (fake tables, no torch)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_study import write_fake_study

from covidct.errors import DataError
from covidct.evaluation.predictions import read_predictions
from covidct.evaluation.summary import per_fold_metrics
from covidct.evaluation.tables import build_study_tables


def test_tables_match_predictions(fake_study: Path) -> None:
    tables = build_study_tables(fake_study)
    assert tables.models == ["EfficientNetB5", "resnet10t", "VGG16"]  # study order
    assert tables.classes == ["COVID-19", "Healthy", "Pneumonia"]
    # every number recomputable from the saved predictions
    files = sorted((fake_study / "models" / "VGG16" / "folds").glob("*/predictions.csv"))
    df = read_predictions(files)
    acc = per_fold_metrics(df, levels=("slice",))
    acc = acc[(acc["class"] == "__all__") & (acc["metric"] == "accuracy")]["value"]
    row = tables.model_info.set_index("model").loc["VGG16"]
    assert row["accuracy"] == pytest.approx(acc.mean())
    assert row["accuracy_std"] == pytest.approx(acc.std(ddof=1))
    assert row["params"] == 3_000_000 and row["folds_done"] == 6 and row["folds_expected"] == 6
    best = tables.wilcoxon.iloc[0]
    assert best["model"] == "EfficientNetB5" and bool(best["is_best"])
    assert tables.wilcoxon["n_pairs"].tolist() == [6, 6, 6]
    assert set(tables.multiclass["level"]) == {"slice", "patient"}
    assert tables.missing == []


def test_missing_jobs_are_reported(tmp_path: Path) -> None:
    study = write_fake_study(tmp_path / "s", {"a": 2.0, "b": 1.0}, skip=(("b", 1, 2),))
    tables = build_study_tables(study)
    assert tables.missing == ["b: 1 of 6 jobs have no predictions"]
    assert tables.wilcoxon.set_index("model").loc["b", "n_pairs"] in (5, 6)


def test_no_predictions(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no predictions"):
        build_study_tables(tmp_path / "empty")
