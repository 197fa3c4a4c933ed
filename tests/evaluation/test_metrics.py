"""The paper's metrics against a confusion matrix computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from evaluation_tables import labels_from_confusion, one_hot_probs
from sklearn.metrics import roc_auc_score

from covidct.evaluation.metrics import (
    confusion_matrix_counts,
    multiclass_scores,
    one_vs_rest_scores,
    predicted_labels,
    roc_auc_ovr_score,
    sensitivity_score,
    specificity_score,
)

CLASSES = ("A", "B", "C")
# rows = true, columns = predicted; N = 22
CM = np.array([[5, 2, 1], [1, 6, 1], [0, 2, 4]])
# By hand, one-vs-rest:
#   A: TP 5, FN 3, FP 1, TN 13     B: TP 6, FN 2, FP 4, TN 10     C: TP 4, FN 2, FP 2, TN 14
EXPECTED = {
    "A": {
        "sensitivity": 5 / 8,
        "specificity": 13 / 14,
        "precision": 5 / 6,
        "f1": 10 / 14,
        "accuracy": 18 / 22,
    },
    "B": {
        "sensitivity": 6 / 8,
        "specificity": 10 / 14,
        "precision": 6 / 10,
        "f1": 12 / 18,
        "accuracy": 16 / 22,
    },
    "C": {
        "sensitivity": 4 / 6,
        "specificity": 14 / 16,
        "precision": 4 / 6,
        "f1": 8 / 12,
        "accuracy": 18 / 22,
    },
}


@pytest.fixture()
def labels() -> tuple[np.ndarray, np.ndarray]:
    return labels_from_confusion(CM, CLASSES)


def test_one_vs_rest_matches_hand_computation(labels) -> None:
    y_true, y_pred = labels
    scores = one_vs_rest_scores(y_true, y_pred, CLASSES)
    assert set(scores) == set(CLASSES)
    for cls, expected in EXPECTED.items():
        for metric, value in expected.items():
            assert scores[cls][metric] == pytest.approx(value, abs=1e-12), (cls, metric)


def test_specificity_and_sensitivity_functions(labels) -> None:
    y_true, y_pred = labels
    assert specificity_score(y_true, y_pred, pos_label="B") == pytest.approx(10 / 14)
    assert sensitivity_score(y_true, y_pred, pos_label="C") == pytest.approx(4 / 6)


def test_specificity_zero_division() -> None:
    # every sample is positive: no negatives, specificity undefined
    assert math.isnan(specificity_score(["A", "A"], ["A", "B"], pos_label="A"))
    assert specificity_score(["A", "A"], ["A", "B"], pos_label="A", zero_division=0.0) == 0.0


def test_confusion_matrix_and_multiclass(labels) -> None:
    y_true, y_pred = labels
    assert confusion_matrix_counts(y_true, y_pred, CLASSES).tolist() == CM.tolist()
    prob = one_hot_probs(y_pred, CLASSES)
    scores = multiclass_scores(y_true, prob, CLASSES)
    assert scores["accuracy"] == pytest.approx(15 / 22)
    assert scores["balanced_accuracy"] == pytest.approx(np.mean([5 / 8, 6 / 8, 4 / 6]))
    assert scores["macro_f1"] == pytest.approx(np.mean([10 / 14, 12 / 18, 8 / 12]))
    assert scores["weighted_f1"] == pytest.approx((8 * 10 / 14 + 8 * 12 / 18 + 6 * 8 / 12) / 22)
    assert 0.5 < scores["roc_auc_ovr"] <= 1.0


def test_auc_binary_is_the_usual_auc() -> None:
    y_true = np.array(["neg", "pos", "pos", "neg", "pos"])
    p_pos = np.array([0.1, 0.8, 0.4, 0.6, 0.9])
    prob = np.column_stack([1 - p_pos, p_pos])
    assert roc_auc_ovr_score(y_true, prob, ("neg", "pos")) == pytest.approx(
        roc_auc_score(y_true == "pos", p_pos)
    )


def test_auc_multiclass_matches_sklearn_ovr_macro() -> None:
    rng = np.random.default_rng(1)
    y_true = np.array(CLASSES * 10, dtype=object)
    prob = rng.dirichlet(np.ones(3), size=30)
    expected = roc_auc_score(y_true, prob, multi_class="ovr", average="macro", labels=list(CLASSES))
    assert roc_auc_ovr_score(y_true, prob, CLASSES) == pytest.approx(expected)


def test_auc_is_nan_when_a_class_is_missing_instead_of_crashing() -> None:
    prob = one_hot_probs(np.array(["A", "B", "A"], dtype=object), CLASSES)
    assert math.isnan(roc_auc_ovr_score(["A", "B", "A"], prob, CLASSES))
    scores = multiclass_scores(["A", "B", "A"], prob, CLASSES)
    assert scores["accuracy"] == 1.0 and math.isnan(scores["roc_auc_ovr"])


def test_predicted_labels_argmax_and_shape_check() -> None:
    prob = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
    assert predicted_labels(prob, CLASSES).tolist() == ["B", "A"]
    with pytest.raises(ValueError):
        predicted_labels(prob, ("A", "B"))


def test_one_vs_rest_undefined_values_are_nan_not_errors() -> None:
    # class C never occurs and is never predicted; B is predicted but never true
    scores = one_vs_rest_scores(["A", "A", "A"], ["A", "B", "A"], CLASSES)
    assert scores["A"]["sensitivity"] == pytest.approx(2 / 3) and math.isnan(scores["A"]["specificity"])
    assert scores["B"]["precision"] == 0.0 and math.isnan(scores["B"]["sensitivity"])
    assert math.isnan(scores["C"]["precision"]) and scores["C"]["specificity"] == 1.0
    assert scores["C"]["accuracy"] == 1.0
    zero = one_vs_rest_scores(["A", "A", "A"], ["A", "B", "A"], CLASSES, zero_division=0.0)
    assert zero["C"]["precision"] == 0.0


def test_precision_of_a_present_but_never_predicted_class_is_zero_not_nan() -> None:
    scores = one_vs_rest_scores(["A", "A", "B", "B"], ["B", "B", "B", "B"], CLASSES)
    assert scores["A"]["precision"] == 0.0 and scores["A"]["f1"] == 0.0 and scores["A"]["sensitivity"] == 0.0
    assert scores["A"]["specificity"] == 1.0
    # C is absent from the ground truth (and never predicted): undefined, not 0
    assert all(math.isnan(scores["C"][m]) for m in ("precision", "f1", "sensitivity"))
    # only one class in the ground truth: its specificity has no negatives
    only = one_vs_rest_scores(["B", "B"], ["B", "A"], CLASSES)
    assert math.isnan(only["B"]["specificity"]) and only["B"]["sensitivity"] == 0.5
    assert only["A"]["precision"] == 0.0 and math.isnan(only["A"]["sensitivity"])
