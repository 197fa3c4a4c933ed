"""A study's files: the CSV/Markdown tables, ``summary.json`` and ``figures/*.png`` (``covidct compare``).

The tables come from :func:`covidct.evaluation.tables.build_study_tables` (recomputed from the saved
predictions); this module formats and writes them. ``covidct report`` renders the same tables as HTML.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from covidct.evaluation.metrics import PER_CLASS_METRICS
from covidct.evaluation.predictions import model_dirname
from covidct.evaluation.summary import METRIC_TITLES, format_mean_std, json_safe
from covidct.evaluation.tables import MULTICLASS_METRICS, StudyTables, build_study_tables
from covidct.report.figures import plot_accuracy_vs_latency, plot_confusion_matrix, plot_metric_bars
from covidct.report.markdown import md_table as _md_table
from covidct.report.markdown import records
from covidct.utils import atomic_path, write_json_atomic, write_text_atomic

PathLike = str | os.PathLike[str]


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}"
    return str(value)


def format_params(value: Any) -> str:
    """``4924027`` -> ``"4.92 M"``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if not math.isfinite(number) else f"{number / 1e6:.2f} M"


def per_class_table(
    tables: StudyTables, model: str, level: str = "slice", *, ci: bool = False
) -> list[list[str]]:
    """Rows (class, F1, accuracy, sensitivity, specificity, precision, ``mean ± std``): the paper's shape.

    ``ci=True`` adds each value's 95% bootstrap interval (``mean ± std [low, high]``).
    """
    block = tables.summaries[model] if level == "slice" else tables.summaries[model]["patient_level"]
    return [
        [cls, *(format_mean_std(block["per_class"][cls][m], 4, ci=ci) for m in PER_CLASS_METRICS)]
        for cls in tables.classes
    ]


def multiclass_table(tables: StudyTables, level: str = "slice", *, ci: bool = False) -> list[list[str]]:
    """Rows (model, accuracy, macro-F1, balanced accuracy, AUC, weighted F1 as ``mean ± std``).

    ``ci=True`` adds each value's 95% bootstrap interval (``mean ± std [low, high]``).
    """
    rows = []
    for model in tables.models:
        block = tables.summaries[model] if level == "slice" else tables.summaries[model]["patient_level"]
        rows.append(
            [model, *(format_mean_std(block["overall"].get(m), 4, ci=ci) for m in MULTICLASS_METRICS)]
        )
    return rows


def study_markdown(tables: StudyTables) -> str:
    """The whole study as Markdown (``STUDY/study.md``)."""
    cfg = tables.config
    lines = [f"# Comparison study: {tables.study_dir.name}", ""]
    if cfg:
        lines += [
            f"Data `{cfg.get('data')}`; {cfg.get('folds')} folds x {cfg.get('repeats')} repeat(s), seed "
            f"{cfg.get('seed')}; the same folds for every model. Values are mean ± std over all folds.",
            "",
        ]
    for note in [*tables.missing, *tables.warnings]:
        lines.append(f"> **Warning:** {note}")
    lines += ["", "## Models", ""]
    lines += _md_table(
        ["Model", "Parameters", "Input size", "CPU latency (ms, batch 1)", "Accuracy"],
        [
            [
                r.model,
                format_params(r.params),
                _fmt(r.image_size),
                _fmt(r.latency_ms, 1),
                format_mean_std({"mean": r.accuracy, "std": r.accuracy_std}, 4),
            ]
            for r in records(tables.model_info)
        ],
    )
    titles = [METRIC_TITLES[m] for m in MULTICLASS_METRICS]
    for level in ("slice", "patient"):
        lines += [
            "",
            f"## Multi-class ({level} level)",
            "",
            *_md_table(["Model", *titles], multiclass_table(tables, level)),
        ]
    if not tables.wilcoxon.empty:
        lines += [
            "",
            f"## Best model vs the rest: Wilcoxon signed-rank on paired folds ({tables.wilcoxon_metric})",
            "",
        ]
        lines += _md_table(
            ["Model", "Mean", "Std", "Diff vs best", "p", "p (Holm)", "Pairs", "Significant"],
            [
                [
                    r.model + (" (best)" if r.is_best else ""),
                    _fmt(r.mean, 4),
                    _fmt(r.std, 4),
                    _fmt(r.diff_vs_best, 4),
                    _fmt(r.p_value, 4),
                    _fmt(r.p_holm, 4),
                    str(r.n_pairs),
                    "yes" if r.significant else "no",
                ]
                for r in records(tables.wilcoxon)
            ],
        )
    header = ["Class", *(METRIC_TITLES[m] for m in PER_CLASS_METRICS)]
    for model in tables.models:
        lines += [
            "",
            f"## {model}: per class, one-vs-rest (slice level)",
            "",
            *_md_table(header, per_class_table(tables, model)),
        ]
    return "\n".join(lines) + "\n"


