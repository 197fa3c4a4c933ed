"""summarize (mean ± std over 2 repeats x 3 folds, checked against numpy), per-fold metrics, run_metrics."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from evaluation_tables import CLASSES, make_predictions

from covidct.evaluation.metrics import one_vs_rest_scores, predicted_labels
from covidct.evaluation.predictions import prob_columns
from covidct.evaluation.summary import (
    format_mean_std,
    mean_std,
    per_fold_metrics,
    summarize,
    summarize_by_model,
)


def _fold_values(df: pd.DataFrame, cls: str, metric: str) -> list[float]:
    values = []
    for _, part in df.groupby(["repeat", "fold"]):
        pred = predicted_labels(part[prob_columns(df)].to_numpy(), CLASSES)
        values.append(one_vs_rest_scores(part["label"].to_numpy(), pred, CLASSES)[cls][metric])
    return values


def test_per_fold_metrics_is_tidy() -> None:
    df = make_predictions(repeats=2, folds=3)
    pf = per_fold_metrics(df)
    assert list(pf.columns) == ["model", "repeat", "fold", "level", "class", "metric", "value"]
    assert set(pf["level"]) == {"slice", "patient"}
    assert set(pf["class"]) == {*CLASSES, "__all__"}
    # 6 folds x 2 levels x (3 classes x 5 metrics + 5 overall)
    assert len(pf) == 6 * 2 * (3 * 5 + 5)


def test_summarize_mean_std_match_numpy() -> None:
    df = make_predictions(repeats=2, folds=3, seed=11)
    summary = summarize(df)
    assert summary["classes"] == list(CLASSES)
    assert summary["n_folds"] == 6 and summary["n_repeats"] == 2
    for cls in CLASSES:
        for metric in ("f1", "specificity", "precision"):
            values = np.array(_fold_values(df, cls, metric))
            entry = summary["per_class"][cls][metric]
            assert entry["mean"] == pytest.approx(values.mean())
            assert entry["std"] == pytest.approx(values.std(ddof=1))
            assert entry["n"] == 6
    accs = [
        (part["label"].to_numpy() == predicted_labels(part[prob_columns(df)].to_numpy(), CLASSES)).mean()
        for _, part in df.groupby(["repeat", "fold"])
    ]
    assert summary["overall"]["accuracy"]["mean"] == pytest.approx(np.mean(accs))
    assert summary["overall"]["accuracy"]["std"] == pytest.approx(np.std(accs, ddof=1))
    cm = np.array(summary["confusion_matrix"])
    assert cm.sum() == len(df) and np.trace(cm) == pytest.approx(np.mean(accs) * len(df))
    patient_cm = np.array(summary["patient_level"]["confusion_matrix"])
    assert patient_cm.sum() == df.groupby(["repeat", "fold", "patient_id"]).ngroups
    assert summary["warnings"] == []


def test_mean_std_edge_cases() -> None:
    assert mean_std([0.7]) == {"mean": 0.7, "std": 0.0, "n": 1}
    empty = mean_std([float("nan")])
    assert math.isnan(empty["mean"]) and empty["n"] == 0
    assert mean_std([1.0, float("nan"), 0.0])["n"] == 2
    assert format_mean_std({"mean": 0.95312, "std": 0.01178}) == "0.953 ± 0.012"
    assert format_mean_std({"mean": float("nan"), "std": 0.0}) == "n/a"


def test_summarize_warns_about_missing_patient_ids_and_undefined_auc() -> None:
    df = make_predictions(repeats=1, folds=2, with_patients=False)
    df = df[~((df["fold"] == 1) & (df["label"] == "Pneumonia"))]  # fold 1 lacks a class: AUC undefined there
    summary = summarize(df)
    assert summary["overall"]["roc_auc_ovr"]["n"] == 1
    text = " ".join(summary["warnings"])
    assert "no patient ids" in text and "roc_auc_ovr" in text


def test_summarize_needs_one_model() -> None:
    df = pd.concat([make_predictions(model="a"), make_predictions(model="b", seed=1)], ignore_index=True)
    with pytest.raises(ValueError, match="summarize_by_model"):
        summarize(df)
    by_model = summarize_by_model(df)
    assert list(by_model) == ["a", "b"]
    assert by_model["a"] == summarize(df[df["model"] == "a"])


def _fold_rows(fold: int, labels: list[str], predicted: list[str]) -> list[dict]:
    rows = []
    for k, (t, p) in enumerate(zip(labels, predicted, strict=True)):
        row = {"path": f"f{fold}/{k}.png", "patient_id": f"f{fold}p{k}", "label": t}
        row.update({f"prob_{c}": (0.8 if c == p else 0.1) for c in CLASSES})
        row.update(fold=fold, repeat=0, model="m", run_id="r")
        rows.append(row)
    return rows


def test_never_predicted_class_counts_as_zero_precision_in_the_fold_mean() -> None:
    # COVID-19 is in every fold's ground truth; predicted (half right) only in fold 0. Pneumonia is absent
    # from fold 3. Dropping the NaN folds gave COVID-19 precision 0.5; counting them as 0 gives 0.125.
    c, h, p = CLASSES
    rows = _fold_rows(0, [c, h, h, p], [c, c, h, p])
    for fold in (1, 2):
        rows += _fold_rows(fold, [c, c, h, p], [h, h, h, p])
    rows += _fold_rows(3, [c, h, h], [h, h, h])
    summary = summarize(pd.DataFrame(rows))
    covid = summary["per_class"][c]
    assert covid["precision"]["mean"] == pytest.approx(0.125) and covid["precision"]["n"] == 4
    assert covid["f1"]["mean"] == pytest.approx((2 / 3) / 4)
    pneumonia = summary["per_class"][p]
    assert pneumonia["sensitivity"]["n"] == 3 and pneumonia["precision"]["n"] == 3
    notes = " | ".join(summary["warnings"])
    assert "slice level: class COVID-19 present but never predicted in 3 of 4 folds" in notes
    absent = "sensitivity (class Pneumonia) undefined in 1 of 4 folds (Pneumonia absent from those folds'"
    assert absent in notes
    assert "missing from the fold" not in notes
