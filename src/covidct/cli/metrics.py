"""CLI command ``covidct metrics RUN``: recompute a run's metrics from its saved predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from covidct.cli._output import FormatOption, OutputFormat, info_console, print_renderable, write_records
from covidct.errors import ConfigError

LEVEL_CHOICES = ("slice", "patient", "both")
RECORD_COLUMNS = ("model", "level", "class", "metric", "mean", "std", "ci_low", "ci_high")
Level = Annotated[str, typer.Option("--level", help="Which tables to print: slice, patient or both.")]


def _per_class_table(title: str, block: dict[str, Any], classes: list[str]) -> Table:
    from covidct.evaluation.metrics import PER_CLASS_METRICS
    from covidct.evaluation.summary import METRIC_TITLES, format_mean_std

    table = Table(title=title, title_justify="left")
    table.add_column("Class", style="bold", no_wrap=True)
    for metric in PER_CLASS_METRICS:
        table.add_column(METRIC_TITLES[metric], justify="right", overflow="fold")
    for cls in classes:
        table.add_row(cls, *(format_mean_std(block["per_class"][cls].get(m)) for m in PER_CLASS_METRICS))
    return table


def _overall_table(title: str, rows: list[tuple[str, dict[str, Any]]]) -> Table:
    from covidct.evaluation.metrics import OVERALL_METRICS
    from covidct.evaluation.summary import METRIC_TITLES, format_mean_std

    table = Table(title=title, title_justify="left")
    table.add_column("", style="bold", no_wrap=True)
    for metric in OVERALL_METRICS:
        table.add_column(METRIC_TITLES[metric], justify="right", overflow="fold")
    for label, block in rows:
        table.add_row(label, *(format_mean_std(block["overall"].get(m)) for m in OVERALL_METRICS))
    return table


def render_summary(summary: dict[str, Any], level: str) -> list[Any]:
    """Rich renderables for one model's summary at the chosen level(s)."""
    model = summary.get("model") or "model"
    classes = summary["classes"]
    head = f"{model}: {summary['n_folds']} folds, {summary['n_repeats']} repeat(s), mean ± std"
    out: list[Any] = []
    levels = [("slice", summary), ("patient", summary["patient_level"])]
    chosen = [(name, block) for name, block in levels if level in (name, "both")]
    for name, block in chosen:
        out.append(_per_class_table(f"{head} | per class, {name} level (one-vs-rest)", block, classes))
    out.append(_overall_table(f"{head} | multi-class", [(name, block) for name, block in chosen]))
    out.extend(_interval_lines(chosen))
    return out


def _interval_lines(levels: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """One plain line per level: accuracy with its 95% bootstrap CI, and the ECE."""
    from covidct.evaluation.summary import format_mean_std

    lines = []
    for name, block in levels:
        boot, cal = block.get("bootstrap"), block.get("calibration") or {}
        if not boot:
            continue
        ece = cal.get("ece")
        ece_text = f"; ECE {ece:.3f}" if isinstance(ece, float) else ""
        lines.append(
            Text(
                f"{name} level: accuracy {format_mean_std(block['overall'].get('accuracy'), ci=True)} "
                f"(mean ± std over folds [95% CI of the pooled accuracy: {boot['n_boot']} bootstrap "
                f"resamples of {boot['n_units']} {boot['unit']}s, seed {boot['seed']}]){ece_text}"
            )
        )
    return lines


def summary_records(summary: dict[str, Any], level: str) -> list[dict[str, Any]]:
    """The numbers of :func:`render_summary` as tidy records: ``model, level, class, metric, mean, std,
    ci_low, ci_high`` (``class`` is ``"__all__"`` for the multi-class metrics, as in ``per_fold_metrics``)."""
    from covidct.evaluation.metrics import OVERALL_METRICS, PER_CLASS_METRICS

    model = summary.get("model") or "model"
    records: list[dict[str, Any]] = []

    def add(name: str, cls: str, metric: str, entry: dict[str, Any] | None) -> None:
        entry = entry or {}
        bounds = entry.get("ci95") or (None, None)
        records.append(
            {
                "model": model,
                "level": name,
                "class": cls,
                "metric": metric,
                "mean": entry.get("mean"),
                "std": entry.get("std"),
                "ci_low": bounds[0],
                "ci_high": bounds[1],
            }
        )

    for name, block in (("slice", summary), ("patient", summary["patient_level"])):
        if level not in (name, "both"):
            continue
        for cls in summary["classes"]:
            for metric in PER_CLASS_METRICS:
                add(name, cls, metric, block["per_class"][cls].get(metric))
        for metric in OVERALL_METRICS:
            add(name, "__all__", metric, block["overall"].get(metric))
    return records


def print_summaries(summaries: list[dict[str, Any]], level: str, fmt: OutputFormat) -> None:
    """One or more model summaries: Rich tables, or all their records as one csv/json document."""
    if fmt is OutputFormat.table:
        for summary in summaries:
            for renderable in render_summary(summary, level):
                print_renderable(renderable)
    else:
        write_records([r for s in summaries for r in summary_records(s, level)], fmt, columns=RECORD_COLUMNS)


def check_level(level: str) -> None:
    if level not in LEVEL_CHOICES:
        raise ConfigError(f"--level must be one of {', '.join(LEVEL_CHOICES)}, got {level!r}")


def register(app: typer.Typer) -> None:
    """Add ``metrics`` to the main app."""
    app.command("metrics")(metrics)


def metrics(
    run: Annotated[Path, typer.Argument(help="Run folder with predictions.csv or folds/*/predictions.csv.")],
    level: Level = "both",
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Recompute every metric from a run's saved predictions (metrics.json, metrics.md, PNGs)."""
    from covidct.report.run_metrics import compute_run_metrics

    check_level(level)
    info = info_console(fmt)
    payload = compute_run_metrics(run)
    summaries = payload["models"] if "models" in payload else {payload.get("model", ""): payload}
    print_summaries(list(summaries.values()), level, fmt)
    for summary in summaries.values():
        for note in summary.get("warnings", []):
            info.print(f"warning: {note}", style="yellow", markup=False, highlight=False)
    info.print(f"wrote {run / 'metrics.json'}, {run / 'metrics.md'} and figures", markup=False)
