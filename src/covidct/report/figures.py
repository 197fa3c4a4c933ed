"""Figures for runs and studies: pure functions from arrays/tables to PNG files (written atomically).

Uses matplotlib's object API (``Figure`` + the Agg canvas) and never ``pyplot``: no global state, no GUI
backend, safe in threads (the web service, Ray workers). No torch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from covidct.evaluation.predictions import classes_of, prob_columns
from covidct.utils import atomic_path

PathLike = str | os.PathLike[str]
_DPI = 120


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: PathLike) -> Path:
    """Write ``fig`` as PNG atomically; returns the path."""
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI)
    return target


def plot_confusion_matrix(
    cm: Any, classes: Sequence[str], path: PathLike, normalize: bool = False, *, title: str | None = None
) -> Path:
    """Heat map of a confusion matrix (rows = true, columns = predicted), counts or row-normalised rates."""
    counts = np.asarray(cm, dtype=float)
    if counts.shape != (len(classes), len(classes)):
        raise ValueError(f"confusion matrix shape {counts.shape} does not match {len(classes)} classes")
    if normalize:
        rows = counts.sum(axis=1, keepdims=True)
        values = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    else:
        values = counts
    size = max(3.5, 1.1 * len(classes) + 1.5)
    fig = _new_figure(size + 0.8, size)
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else max(values.max(), 1))
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_xticks(range(len(classes)), labels=list(classes), rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), labels=list(classes))
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    threshold = values.max() / 2 if values.size else 0
    for i in range(len(classes)):
        for j in range(len(classes)):
            text = f"{values[i, j]:.2f}" if normalize else f"{int(counts[i, j])}"
            ax.text(
                j, i, text, ha="center", va="center", color="white" if values[i, j] > threshold else "black"
            )
    ax.set_title(title or ("Confusion matrix (row-normalised)" if normalize else "Confusion matrix"))
    return save_figure(fig, path)


def plot_roc(df: pd.DataFrame, path: PathLike, *, title: str | None = None) -> Path:
    """One-vs-rest ROC curve per class from a predictions table (all folds/repeats pooled)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    classes, probs = classes_of(df), prob_columns(df)
    labels = df["label"].astype(str).to_numpy()
    fig = _new_figure(5.0, 4.6)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    for cls, column in zip(classes, probs, strict=False):
        positive = labels == cls
        if not 0 < positive.sum() < positive.size:
            continue  # ROC undefined without both positives and negatives
        scores = df[column].to_numpy(dtype=float)
        fpr, tpr, _ = roc_curve(positive, scores)
        ax.plot(fpr, tpr, label=f"{cls} (AUC {roc_auc_score(positive, scores):.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("False positive rate (1 - specificity)")
    ax.set_ylabel("True positive rate (sensitivity)")
    ax.set_title(title or "ROC, one-vs-rest (pooled folds)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize="small")
    return save_figure(fig, path)


def plot_reliability(calibration: Mapping[str, Any], path: PathLike, *, title: str | None = None) -> Path:
    """Reliability diagram from :func:`covidct.evaluation.bootstrap.calibration_bins`: accuracy vs confidence.

    Bars are each bin's accuracy of the argmax class at its mean confidence (width = the bin); the diagonal is
    perfect calibration; a histogram of slices per bin sits below. The title carries the ECE.
    """
    bins = [b for b in calibration.get("bins", []) if b.get("count")]
    fig = _new_figure(5.0, 5.4)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    if bins:
        lower = np.array([b["lower"] for b in bins])
        width = np.array([b["upper"] - b["lower"] for b in bins])
        acc = np.array([b["accuracy"] for b in bins], dtype=float)
        conf = np.array([b["confidence"] for b in bins], dtype=float)
        top.bar(lower, acc, width=width, align="edge", edgecolor="black", alpha=0.7, label="accuracy")
        top.plot(conf, acc, "o", color="black", markersize=3, label="(mean confidence, accuracy)")
        bottom.bar(lower, [b["count"] for b in bins], width=width, align="edge", color="grey")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1.01)
    top.set_ylabel("Accuracy")
    bottom.set_xlabel("Confidence (probability of the predicted class)")
    bottom.set_ylabel("Slices")
    ece = calibration.get("ece")
    suffix = f" (ECE {ece:.3f})" if isinstance(ece, float) and np.isfinite(ece) else ""
    top.set_title((title or "Reliability (pooled folds)") + suffix)
    top.legend(loc="upper left", fontsize="small")
    return save_figure(fig, path)


def _metric_stats(
    summary: Mapping[str, Any], metric: str, cls: str | None, level: str
) -> tuple[float, float]:
    block: Mapping[str, Any] = summary
    if level == "patient":
        block = summary.get("patient_level") or {}
    section = block.get("overall", {}) if cls is None else block.get("per_class", {}).get(cls, {})
    entry = section.get(metric)
    if entry is None:
        return float("nan"), float("nan")
    return float(entry.get("mean", np.nan)), float(entry.get("std", np.nan))


def plot_metric_bars(
    summary_by_model: Mapping[str, Mapping[str, Any]],
    metric: str,
    path: PathLike,
    *,
    cls: str | None = None,
    level: str = "slice",
    title: str | None = None,
) -> Path:
    """Bars of ``metric`` (mean ± std over folds) per model, sorted best first.

    Args:
        summary_by_model: ``{model: summarize(...) dict}`` (see ``evaluation.summary.summarize_by_model``).
        metric: a key of ``overall`` (e.g. ``"accuracy"``) or, with ``cls``, of ``per_class[cls]``.
        cls: a class name to plot a per-class metric; None for the multi-class ``overall`` block.
        level: ``"slice"`` or ``"patient"``.
    """
    rows = [
        (model, *_metric_stats(summary, metric, cls, level)) for model, summary in summary_by_model.items()
    ]
    rows.sort(key=lambda r: (np.isnan(r[1]), -np.nan_to_num(r[1])))
    names = [r[0] for r in rows]
    means = np.array([r[1] for r in rows], dtype=float)
    stds = np.nan_to_num(np.array([r[2] for r in rows], dtype=float))
    fig = _new_figure(max(4.0, 0.55 * len(rows) + 2.0), 4.2)
    ax = fig.add_subplot()
    x = np.arange(len(rows))
    ax.bar(x, np.nan_to_num(means), yerr=stds, capsize=3, color="tab:blue", alpha=0.85)
    ax.set_xticks(x, labels=names, rotation=45, ha="right")
    label = metric.replace("_", " ") + (f" ({cls})" if cls else "")
    ax.set_ylabel(label)
    finite = means[np.isfinite(means)]
    low = float(np.min(finite - stds[np.isfinite(means)])) if finite.size else 0.0
    ax.set_ylim(max(0.0, min(low - 0.05, 0.9)), 1.0 if not finite.size or finite.max() <= 1 else None)
    ax.set_title(title or f"{label}, mean ± std over folds ({level} level)")
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def pareto_front(latency: ArrayLike, accuracy: ArrayLike) -> np.ndarray:
    """Indices of the efficiency frontier: no other model is both faster and at least as accurate."""
    lat, acc = np.asarray(latency, dtype=float), np.asarray(accuracy, dtype=float)
    order = np.lexsort((-acc, lat))
    front, best = [], -np.inf
    for i in order:
        if np.isfinite(acc[i]) and np.isfinite(lat[i]) and acc[i] > best:
            front.append(int(i))
            best = acc[i]
    return np.asarray(front, dtype=int)


def plot_accuracy_vs_latency(
    table: pd.DataFrame,
    path: PathLike,
    *,
    x: str = "latency_ms",
    y: str = "accuracy",
    label: str = "model",
    yerr: str | None = "accuracy_std",
    title: str | None = None,
) -> Path:
    """Scatter of accuracy against latency per model, with the efficiency frontier drawn as a line.

    ``table`` has one row per model with columns ``label``, ``x`` and ``y`` (and optionally ``yerr``).
    """
    missing = [c for c in (label, x, y) if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}")
    lat = table[x].to_numpy(dtype=float)
    acc = table[y].to_numpy(dtype=float)
    err = table[yerr].to_numpy(dtype=float) if yerr and yerr in table.columns else None
    fig = _new_figure(6.0, 4.5)
    ax = fig.add_subplot()
    ax.errorbar(
        lat, acc, yerr=None if err is None else np.nan_to_num(err), fmt="o", capsize=3, color="tab:blue"
    )
    for name, xi, yi in zip(table[label].astype(str), lat, acc, strict=False):
        ax.annotate(name, (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize="small")
    front = pareto_front(lat, acc)
    if front.size > 1:
        ax.plot(lat[front], acc[front], "--", color="tab:orange", label="efficiency frontier")
        ax.legend(loc="lower right", fontsize="small")
    positive = lat[np.isfinite(lat)]
    if positive.size and positive.min() > 0 and positive.max() / positive.min() > 20:
        ax.set_xscale("log")
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(y.replace("_", " "))
    ax.set_title(title or "Accuracy vs latency")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
