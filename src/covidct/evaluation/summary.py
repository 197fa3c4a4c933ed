"""From a predictions table to the paper's numbers: per-fold metrics, mean ± std, and a run's metric files.

``per_fold_metrics`` is the one place that groups by (model, repeat, fold); it returns a tidy table that
``summarize`` averages and ``evaluation.stats`` pairs across models. Mean ± std is over all folds of all
repeats; std is the sample standard deviation (``ddof=1``, as pandas and most CV papers report), 0 for a
single fold. Folds where a metric is undefined (NaN: a class absent from the fold's ground truth, or AUC in a
fold that lacks a class) are left out of that metric's mean (``n`` counts the folds used); a warning says
which case it was. A class present but never predicted has precision 0 in that fold, which counts (also said
in a warning). ``metrics.json`` is always derived: ``covidct metrics RUN`` rebuilds it from the saved
predictions (:func:`run_metrics` computes, :mod:`covidct.report.run_metrics` writes).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from covidct.errors import DataError
from covidct.evaluation.bootstrap import DEFAULT_N_BOOT, DEFAULT_SEED, bootstrap_intervals, calibration_bins
from covidct.evaluation.metrics import (
    OVERALL_METRICS,
    PER_CLASS_METRICS,
    confusion_matrix_counts,
    multiclass_scores,
    one_vs_rest_scores,
    predicted_labels,
)
from covidct.evaluation.predictions import (
    aggregate_patients,
    classes_of,
    missing_patient,
    prob_columns,
    read_run_predictions,
)

ALL_CLASSES = "__all__"
LEVELS: tuple[str, ...] = ("slice", "patient")
PER_FOLD_COLUMNS: tuple[str, ...] = ("model", "repeat", "fold", "level", "class", "metric", "value")
METRIC_TITLES: dict[str, str] = {
    "f1": "F1",
    "accuracy": "Accuracy",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "precision": "Precision",
    "balanced_accuracy": "Balanced accuracy",
    "macro_f1": "Macro F1",
    "weighted_f1": "Weighted F1",
    "roc_auc_ovr": "ROC AUC (OvR)",
}

PathLike = str | os.PathLike[str]


def _level_table(df: pd.DataFrame, level: str) -> pd.DataFrame:
    if level == "slice":
        return df
    if level == "patient":
        return aggregate_patients(df)
    raise ValueError(f"level must be one of {LEVELS}, got {level!r}")


def per_fold_metrics(df: pd.DataFrame, *, levels: Sequence[str] = LEVELS) -> pd.DataFrame:
    """Every metric of every (model, repeat, fold) as a tidy table.

    Columns: ``model, repeat, fold, level, class, metric, value``; ``class`` is ``"__all__"`` for the
    multi-class metrics. Undefined values are NaN.
    """
    classes = classes_of(df)
    probs = prob_columns(df)
    rows: list[tuple[Any, ...]] = []
    for level in levels:
        table = _level_table(df, level)
        for (model, repeat, fold), part in table.groupby(["model", "repeat", "fold"], sort=True):
            y_true = part["label"].to_numpy(dtype=object)
            y_prob = part[probs].to_numpy(dtype=float)
            y_pred = predicted_labels(y_prob, classes)
            for cls, scores in one_vs_rest_scores(y_true, y_pred, classes).items():
                rows.extend((model, repeat, fold, level, cls, m, scores[m]) for m in PER_CLASS_METRICS)
            overall = multiclass_scores(y_true, y_prob, classes)
            rows.extend((model, repeat, fold, level, ALL_CLASSES, m, overall[m]) for m in OVERALL_METRICS)
    out = pd.DataFrame(rows, columns=list(PER_FOLD_COLUMNS))
    out["repeat"] = out["repeat"].astype(int)
    out["fold"] = out["fold"].astype(int)
    out["value"] = out["value"].astype(float)
    return out


def mean_std(values: Iterable[float]) -> dict[str, float | int]:
    """``{"mean", "std", "n"}`` over the finite values; std with ddof=1, 0 for one value, NaN for none."""
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if arr.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std, "n": int(arr.size)}


def _aggregate_level(per_fold: pd.DataFrame, classes: Sequence[str]) -> dict[str, Any]:
    per_class: dict[str, dict[str, Any]] = {}
    overall: dict[str, Any] = {}
    groups = {
        key: part["value"].to_numpy() for key, part in per_fold.groupby(["class", "metric"], sort=False)
    }
    for cls in classes:
        per_class[cls] = {m: mean_std(groups.get((cls, m), [])) for m in PER_CLASS_METRICS}
    for m in OVERALL_METRICS:
        overall[m] = mean_std(groups.get((ALL_CLASSES, m), []))
    return {"per_class": per_class, "overall": overall}


def _confusion(table: pd.DataFrame, classes: Sequence[str]) -> list[list[int]]:
    y_pred = predicted_labels(table[prob_columns(table)].to_numpy(dtype=float), classes)
    return confusion_matrix_counts(table["label"].to_numpy(dtype=object), y_pred, classes).tolist()


def _nan_warnings(per_fold: pd.DataFrame, level: str, n_folds: int) -> list[str]:
    undefined = per_fold[per_fold["value"].isna()]
    out = []
    for (cls, metric), part in undefined.groupby(["class", "metric"], sort=True):
        if cls == ALL_CLASSES:
            where, why = "multi-class", "a class absent from those folds' ground truth"
        elif metric == "specificity":
            where, why = f"class {cls}", f"every test case of those folds is {cls}: no negatives"
        else:
            where, why = f"class {cls}", f"{cls} absent from those folds' ground truth"
        out.append(
            f"{level} level: {metric} ({where}) undefined in {len(part)} of {n_folds} folds ({why}); "
            "left out of its mean"
        )
    return out


def _never_predicted_warnings(
    table: pd.DataFrame, classes: Sequence[str], level: str, n_folds: int
) -> list[str]:
    """Classes present in a fold's ground truth but never predicted there (precision 0, which counts)."""
    counts: dict[str, int] = dict.fromkeys(classes, 0)
    probs = prob_columns(table)
    for _, part in table.groupby(["repeat", "fold"], sort=True):
        predicted = set(predicted_labels(part[probs].to_numpy(dtype=float), classes).tolist())
        for cls in set(part["label"]) - predicted:
            if cls in counts:
                counts[cls] += 1
    return [
        f"{level} level: class {cls} present but never predicted in {k} of {n_folds} folds: its precision "
        "and F1 are 0 there and count in the mean"
        for cls, k in counts.items()
        if k
    ]


