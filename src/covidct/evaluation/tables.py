"""A study's tables, recomputed from its saved per-job predictions (no torch, no models, nothing written).

Inputs: ``STUDY/models/<model>/folds/*/predictions.csv`` (the source of truth), ``STUDY/study.json`` (the
resolved config) and ``STUDY/models.json`` (parameters, input size, measured CPU latency per model; measured,
not derived). A single run folder without ``models/`` (``covidct cv``'s RUN or ``covidct evaluate``'s OUT:
``predictions.csv`` or ``folds/*/predictions.csv`` + ``config.json``) is read as a study of the models in its
predictions table.
Metrics: per-fold metrics, mean ± std, Wilcoxon signed-rank vs the best model on the paired folds.
:mod:`covidct.report.study_tables` writes the CSV/Markdown tables, ``summary.json`` and ``figures/*.png``
into the study folder; ``covidct report`` (:mod:`covidct.report.html`) renders the same tables as HTML.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from covidct.errors import DataError
from covidct.evaluation.metrics import PER_CLASS_METRICS
from covidct.evaluation.predictions import (
    classes_of,
    fold_prediction_files,
    model_dirname,
    read_predictions,
    read_run_predictions,
)
from covidct.evaluation.stats import STATS_COLUMNS, wilcoxon_vs_best
from covidct.evaluation.summary import per_fold_metrics, run_warnings, summarize_by_model

PathLike = str | os.PathLike[str]

#: The multi-class table's columns (issue 6), in order.
MULTICLASS_METRICS: tuple[str, ...] = (
    "accuracy",
    "macro_f1",
    "balanced_accuracy",
    "roc_auc_ovr",
    "weighted_f1",
)
STUDY_FILE = "study.json"
MODELS_FILE = "models.json"
FAILURES_FILE = "failures.json"


@dataclass
class StudyTables:
    """Everything a study reports, as plain tables (one row per model unless noted)."""

    study_dir: Path
    config: dict[str, Any]
    classes: list[str]
    models: list[str]  # models with predictions, in the study's order
    per_fold: pd.DataFrame  # tidy: model, repeat, fold, level, class, metric, value
    summaries: dict[str, dict[str, Any]]  # evaluation.summary.summarize() per model
    per_class: pd.DataFrame  # model, level, class, metric, mean, std, n
    multiclass: pd.DataFrame  # model, level, <metric>, <metric>_std ...
    model_info: (
        pd.DataFrame
    )  # model, timm_name, params, image_size, latency_ms, accuracy, accuracy_std, folds_done
    wilcoxon: pd.DataFrame  # evaluation.stats.wilcoxon_vs_best on ``wilcoxon_metric`` (empty with one model)
    wilcoxon_metric: str
    missing: list[str] = field(default_factory=list)  # expected jobs without predictions
    failures: list[dict[str, Any]] = field(default_factory=list)  # the last run's failed jobs
    warnings: list[str] = field(default_factory=list)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(path, f"cannot read JSON ({exc})") from None


def is_run_folder(study_dir: PathLike) -> bool:
    """A single run (cv or evaluate output) rather than a comparison study: predictions but no ``models/``."""
    study = Path(study_dir)
    return (
        not (study / "models").is_dir()
        and not (study / STUDY_FILE).is_file()
        and ((study / "predictions.csv").is_file() or bool(fold_prediction_files(study)))
    )


def study_models(study_dir: PathLike) -> list[str]:
    """The study's models: from ``study.json`` if present, else the folders under ``STUDY/models`` (a run
    folder: the models of its predictions table)."""
    study = Path(study_dir)
    if is_run_folder(study):
        return sorted(str(m) for m in read_run_predictions(study)["model"].unique())
    config = _read_json(study / STUDY_FILE) or {}
    if config.get("models"):
        return [str(m) for m in config["models"]]
    return sorted(p.name for p in (study / "models").glob("*") if p.is_dir())


def load_study_predictions(study_dir: PathLike, models: list[str] | None = None) -> pd.DataFrame:
    """All models' per-job predictions in one table; the ``model`` column holds the study's model name.

    Raises:
        DataError: no study folder, or no predictions for any model.
    """
    study = Path(study_dir)
    if not study.is_dir():
        raise DataError(study, "no such study folder")
    if is_run_folder(study):
        df = read_run_predictions(study)
        return df if models is None else df[df["model"].isin(models)].reset_index(drop=True)
    tables = []
    for model in models if models is not None else study_models(study):
        files = fold_prediction_files(study / "models" / model_dirname(model))
        if files:
            tables.append(read_predictions(files).assign(model=model))
    if not tables:
        raise DataError(study, "no predictions found (expected models/<model>/folds/*/predictions.csv)")
    classes = [classes_of(t) for t in tables]
    if any(c != classes[0] for c in classes):
        raise DataError(study, f"models were trained on different classes: {classes}")
    return pd.concat(tables, ignore_index=True)


def _per_class_rows(summaries: dict[str, dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for model, summary in summaries.items():
        for level, block in (("slice", summary), ("patient", summary["patient_level"])):
            for cls in summary["classes"]:
                for metric in PER_CLASS_METRICS:
                    entry = block["per_class"][cls][metric]
                    rows.append((model, level, cls, metric, entry["mean"], entry["std"], entry["n"]))
    return pd.DataFrame(rows, columns=["model", "level", "class", "metric", "mean", "std", "n"])


def _multiclass_rows(summaries: dict[str, dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for model, summary in summaries.items():
        for level, block in (("slice", summary), ("patient", summary["patient_level"])):
            row: dict[str, Any] = {"model": model, "level": level}
            for metric in MULTICLASS_METRICS:
                entry = block["overall"].get(metric) or {}
                row[metric] = entry.get("mean", np.nan)
                row[f"{metric}_std"] = entry.get("std", np.nan)
            rows.append(row)
    return pd.DataFrame(rows)


def _number(value: Any) -> float:
    """A measured value, NaN when missing (``None`` in JSON)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _model_info(
    models: list[str], summaries: dict[str, Any], info: dict[str, Any], expected: int
) -> pd.DataFrame:
    rows = []
    for model in models:
        meta = info.get(model, {})
        acc = summaries[model]["overall"]["accuracy"]
        rows.append(
            {
                "model": model,
                "timm_name": meta.get("timm_name", ""),
                "params": _number(meta.get("params")),
                "image_size": _number(meta.get("image_size")),
                "latency_ms": _number(meta.get("latency_ms")),
                "latency_threads": _number(meta.get("latency_threads")),
                "accuracy": acc["mean"],
                "accuracy_std": acc["std"],
                "folds_done": summaries[model]["n_folds"],
                "folds_expected": expected,
            }
        )
    return pd.DataFrame(rows)


