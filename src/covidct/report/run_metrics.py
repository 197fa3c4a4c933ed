"""A run's metric files: ``metrics.json``, ``metrics.md``, ``per_fold_metrics.csv`` and the figures.

The numbers come from :func:`covidct.evaluation.summary.run_metrics` (pure computation); this module only
writes them. ``covidct cv``, ``covidct evaluate`` and ``covidct metrics RUN`` call it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from covidct.evaluation.bootstrap import DEFAULT_N_BOOT, DEFAULT_SEED
from covidct.evaluation.metrics import OVERALL_METRICS, PER_CLASS_METRICS
from covidct.evaluation.predictions import missing_patient, model_dirname
from covidct.evaluation.summary import METRIC_TITLES, RunMetrics, format_mean_std, run_metrics
from covidct.report.figures import plot_confusion_matrix, plot_reliability, plot_roc
from covidct.report.markdown import md_table as _md_table
from covidct.utils import atomic_path, write_json_atomic, write_text_atomic

PathLike = str | os.PathLike[str]


def _md_per_class(block: Mapping[str, Any], classes: Sequence[str]) -> list[str]:
    header = ["Class", *(METRIC_TITLES[m] for m in PER_CLASS_METRICS)]
    rows = (
        [cls, *(format_mean_std(block["per_class"][cls].get(m), ci=True) for m in PER_CLASS_METRICS)]
        for cls in classes
    )
    return _md_table(header, rows)


def _md_confusion(cm: Sequence[Sequence[int]], classes: Sequence[str]) -> list[str]:
    header = ["True \\ Predicted", *classes]
    return _md_table(header, ([cls, *(str(v) for v in row)] for cls, row in zip(classes, cm, strict=False)))


def _md_bootstrap_note(summary: Mapping[str, Any]) -> str:
    boot = summary.get("bootstrap")
    if not boot:
        return ""
    return (
        f" [low, high] is the {100 * boot['confidence']:.0f}% bootstrap interval of the metric on the pooled "
        f"test predictions ({boot['n_boot']} resamples of {boot['n_units']} {boot['unit']}s, seed "
        f"{boot['seed']})."
    )


def _finite(value: Any) -> bool:
    return value is not None and math.isfinite(value)


def _md_calibration(levels: Sequence[tuple[str, Mapping[str, Any]]]) -> list[str]:
    rows = []
    for label, block in levels:
        cal = block.get("calibration")
        if not cal:
            continue
        ece = f"{cal['ece']:.3f}" if _finite(cal.get("ece")) else "n/a"
        bounds = cal.get("ece_ci95") or []
        if len(bounds) == 2 and all(_finite(b) for b in bounds):
            ece += f" [{bounds[0]:.3f}, {bounds[1]:.3f}]"
        rows.append([label, ece, str(cal.get("n_bins"))])
    if not rows:
        return []
    return [
        "### Calibration (pooled test predictions; reliability diagram in reliability*.png)",
        "",
        *_md_table(["Level", "Expected calibration error (top label)", "Bins"], rows),
        "",
    ]


def summary_markdown(summary: Mapping[str, Any], *, title: str | None = None) -> str:
    """One model's summary as Markdown tables shaped like the paper's (rows = classes)."""
    classes = summary["classes"]
    name = summary.get("model") or "model"
    lines = [f"## {title or name}", ""]
    lines.append(
        f"{summary['n_folds']} folds ({summary['n_repeats']} repeat(s)), {summary['n_samples']} slices, "
        f"{summary['n_patients']} patients. Values are mean ± std (ddof=1) over all folds and repeats."
        + _md_bootstrap_note(summary)
    )
    lines.append("")
    for note in summary.get("warnings", []):
        lines.append(f"> **Warning:** {note}")
    if summary.get("warnings"):
        lines.append("")
    lines += ["### Per class, slice level (one-vs-rest)", "", *_md_per_class(summary, classes), ""]
    header = ["Level", *(METRIC_TITLES[m] for m in OVERALL_METRICS)]
    levels = [("Slice", summary), ("Patient", summary["patient_level"])]
    rows = (
        [label, *(format_mean_std(block["overall"].get(m), ci=True) for m in OVERALL_METRICS)]
        for label, block in levels
    )
    lines += ["### Multi-class", "", *_md_table(header, rows), ""]
    lines += _md_calibration(levels)
    lines += [
        "### Per class, patient level (mean probability per patient)",
        "",
        *_md_per_class(summary["patient_level"], classes),
        "",
    ]
    lines += [
        "### Confusion matrix, slice level (summed over folds and repeats)",
        "",
        *_md_confusion(summary["confusion_matrix"], classes),
        "",
    ]
    lines += [
        "### Confusion matrix, patient level",
        "",
        *_md_confusion(summary["patient_level"]["confusion_matrix"], classes),
        "",
    ]
    return "\n".join(lines)


def write_run_metrics(metrics: RunMetrics) -> dict[str, Any]:
    """Write a run's metric files into its folder; returns what ``metrics.json`` holds.

    Writes ``metrics.json``, ``metrics.md``, ``per_fold_metrics.csv``, ``confusion_matrix.png``
    (+ ``confusion_matrix_patient.png`` when rows have patient ids), ``roc.png`` and ``reliability.png``
    (suffixed ``_<model>`` with several models).
    """
    run = metrics.run_dir
    df = metrics.predictions
    classes = metrics.classes
    single = len(metrics.by_model) == 1
    md = [f"# Metrics: {run.name}", ""]
    if metrics.run_ids:
        md += [f"Run id(s): {', '.join(metrics.run_ids)}", ""]
    for model, summary in metrics.by_model.items():
        suffix = "" if single else f"_{model_dirname(model)}"
        part = df[df["model"] == model]
        plot_confusion_matrix(
            summary["confusion_matrix"],
            classes,
            run / f"confusion_matrix{suffix}.png",
            title=f"{model or 'model'}: confusion matrix (slice level)",
        )
        if not missing_patient(part["patient_id"]).all():
            plot_confusion_matrix(
                summary["patient_level"]["confusion_matrix"],
                classes,
                run / f"confusion_matrix_patient{suffix}.png",
                title=f"{model or 'model'}: confusion matrix (patient level)",
            )
        plot_roc(part, run / f"roc{suffix}.png", title=f"{model or 'model'}: ROC one-vs-rest (pooled folds)")
        plot_reliability(
            summary["calibration"],
            run / f"reliability{suffix}.png",
            title=f"{model or 'model'}: reliability (slice level, pooled folds)",
        )
        md += [summary_markdown(summary), ""]
    with atomic_path(run / "per_fold_metrics.csv") as tmp:
        metrics.per_fold.to_csv(tmp, index=False)
    write_json_atomic(run / "metrics.json", metrics.payload)
    write_text_atomic(run / "metrics.md", "\n".join(md).rstrip() + "\n")
    return metrics.payload


def compute_run_metrics(
    run_dir: PathLike, *, n_boot: int = DEFAULT_N_BOOT, seed: int = DEFAULT_SEED
) -> dict[str, Any]:
    """Recompute a run's metrics from its saved predictions and write them (:func:`write_run_metrics`).

    Returns what ``metrics.json`` holds. ``n_boot``/``seed``: the bootstrap CIs.

    Raises:
        DataError: no run folder or no (valid) predictions in it.
    """
    return write_run_metrics(run_metrics(run_dir, n_boot=n_boot, seed=seed))