def _units(table: pd.DataFrame) -> tuple[np.ndarray, str]:
    """The bootstrap unit of each row: its patient, or the slice itself where no row has a patient id."""
    missing = missing_patient(table["patient_id"])
    if missing.all():
        return table["path"].astype(str).to_numpy(dtype=object), "slice"
    ids = table["patient_id"].astype(str).where(~missing, "slice:" + table["path"].astype(str))
    return ids.to_numpy(dtype=object), "patient"


def add_intervals(
    block: dict[str, Any], table: pd.DataFrame, classes: Sequence[str], n_boot: int, seed: int
) -> None:
    """Put 95% bootstrap CIs (``ci95``) next to each mean ± std of ``block``, plus its calibration (ECE)."""
    y_true = table["label"].to_numpy(dtype=object)
    y_prob = table[prob_columns(table)].to_numpy(dtype=float)
    calibration = calibration_bins(y_true, y_prob, classes)
    if n_boot > 0:
        units, unit = _units(table)
        ci = bootstrap_intervals(y_true, y_prob, classes, units, n_boot=n_boot, seed=seed)
        for cls in classes:
            for m in PER_CLASS_METRICS:
                block["per_class"][cls][m]["ci95"] = ci["per_class"][cls][m]
        for m in OVERALL_METRICS:
            block["overall"][m]["ci95"] = ci["overall"][m]
        calibration["ece_ci95"] = ci["ece"]
        block["bootstrap"] = {
            "n_boot": ci["n_boot"],
            "seed": ci["seed"],
            "confidence": ci["confidence"],
            "unit": unit,
            "n_units": ci["n_units"],
            "method": f"percentile interval of the metric on the pooled test predictions, {unit}s resampled "
            "with replacement (all of a unit's rows together)",
        }
    block["calibration"] = calibration


