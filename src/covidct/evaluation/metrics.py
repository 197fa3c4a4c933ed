"""The paper's metrics as sklearn-style pure functions ``(y_true, y_pred_or_prob, *, options)``.

Per class the paper reports one-vs-rest F1, accuracy, sensitivity, specificity and precision: the class is the
positive, every other class is negative (so specificity = TN / (TN + FP)). Multi-class scores are accuracy,
balanced accuracy, macro and weighted F1 and the macro one-vs-rest ROC AUC from probabilities. sklearn
computes what it can; only specificity and the NaN-tolerant AUC are written here.

Undefined is not the same as bad. A class present in ``y_true`` but never predicted has precision 0 (every
one of its cases was missed; sklearn would call it 0/0), so a fold mean cannot be flattered by dropping such
folds. Only a class absent from ``y_true`` gets ``zero_division`` (NaN by default) for sensitivity, and for
precision and F1 when it is also never predicted; specificity is ``zero_division`` when every case is the
class itself.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    recall_score,
    roc_auc_score,
)

#: Per-class metric names, in the paper's column order.
PER_CLASS_METRICS: tuple[str, ...] = ("f1", "accuracy", "sensitivity", "specificity", "precision")
#: Multi-class metric names.
OVERALL_METRICS: tuple[str, ...] = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "roc_auc_ovr")


def _as_labels(values: ArrayLike) -> np.ndarray:
    return np.asarray(values, dtype=object).ravel()


def _binarize(y_true: ArrayLike, y_pred: ArrayLike, pos_label: object) -> tuple[np.ndarray, np.ndarray]:
    t, p = _as_labels(y_true), _as_labels(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.shape[0]} vs {p.shape[0]}")
    return t == pos_label, p == pos_label


def specificity_score(
    y_true: ArrayLike, y_pred: ArrayLike, *, pos_label: object, zero_division: float = np.nan
) -> float:
    """TN / (TN + FP), every other class counting as negative (the paper's one-vs-rest).

    Args:
        y_true: true labels.
        y_pred: predicted labels.
        pos_label: the class whose specificity is measured.
        zero_division: returned when there are no negatives (TN + FP == 0).
    """
    t, p = _binarize(y_true, y_pred, pos_label)
    negatives = ~t
    n_neg = int(negatives.sum())
    if n_neg == 0:
        return float(zero_division)
    return float((negatives & ~p).sum() / n_neg)


def sensitivity_score(
    y_true: ArrayLike, y_pred: ArrayLike, *, pos_label: object, zero_division: float = np.nan
) -> float:
    """TP / (TP + FN) one-vs-rest (sklearn's recall on the binarised labels)."""
    t, p = _binarize(y_true, y_pred, pos_label)
    return float(recall_score(t, p, pos_label=True, zero_division=zero_division))


def one_vs_rest_scores(
    y_true: ArrayLike, y_pred: ArrayLike, classes: Sequence[object], *, zero_division: float = np.nan
) -> dict[object, dict[str, float]]:
    """Per class: ``{"f1", "accuracy", "sensitivity", "specificity", "precision"}`` with the class as
    positive.

    Accuracy here is the binary one-vs-rest accuracy (TP + TN) / N, as in the paper's per-class tables.
    A class in ``y_true`` that is never predicted has precision 0 and F1 0; ``zero_division`` only where a
    value is truly undefined (see the module doc).
    """
    t, p = _as_labels(y_true), _as_labels(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.shape[0]} vs {p.shape[0]}")
    labels = list(classes)
    if t.size == 0:
        nan = float(zero_division)
        return {cls: dict.fromkeys(PER_CLASS_METRICS, nan) for cls in labels}
    # One sklearn call gives every class's one-vs-rest precision/recall/F1 (average=None is per label).
    precision, recall, f1, _ = precision_recall_fscore_support(
        t, p, labels=labels, average=None, zero_division=zero_division
    )
    cm = confusion_matrix(t, p, labels=labels)
    # present but never predicted: TP = FP = 0, yet the class had cases, all missed -> precision 0, not 0/0
    precision = np.where((cm.sum(axis=0) == 0) & (cm.sum(axis=1) > 0), 0.0, precision)
    n = cm.sum()
    scores: dict[object, dict[str, float]] = {}
    for i, cls in enumerate(labels):
        tp, fn, fp = cm[i, i], cm[i].sum() - cm[i, i], cm[:, i].sum() - cm[i, i]
        tn = n - tp - fn - fp
        scores[cls] = {
            "f1": float(f1[i]),
            "accuracy": float((tp + tn) / n),
            "sensitivity": float(recall[i]),
            "specificity": specificity_score(t, p, pos_label=cls, zero_division=zero_division),
            "precision": float(precision[i]),
        }
    return scores


def predicted_labels(y_prob: ArrayLike, classes: Sequence[object]) -> np.ndarray:
    """The argmax class of each row of ``y_prob`` (columns in ``classes`` order; ties go to the first
    class)."""
    prob = np.asarray(y_prob, dtype=float)
    if prob.ndim != 2 or prob.shape[1] != len(classes):
        raise ValueError(f"y_prob must have shape (n, {len(classes)}), got {prob.shape}")
    return np.asarray(classes, dtype=object)[prob.argmax(axis=1)]


def roc_auc_ovr_score(y_true: ArrayLike, y_prob: ArrayLike, classes: Sequence[object]) -> float:
    """Macro one-vs-rest ROC AUC from probabilities; the usual binary AUC for two classes.

    For two classes the second class is the positive one (its probability column is the score). Returns NaN
    instead of raising when a class is missing from ``y_true`` (AUC undefined), e.g. in a small fold.
    """
    t = _as_labels(y_true)
    prob = np.asarray(y_prob, dtype=float)
    if prob.ndim != 2 or prob.shape != (t.shape[0], len(classes)):
        raise ValueError(f"y_prob must have shape ({t.shape[0]}, {len(classes)}), got {prob.shape}")
    if len(classes) < 2 or any(not np.any(t == c) for c in classes):
        return float("nan")
    if len(classes) == 2:
        return float(roc_auc_score(t == classes[1], prob[:, 1]))
    # Same as sklearn's roc_auc_score(multi_class="ovr", average="macro") but without its requirement that
    # rows sum to exactly 1 (mean probabilities per patient, rounding in CSVs).
    return float(np.mean([roc_auc_score(t == c, prob[:, i]) for i, c in enumerate(classes)]))


def multiclass_scores(
    y_true: ArrayLike, y_prob: ArrayLike, classes: Sequence[object], *, zero_division: float = np.nan
) -> dict[str, float]:
    """Accuracy, balanced accuracy, macro and weighted F1 (from the argmax) and macro OvR ROC AUC."""
    t = _as_labels(y_true)
    if t.size == 0:
        return {name: float("nan") for name in OVERALL_METRICS}
    pred = predicted_labels(y_prob, classes)
    labels = list(classes)
    with warnings.catch_warnings():
        # balanced_accuracy warns when y_pred holds a class absent from y_true; the value is still defined.
        warnings.simplefilter("ignore", UserWarning)
        balanced = float(balanced_accuracy_score(t, pred))
    return {
        "accuracy": float(accuracy_score(t, pred)),
        "balanced_accuracy": balanced,
        "macro_f1": float(f1_score(t, pred, labels=labels, average="macro", zero_division=zero_division)),
        "weighted_f1": float(
            f1_score(t, pred, labels=labels, average="weighted", zero_division=zero_division)
        ),
        "roc_auc_ovr": roc_auc_ovr_score(t, y_prob, classes),
    }


def confusion_matrix_counts(y_true: ArrayLike, y_pred: ArrayLike, classes: Sequence[object]) -> np.ndarray:
    """Counts with rows = true class and columns = predicted class, both in ``classes`` order."""
    t, p = _as_labels(y_true), _as_labels(y_pred)
    if t.size == 0:
        return np.zeros((len(classes), len(classes)), dtype=int)
    return confusion_matrix(t, p, labels=list(classes)).astype(int)
