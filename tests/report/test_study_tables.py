"""Study tables recomputed from per-job predictions (fake tables, no torch)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fake_study import write_fake_study

from covidct.errors import DataError
from covidct.evaluation.predictions import read_predictions
from covidct.evaluation.summary import per_fold_metrics
from covidct.study.tables import build_study_tables, save_study_outputs


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


def test_save_outputs(fake_study: Path) -> None:
    save_study_outputs(fake_study)
    for name in (
        "per_fold_metrics.csv",
        "per_class.csv",
        "multiclass.csv",
        "model_table.csv",
        "wilcoxon.csv",
        "study.md",
        "summary.json",
        "figures/bars_accuracy.png",
        "figures/accuracy_vs_latency.png",
        "figures/confusion_VGG16.png",
        "figures/bars_f1_class0.png",
    ):
        assert (fake_study / name).is_file(), name
    per_class = pd.read_csv(fake_study / "per_class.csv")
    assert set(per_class["metric"]) == {"f1", "accuracy", "sensitivity", "specificity", "precision"}
    md = (fake_study / "study.md").read_text()
    assert "Wilcoxon" in md and "EfficientNetB5 (best)" in md and "± " in md
    summary = json.loads((fake_study / "summary.json").read_text())
    assert set(summary["models"]) == {"EfficientNetB5", "resnet10t", "VGG16"}
    assert np.isfinite(summary["models"]["VGG16"]["overall"]["accuracy"]["mean"])


def test_no_predictions(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no predictions"):
        build_study_tables(tmp_path / "empty")


def test_unmeasured_latency(tmp_path: Path) -> None:
    study = write_fake_study(tmp_path / "s", {"a": 2.0, "b": 1.0})
    info = json.loads((study / "models.json").read_text())
    for entry in info.values():
        entry["latency_ms"] = None  # compare --no-latency
    (study / "models.json").write_text(json.dumps(info))
    tables = save_study_outputs(study)
    assert tables.model_info["latency_ms"].isna().all()
    assert not (study / "figures" / "accuracy_vs_latency.png").exists()
    assert "n/a" in (study / "study.md").read_text()