def _write_csv(df: pd.DataFrame, path: Path) -> Path:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return path


def save_study_tables(tables: StudyTables) -> list[Path]:
    """Write the tables into the study folder (atomically): CSVs, ``study.md`` and ``summary.json``."""
    study = tables.study_dir
    written = [
        _write_csv(tables.per_fold, study / "per_fold_metrics.csv"),
        _write_csv(tables.per_class, study / "per_class.csv"),
        _write_csv(tables.multiclass, study / "multiclass.csv"),
        _write_csv(tables.model_info, study / "model_table.csv"),
        _write_csv(tables.wilcoxon, study / "wilcoxon.csv"),
    ]
    write_text_atomic(study / "study.md", study_markdown(tables))
    write_json_atomic(
        study / "summary.json",
        json_safe(
            {
                "classes": tables.classes,
                "models": tables.summaries,
                "wilcoxon_metric": tables.wilcoxon_metric,
                "wilcoxon": tables.wilcoxon.to_dict(orient="records"),
                "missing": tables.missing,
                "failures": tables.failures,
            }
        ),
    )
    return [*written, study / "study.md", study / "summary.json"]


def save_study_figures(tables: StudyTables, out_dir: PathLike | None = None) -> dict[str, Path]:
    """Metric bars (accuracy, macro-F1, per-class F1), accuracy vs latency, one confusion matrix per model."""
    out = Path(out_dir) if out_dir is not None else tables.study_dir / "figures"
    figs: dict[str, Path] = {}
    s = tables.summaries
    figs["accuracy"] = plot_metric_bars(
        s, "accuracy", out / "bars_accuracy.png", title="Accuracy (mean ± std)"
    )
    figs["macro_f1"] = plot_metric_bars(
        s, "macro_f1", out / "bars_macro_f1.png", title="Macro F1 (mean ± std)"
    )
    for i, cls in enumerate(tables.classes):
        figs[f"f1_{cls}"] = plot_metric_bars(
            s,
            "f1",
            out / f"bars_f1_class{i}.png",
            cls=cls,
            title=f"F1, {cls} vs rest",
        )
    info = tables.model_info
    if info["latency_ms"].notna().any():
        figs["accuracy_vs_latency"] = plot_accuracy_vs_latency(
            info,
            out / "accuracy_vs_latency.png",
            x="latency_ms",
            y="accuracy",
            yerr="accuracy_std",
            title="Accuracy vs CPU latency (batch 1)",
        )
    for model in tables.models:
        figs[f"confusion_{model}"] = plot_confusion_matrix(
            s[model]["confusion_matrix"],
            tables.classes,
            out / f"confusion_{model_dirname(model)}.png",
            title=f"{model} (all folds)",
        )
    return figs


def save_study_outputs(study_dir: PathLike, *, metric: str = "accuracy") -> StudyTables:
    """Recompute and write every table and figure of a study; returns the tables."""
    tables = build_study_tables(study_dir, metric=metric)
    save_study_tables(tables)
    save_study_figures(tables)
    return tables
