"""Cluster bootstrap confidence intervals and calibration of pooled test predictions (numpy only, no torch).

The unit of resampling is the patient (all of a patient's rows, every fold and repeat, go together), or the
slice where ids are unknown: slices of one patient are not independent, so resampling slices would give
intervals that are too narrow. The CI is the percentile interval of the metric computed on the *pooled* test
predictions of each resample; it sits next to the fold mean ± std, which answers a different question (spread
over folds). Everything is vectorised: each unit's confusion counts (and calibration-bin sums) are computed
once and a resample is a matrix product with its multinomial unit counts, so 1000 resamples take well under a
second for a few thousand slices.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from covidct.evaluation.metrics import OVERALL_METRICS, PER_CLASS_METRICS

DEFAULT_N_BOOT = 1000
DEFAULT_SEED = 0
CONFIDENCE = 0.95
N_BINS = 15
_CHUNK = 250  # resamples per batch: bounds memory for the AUC (n_boot x n_rows)


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def confusion_metrics(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class and multi-class metrics of a stack of confusion matrices ``(..., K, K)`` (rows true).

    The same definitions as :func:`covidct.evaluation.metrics.one_vs_rest_scores` and
    :func:`~covidct.evaluation.metrics.multiclass_scores` (without AUC): per-class values have shape
    ``(..., K)``, multi-class ones ``(...)``.
    """
    cm = np.asarray(cm, dtype=float)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    support, predicted = cm.sum(axis=-1), cm.sum(axis=-2)
    n = cm.sum(axis=(-2, -1))[..., None]
    fp, fn = predicted - tp, support - tp
    tn = n - tp - fp - fn
    precision = _div(tp, predicted)
    precision = np.where((predicted == 0) & (support > 0), 0.0, precision)
    f1 = _div(2 * tp, 2 * tp + fp + fn)
    sensitivity = _div(tp, support)
    out = {
        "f1": f1,
        "accuracy": _div(tp + tn, n),
        "sensitivity": sensitivity,
        "specificity": _div(tn, tn + fp),
        "precision": precision,
    }
    present = support > 0
    total = n[..., 0]
    with np.errstate(invalid="ignore"):
        out["accuracy_all"] = _div(tp.sum(axis=-1), total)
        out["balanced_accuracy"] = _div(np.where(present, sensitivity, 0).sum(-1), present.sum(-1))
        defined = ~np.isnan(f1)
        out["macro_f1"] = _div(np.where(defined, f1, 0).sum(-1), defined.sum(-1))
        out["weighted_f1"] = _div((np.where(defined, f1, 0) * support).sum(-1), support.sum(-1))
    return out