def summarize(
    df: pd.DataFrame,
    *,
    warnings: Sequence[str] = (),
    per_fold: pd.DataFrame | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """The paper's numbers for one model: mean ± std over all folds and repeats, slice and patient level.

    Returns ``{"model", "classes", "n_folds", "n_repeats", "n_samples", "n_patients", "per_class":
    {cls: {metric: {mean, std, n}}}, "overall": {metric: {mean, std, n}}, "confusion_matrix": summed counts
    (rows true, columns predicted), "patient_level": {per_class, overall, confusion_matrix}, "warnings":
    [...]}``.

    Raises:
        ValueError: the table holds several models (use :func:`summarize_by_model`) or no rows.

    ``per_fold`` may pass this model's already computed :func:`per_fold_metrics` to avoid computing it twice.
    Each level also gets ``ci95`` (``[low, high]``) next to every mean ± std: a cluster bootstrap of the
    pooled predictions (``n_boot`` resamples of patients, of slices without ids, ``seed``; recorded in
    ``"bootstrap"``; ``n_boot=0`` skips it) and ``"calibration"`` (ECE and reliability bins,
    :mod:`covidct.evaluation.bootstrap`).
    """
    models = df["model"].unique().tolist()
    if len(models) != 1:
        raise ValueError(
            f"summarize() needs one model, the table has {len(models)}: use summarize_by_model()"
        )
    classes = classes_of(df)
    if per_fold is None:
        per_fold = per_fold_metrics(df)
    folds = df[["repeat", "fold"]].drop_duplicates()
    n_folds = len(folds)
    notes = list(warnings)
    has_patients = not missing_patient(df["patient_id"]).all()
    if not has_patients:
        notes.append("no patient ids: folds and metrics are slice-level; patient level equals slice level")
    slice_pf = per_fold[per_fold["level"] == "slice"]
    patient_pf = per_fold[per_fold["level"] == "patient"]
    patients = aggregate_patients(df)
    notes += _nan_warnings(slice_pf, "slice", n_folds) + _nan_warnings(patient_pf, "patient", n_folds)
    notes += _never_predicted_warnings(df, classes, "slice", n_folds)
    notes += _never_predicted_warnings(patients, classes, "patient", n_folds)
    patient_level = _aggregate_level(patient_pf, classes)
    patient_level["confusion_matrix"] = _confusion(patients, classes)
    add_intervals(patient_level, patients, classes, n_boot, seed)
    slice_level = _aggregate_level(slice_pf, classes)
    add_intervals(slice_level, df, classes, n_boot, seed)
    n_patients = int(df.loc[~missing_patient(df["patient_id"]), "patient_id"].nunique())
    return {
        "model": str(models[0]),
        "classes": classes,
        "n_folds": n_folds,
        "n_repeats": int(folds["repeat"].nunique()),
        "n_samples": int(df["path"].nunique()),
        "n_patients": n_patients,
        "std_ddof": 1,
        **slice_level,
        "confusion_matrix": _confusion(df, classes),
        "patient_level": patient_level,
        "warnings": list(dict.fromkeys(notes)),
    }


def summarize_by_model(
    df: pd.DataFrame,
    *,
    warnings: Sequence[str] = (),
    per_fold: pd.DataFrame | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
) -> dict[str, dict[str, Any]]:
    """``{model: summarize(rows of that model)}``, models in sorted order."""
    if per_fold is None:
        per_fold = per_fold_metrics(df)
    return {
        str(model): summarize(
            part, warnings=warnings, per_fold=per_fold[per_fold["model"] == model], n_boot=n_boot, seed=seed
        )
        for model, part in df.groupby("model", sort=True)
    }


def run_warnings(run_dir: PathLike) -> list[str]:
    """Warnings a run recorded: ``config.json``'s ``"warnings"`` list, ``warnings.json`` or
    ``warnings(.txt)``."""
    run = Path(run_dir)
    found: list[str] = []

    def add(items: Any) -> None:
        if isinstance(items, str):
            items = [items]
        if isinstance(items, list):
            for item in items:
                text = item.get("message", "") if isinstance(item, Mapping) else str(item)
                if str(text).strip():
                    found.append(str(text).strip())

    for name in ("config.json", "warnings.json"):
        path = run / name
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            add(data.get("warnings") if isinstance(data, Mapping) else data)
    for name in ("warnings", "warnings.txt"):
        path = run / name
        if path.is_file():
            add(path.read_text(encoding="utf-8", errors="replace").splitlines())
    return list(dict.fromkeys(found))


def json_safe(obj: Any) -> Any:
    """NaN/inf -> None (strict JSON), numpy scalars -> Python numbers."""
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def format_mean_std(entry: Mapping[str, Any] | None, digits: int = 3, *, ci: bool = False) -> str:
    """``{"mean": 0.9531, "std": 0.0118}`` -> ``"0.953 ± 0.012"``; undefined -> ``"n/a"``.

    ``ci=True`` appends the entry's ``ci95`` where known: ``"0.953 ± 0.012 [0.941, 0.962]"``.
    """
    if not entry:
        return "n/a"
    mean, std = entry.get("mean"), entry.get("std")
    if mean is None or not math.isfinite(mean):
        return "n/a"
    std = 0.0 if std is None or not math.isfinite(std) else std
    text = f"{mean:.{digits}f} ± {std:.{digits}f}"
    bounds = entry.get("ci95") if ci else None
    if bounds and all(b is not None and math.isfinite(b) for b in bounds):
        text += f" [{bounds[0]:.{digits}f}, {bounds[1]:.{digits}f}]"
    return text


@dataclass(frozen=True)
class RunMetrics:
    """A run's metrics recomputed from its saved predictions (what ``covidct.report.run_metrics`` writes).

    ``payload`` is what ``metrics.json`` holds (JSON-safe: NaN as null): the :func:`summarize` dict, or with
    several models ``{"classes", "run_ids", "warnings", "models": {model: summary}}``.
    """

    run_dir: Path
    predictions: pd.DataFrame
    per_fold: pd.DataFrame
    by_model: dict[str, dict[str, Any]]
    classes: list[str]
    run_ids: list[str]
    payload: dict[str, Any]


def run_metrics(run_dir: PathLike, *, n_boot: int = DEFAULT_N_BOOT, seed: int = DEFAULT_SEED) -> RunMetrics:
    """Recompute a run's metrics from its saved predictions (nothing is written).

    ``n_boot``/``seed``: the bootstrap CIs (see :func:`summarize`).

    Raises:
        DataError: no run folder or no (valid) predictions in it.
    """
    run = Path(run_dir)
    df = read_run_predictions(run)
    if df.empty:
        raise DataError(run, "the predictions table has no rows")
    recorded = run_warnings(run)
    per_fold = per_fold_metrics(df)
    by_model = summarize_by_model(df, warnings=recorded, per_fold=per_fold, n_boot=n_boot, seed=seed)
    classes = classes_of(df)
    run_ids = sorted(str(r) for r in df["run_id"].unique() if str(r))
    if len(by_model) == 1:
        payload: dict[str, Any] = {**next(iter(by_model.values())), "run_ids": run_ids}
    else:
        payload = {"classes": classes, "run_ids": run_ids, "warnings": recorded, "models": by_model}
    return RunMetrics(
        run_dir=run,
        predictions=df,
        per_fold=per_fold,
        by_model=by_model,
        classes=classes,
        run_ids=run_ids,
        payload=json_safe(payload),
    )