def build_study_tables(study_dir: PathLike, *, metric: str = "accuracy") -> StudyTables:
    """Recompute every table of a study from its saved predictions (``metric`` drives the Wilcoxon test)."""
    study = Path(study_dir)
    run = is_run_folder(study)
    config = dict(_read_json(study / ("config.json" if run else STUDY_FILE)) or {})
    env = _read_json(study / "env.json") or {}
    config.update({k: env[k] for k in ("n_samples", "grouped") if k in env})
    order = study_models(study)
    df = load_study_predictions(study, order)
    per_fold = per_fold_metrics(df)
    summaries = summarize_by_model(df, per_fold=per_fold)
    models = [m for m in order if m in summaries] + sorted(set(summaries) - set(order))
    summaries = {m: summaries[m] for m in models}
    expected = int(config.get("folds", 0)) * int(config.get("repeats", 0))
    missing = []
    if expected:
        for model in order:
            done = summaries[model]["n_folds"] if model in summaries else 0
            if done < expected:
                missing.append(f"{model}: {expected - done} of {expected} jobs have no predictions")
    info = _read_json(study / MODELS_FILE) or {}
    failures = _read_json(study / FAILURES_FILE) or []
    wilcoxon = (
        wilcoxon_vs_best(per_fold, metric) if len(models) > 1 else pd.DataFrame(columns=list(STATS_COLUMNS))
    )
    recorded = run_warnings(study) if run else []
    notes = list(dict.fromkeys([*recorded, *(w for s in summaries.values() for w in s.get("warnings", []))]))
    return StudyTables(
        study_dir=study,
        config=config,
        classes=classes_of(df),
        models=models,
        per_fold=per_fold,
        summaries=summaries,
        per_class=_per_class_rows(summaries),
        multiclass=_multiclass_rows(summaries),
        model_info=_model_info(models, summaries, info, expected),
        wilcoxon=wilcoxon,
        wilcoxon_metric=metric,
        missing=missing,
        failures=list(failures),
        warnings=notes,
    )