def _weighted_auc(positive: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """One-vs-rest AUC per resample: rows weighted by ``weights`` ``(B, n)`` (ties count one half)."""
    order = np.argsort(scores, kind="stable")
    s, pos = scores[order], positive[order]
    w = weights[:, order]
    neg_w = np.where(pos, 0.0, w)
    cum = np.concatenate([np.zeros((w.shape[0], 1)), np.cumsum(neg_w, axis=1)], axis=1)
    _, start, counts = np.unique(s, return_index=True, return_counts=True)
    group_start = np.repeat(start, counts)
    group_end = group_start + np.repeat(counts, counts)
    below = cum[:, group_start]
    ties = cum[:, group_end] - below
    pos_w = np.where(pos, w, 0.0)
    num = (pos_w * (below + 0.5 * ties)).sum(axis=1)
    den = pos_w.sum(axis=1) * neg_w.sum(axis=1)
    return _div(num, den)


def _macro_auc(y: np.ndarray, prob: np.ndarray, weights: np.ndarray) -> np.ndarray:
    k = prob.shape[1]
    if k == 2:
        return _weighted_auc(y == 1, prob[:, 1], weights)
    per_class = np.stack([_weighted_auc(y == c, prob[:, c], weights) for c in range(k)], axis=1)
    has_all = np.stack([(weights * (y == c)).sum(axis=1) > 0 for c in range(k)], axis=1).all(axis=1)
    return np.where(has_all, per_class.mean(axis=1), np.nan)


def calibration_bins(
    y_true: ArrayLike, y_prob: np.ndarray, classes: Sequence[object], *, n_bins: int = N_BINS
) -> dict[str, Any]:
    """Top-label reliability: equal-width confidence bins with count, mean confidence and accuracy, and ECE.

    ECE = sum over bins of (bin count / N) * |accuracy - mean confidence| of the argmax class.
    """
    conf, correct, b = _top_label(y_true, y_prob, classes, n_bins)
    count = np.bincount(b, minlength=n_bins)
    conf_sum = np.bincount(b, weights=conf, minlength=n_bins)
    acc_sum = np.bincount(b, weights=correct, minlength=n_bins)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = [
        {
            "lower": float(edges[i]),
            "upper": float(edges[i + 1]),
            "count": int(count[i]),
            "confidence": float(conf_sum[i] / count[i]) if count[i] else None,
            "accuracy": float(acc_sum[i] / count[i]) if count[i] else None,
        }
        for i in range(n_bins)
    ]
    return {"ece": _ece(count, conf_sum, acc_sum), "n_bins": n_bins, "bins": bins}


def _top_label(
    y_true: ArrayLike, y_prob: np.ndarray, classes: Sequence[object], n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    prob = np.asarray(y_prob, dtype=float)
    labels = np.asarray(classes, dtype=object)
    conf = prob.max(axis=1)
    correct = (labels[prob.argmax(axis=1)] == np.asarray(y_true, dtype=object)).astype(float)
    b = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)  # (lower, upper] bins
    return conf, correct, b


def _ece(count: np.ndarray, conf_sum: np.ndarray, acc_sum: np.ndarray) -> Any:
    total = count.sum(axis=-1)
    gap = np.abs(acc_sum - conf_sum).sum(axis=-1)  # sum_b n_b |acc_b - conf_b|
    return _div(gap, total) if np.ndim(total) else (float(gap / total) if total else float("nan"))


def bootstrap_intervals(
    y_true: ArrayLike,
    y_prob: np.ndarray,
    classes: Sequence[object],
    units: ArrayLike,
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    confidence: float = CONFIDENCE,
    n_bins: int = N_BINS,
) -> dict[str, Any]:
    """Percentile CIs of every metric (and ECE) of the pooled predictions, resampling ``units``.

    Units (patients, or slices) are drawn with replacement; a unit brings all its rows. Returns
    ``{"per_class": {cls: {metric: [low, high]}}, "overall": {metric: [low, high]}, "ece": [low, high],
    "n_units", "n_boot", "seed", "confidence"}``; NaN bounds where a metric is undefined in most resamples.
    """
    labels = list(classes)
    index = {c: i for i, c in enumerate(labels)}
    prob = np.asarray(y_prob, dtype=float)
    truth = np.asarray(y_true, dtype=object)
    unknown = sorted({str(v) for v in truth if v not in index})
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {labels}")
    y = np.asarray([index[v] for v in truth], dtype=np.int64)
    pred = prob.argmax(axis=1)
    unit_codes, unit_of_row = np.unique(np.asarray(units, dtype=object).astype(str), return_inverse=True)
    n_units, k = len(unit_codes), len(labels)
    per_unit = np.zeros((n_units, k * k))
    np.add.at(per_unit, (unit_of_row, y * k + pred), 1.0)
    conf, correct, b = _top_label(y_true, prob, labels, n_bins)
    cal = np.zeros((n_units, 3 * n_bins))
    np.add.at(cal, (unit_of_row, b), 1.0)
    np.add.at(cal, (unit_of_row, n_bins + b), conf)
    np.add.at(cal, (unit_of_row, 2 * n_bins + b), correct)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[np.ndarray]] = {}
    for start in range(0, n_boot, _CHUNK):
        size = min(_CHUNK, n_boot - start)
        w = rng.multinomial(n_units, np.full(n_units, 1.0 / n_units), size=size).astype(float)
        m = confusion_metrics((w @ per_unit).reshape(size, k, k))
        c = w @ cal
        m["ece"] = _ece(c[:, :n_bins], c[:, n_bins : 2 * n_bins], c[:, 2 * n_bins :])
        m["roc_auc_ovr"] = _macro_auc(y, prob, w[:, unit_of_row]) if k >= 2 else np.full(size, np.nan)
        for name, value in m.items():
            draws.setdefault(name, []).append(value)
    tail = 100 * (1 - confidence) / 2
    stacked = {name: np.concatenate(parts, axis=0) for name, parts in draws.items()}

    def interval(values: np.ndarray) -> list[float]:
        finite = values[np.isfinite(values)]
        if finite.size < 0.5 * values.size:  # undefined in most resamples: no honest interval
            return [float("nan"), float("nan")]
        lo, hi = np.percentile(finite, [tail, 100 - tail])
        return [float(lo), float(hi)]

    per_class = {
        cls: {m: interval(stacked[m][:, i]) for m in PER_CLASS_METRICS} for i, cls in enumerate(labels)
    }
    overall = {m: interval(stacked["accuracy_all" if m == "accuracy" else m]) for m in OVERALL_METRICS}
    return {
        "per_class": per_class,
        "overall": overall,
        "ece": interval(stacked["ece"]),
        "n_units": int(n_units),
        "n_boot": int(n_boot),
        "seed": int(seed),
        "confidence": float(confidence),
    }
