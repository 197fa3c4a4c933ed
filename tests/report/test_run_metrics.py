"""A run's metric files (metrics.json, metrics.md, per-fold CSV, figures) from saved predictions."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from evaluation_tables import CLASSES, make_predictions

from covidct.evaluation.predictions import write_predictions
from covidct.evaluation.summary import summarize
from covidct.report.run_metrics import compute_run_metrics


def test_compute_run_metrics_writes_all_files(tmp_path: Path) -> None:
    run = tmp_path / "run"
    df = make_predictions(repeats=2, folds=3)
    for (repeat, fold), part in df.groupby(["repeat", "fold"]):
        write_predictions(part, run / "folds" / f"r{repeat}_f{fold}" / "predictions.csv")
    (run / "config.json").write_text(json.dumps({"warnings": ["slice-level folds: no patient ids"]}))
    payload = compute_run_metrics(run)
    for name in (
        "metrics.json",
        "metrics.md",
        "per_fold_metrics.csv",
        "confusion_matrix.png",
        "confusion_matrix_patient.png",
        "roc.png",
    ):
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    assert (run / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((run / "metrics.json").read_text())
    assert saved == payload
    assert saved["per_class"]["COVID-19"]["sensitivity"]["mean"] == pytest.approx(
        summarize(df)["per_class"]["COVID-19"]["sensitivity"]["mean"]
    )
    md = (run / "metrics.md").read_text()
    assert "| Class | F1 | Accuracy | Sensitivity | Specificity | Precision |" in md
    assert "slice-level folds: no patient ids" in md
    assert md.count(" ± ") >= 3 * 5 * 2 + 5 * 2
    for cls in CLASSES:
        assert f"| {cls} |" in md


def test_compute_run_metrics_several_models(tmp_path: Path) -> None:
    df = pd.concat([make_predictions(model="net/a"), make_predictions(model="b", seed=2)], ignore_index=True)
    write_predictions(df, tmp_path / "predictions.csv")
    payload = compute_run_metrics(tmp_path)
    assert sorted(payload["models"]) == ["b", "net/a"]
    assert (tmp_path / "roc_net_a.png").is_file() and (tmp_path / "confusion_matrix_b.png").is_file()
    assert "## net/a" in (tmp_path / "metrics.md").read_text()


def test_metrics_json_is_strict_json_with_nan(tmp_path: Path) -> None:
    df = make_predictions(repeats=1, folds=1)
    write_predictions(df[df["label"] != "Pneumonia"], tmp_path / "predictions.csv")  # AUC undefined
    compute_run_metrics(tmp_path)
    text = (tmp_path / "metrics.json").read_text()
    assert "NaN" not in text
    assert json.loads(text)["overall"]["roc_auc_ovr"]["mean"] is None


def test_binary_run_like_sarscov2(tmp_path: Path) -> None:
    df = make_predictions(classes=("COVID-19", "Healthy"), with_patients=False, repeats=1, folds=5)
    write_predictions(df, tmp_path / "predictions.csv")
    payload = compute_run_metrics(tmp_path)
    assert payload["classes"] == ["COVID-19", "Healthy"] and payload["n_folds"] == 5
    auc = payload["overall"]["roc_auc_ovr"]
    assert 0.5 < auc["mean"] <= 1.0 and auc["n"] == 5
    # one-vs-rest in the binary case: one class's sensitivity is the other's specificity
    pc = payload["per_class"]
    assert pc["COVID-19"]["sensitivity"]["mean"] == pytest.approx(pc["Healthy"]["specificity"]["mean"])
    assert not (tmp_path / "confusion_matrix_patient.png").exists()  # no patient ids
