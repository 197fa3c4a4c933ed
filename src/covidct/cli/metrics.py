"""CLI command ``covidct metrics RUN``: recompute a run's metrics from its saved predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

LEVEL_CHOICES = ("slice", "patient", "both")


def _per_class_table(title: str, block: dict[str, Any], classes: list[str]) -> Any:
    from rich.table import Table

    from covidct.evaluation.metrics import PER_CLASS_METRICS
    from covidct.evaluation.summary import METRIC_TITLES, format_mean_std

    table = Table(title=title, title_justify="left")
    table.add_column("Class", style="bold")
    for metric in PER_CLASS_METRICS:
        table.add_column(METRIC_TITLES[metric], justify="right")
    for cls in classes:
        table.add_row(cls, *(format_mean_std(block["per_class"][cls].get(m)) for m in PER_CLASS_METRICS))
    return table


def _overall_table(title: str, rows: list[tuple[str, dict[str, Any]]]) -> Any:
    from rich.table import Table

    from covidct.evaluation.metrics import OVERALL_METRICS
    from covidct.evaluation.summary import METRIC_TITLES, format_mean_std

    table = Table(title=title, title_justify="left")
    table.add_column("", style="bold")
    for metric in OVERALL_METRICS:
        table.add_column(METRIC_TITLES[metric], justify="right")
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
    from rich.text import Text

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


def register(app: typer.Typer) -> None:
    """Add ``metrics`` to the main app."""

    @app.command()
    def metrics(
        run: Path = typer.Argument(..., help="Run folder with predictions.csv or folds/*/predictions.csv."),
        level: str = typer.Option("both", "--level", help="Which tables to print: slice, patient or both."),
    ) -> None:
        """Recompute every metric from a run's saved predictions (metrics.json, metrics.md, PNGs)."""
        from covidct.cli._common import console
        from covidct.errors import ConfigError
        from covidct.report.run_metrics import compute_run_metrics

        if level not in LEVEL_CHOICES:
            raise ConfigError(f"--level must be one of {', '.join(LEVEL_CHOICES)}, got {level!r}")
        payload = compute_run_metrics(run)
        summaries = payload["models"] if "models" in payload else {payload.get("model", ""): payload}
        for summary in summaries.values():
            for renderable in render_summary(summary, level):
                console.print(renderable)
            for note in summary.get("warnings", []):
                console.print(f"warning: {note}", style="yellow", markup=False, highlight=False)
        console.print(f"wrote {run / 'metrics.json'}, {run / 'metrics.md'} and figures", markup=False)
