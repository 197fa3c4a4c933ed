"""Cluster bootstrap CIs and calibration: match sklearn at full weight, seeded, patients as units."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from evaluation_tables import CLASSES, make_predictions
from sklearn.metrics import roc_auc_score

from covidct.evaluation.bootstrap import (
    _macro_auc,
    bootstrap_intervals,
    calibration_bins,
    confusion_metrics,
)
from covidct.evaluation.metrics import (
    confusion_matrix_counts,
    multiclass_scores,
    one_vs_rest_scores,
    predicted_labels,
)
from covidct.evaluation.predictions import prob_columns, write_predictions
from covidct.evaluation.summary import format_mean_std, summarize
from covidct.report.run_metrics import compute_run_metrics


def _arrays(df):
    prob = df[prob_columns(df)].to_numpy(dtype=float)
    return df["label"].to_numpy(dtype=object), prob, predicted_labels(prob, CLASSES)


def test_confusion_metrics_and_weighted_auc_match_sklearn() -> None:
    df = make_predictions(repeats=1, folds=2, patients_per_class=5, signal=0.8)
    y, prob, pred = _arrays(df)
    got = confusion_metrics(confusion_matrix_counts(y, pred, CLASSES)[None])
    ovr = one_vs_rest_scores(y, pred, CLASSES)
    overall = multiclass_scores(y, prob, CLASSES)
    for i, cls in enumerate(CLASSES):
        for metric, value in ovr[cls].items():
            assert got[metric][0, i] == pytest.approx(value)
    for metric in ("balanced_accuracy", "macro_f1", "weighted_f1"):
        assert got[metric][0] == pytest.approx(overall[metric])
    codes = np.array([CLASSES.index(v) for v in y])
    weights = np.random.default_rng(0).integers(0, 3, size=len(y)).astype(float)
    rows = np.repeat(np.arange(len(y)), weights.astype(int))  # integer weights = repeated rows
    expected = np.mean([roc_auc_score(codes[rows] == c, prob[rows, c]) for c in range(3)])
    assert _macro_auc(codes, prob, weights[None])[0] == pytest.approx(expected)


def test_intervals_cover_the_pooled_value_are_seeded_and_resample_patients() -> None:
    df = make_predictions(repeats=2, folds=3, patients_per_class=4, slices_per_patient=5, signal=1.0)
    y, prob, _ = _arrays(df)
    a = bootstrap_intervals(y, prob, CLASSES, df["patient_id"], n_boot=300, seed=3)
    b = bootstrap_intervals(y, prob, CLASSES, df["patient_id"], n_boot=300, seed=3)
    assert a == b and a["n_units"] == df["patient_id"].nunique() and a["n_boot"] == 300
    pooled = multiclass_scores(y, prob, CLASSES)["accuracy"]
    lo, hi = a["overall"]["accuracy"]
    assert lo < pooled < hi
    # slices of one patient are not independent: resampling slices gives a narrower interval here
    correlated = df.copy()
    first = correlated.groupby("patient_id")["path"].transform("first")
    for c in CLASSES:  # every slice of a patient gets the first slice's prediction
        correlated[f"prob_{c}"] = correlated.set_index("path").loc[first, f"prob_{c}"].to_numpy()
    y2, prob2, _ = _arrays(correlated)
    by_patient = bootstrap_intervals(y2, prob2, CLASSES, correlated["patient_id"], n_boot=400, seed=0)
    by_slice = bootstrap_intervals(y2, prob2, CLASSES, correlated["path"], n_boot=400, seed=0)
    width = lambda r: np.diff(r["overall"]["accuracy"])[0]  # noqa: E731
    assert width(by_patient) > 1.5 * width(by_slice)


def test_calibration_bins_and_ece() -> None:
    y = np.array(["A", "A", "B", "B"], dtype=object)
    prob = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    cal = calibration_bins(y, prob, ("A", "B"), n_bins=10)
    # bins (0.8, 0.9]: 2 slices, conf 0.9, acc 1; (0.5, 0.6]: conf 0.6, acc 0; (0.6, 0.7]: conf 0.7, acc 1
    assert cal["ece"] == pytest.approx((2 * 0.1 + 0.6 + 0.3) / 4)
    assert sum(b["count"] for b in cal["bins"]) == 4 and cal["bins"][8]["count"] == 2


def test_summary_and_run_files_carry_cis_and_calibration(tmp_path: Path) -> None:
    df = make_predictions(repeats=2, folds=3, seed=4)
    summary = summarize(df, n_boot=200, seed=5)
    entry = summary["overall"]["accuracy"]
    assert len(entry["ci95"]) == 2 and entry["ci95"][0] <= entry["ci95"][1]
    assert summary["bootstrap"]["unit"] == "patient" and summary["bootstrap"]["seed"] == 5
    assert summary["patient_level"]["per_class"]["COVID-19"]["f1"]["ci95"][1] <= 1.0
    assert 0.0 <= summary["calibration"]["ece"] <= 1.0 and len(summary["calibration"]["ece_ci95"]) == 2
    assert "[" in format_mean_std(entry, ci=True) and "[" not in format_mean_std(entry)
    no_ids = df.assign(patient_id="")
    assert summarize(no_ids, n_boot=50)["bootstrap"]["unit"] == "slice"
    run = tmp_path / "run"
    write_predictions(df, run / "predictions.csv")
    compute_run_metrics(run, n_boot=100)
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["bootstrap"]["n_boot"] == 100 and "ci95" in saved["per_class"]["Healthy"]["precision"]
    assert (run / "reliability.png").stat().st_size > 0
    md = (run / "metrics.md").read_text()
    assert "bootstrap interval" in md and "Expected calibration error" in md
