"""CLI command ``covidct evaluate MODEL_OR_RUN DATA``: external evaluation of a trained model or CV run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from covidct.cli._common import BACKEND_HELP, PRECISION_HELP
from covidct.cli._output import FormatOption, OutputFormat, info_console
from covidct.cli.metrics import Level, print_summaries


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` to the main app."""
    app.command("evaluate")(evaluate)


def evaluate(
    model: Annotated[
        Path,
        typer.Argument(
            help="A checkpoint (.pt), an ONNX model, a train run folder (RUN/best.pt) or a CV run folder "
            "(its fold models averaged as an ensemble)."
        ),
    ],
    data: Annotated[
        Path,
        typer.Argument(
            help="Labelled data: class folders, class/patient folders (DICOM series too) or a CSV."
        ),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder (default: ./evaluation).")
    ] = None,
    level: Level = "both",
    mapping: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            help="FROM=TO: rename a data label or a model class (repeatable), e.g. --map CAP=non-COVID; "
            "model classes mapped together have their probabilities summed.",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Slices per forward pass.")] = 16,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    window: Annotated[
        str | None,
        typer.Option(help="CT window for DICOM/NIfTI: lung, mediastinal or W,L (default: the model's)."),
    ] = None,
    fmt: FormatOption = OutputFormat.table,
    backend: Annotated[str | None, typer.Option("--backend", help=BACKEND_HELP)] = None,
    precision: Annotated[str, typer.Option("--precision", help=PRECISION_HELP)] = "auto",
) -> None:
    """Score a model on a labelled dataset it was not trained on: predictions table, metrics, figures.

    The output folder holds predictions.csv (with labels), metrics.json/metrics.md (the same code as cv),
    confusion matrices and ROC curves; `covidct report OUT` renders it. Unreadable files are skipped.
    """
    from covidct.inference.evaluate import EvaluateConfig, parse_mapping
    from covidct.inference.evaluate import evaluate as evaluate_api
    from covidct.report.run_metrics import write_run_metrics

    cfg = EvaluateConfig(
        model=str(model),
        data=str(data),
        out=str(out or Path("evaluation")),
        level=level,
        mapping=parse_mapping(mapping),
        batch_size=batch_size,
        device=device,
        window=window,
        backend=backend,
        precision=precision,
    )
    info = info_console(fmt)
    with info.status(f"scoring {model} on {data} ..."):
        result = evaluate_api(cfg)
        if result.run_metrics is not None:
            write_run_metrics(result.run_metrics)
    if result.precision_note:
        info.print(f"note: {result.precision_note}", style="yellow", markup=False, highlight=False)
    print_summaries([result.metrics], level, fmt)
    for note in result.warnings:
        info.print(f"warning: {note}", style="yellow", markup=False, highlight=False)
    for path, reason in result.skipped[:10]:
        info.print(f"skipped: {path}: {reason}", style="yellow", markup=False, highlight=False)
    if len(result.skipped) > 10:
        info.print(f"... and {len(result.skipped) - 10} more skipped", style="yellow")
    what = f"ensemble of {len(result.models)} models" if len(result.models) > 1 else str(result.models[0])
    info.print(
        f"{what} ({result.backend} {result.precision}): {result.n_slices} slices, "
        f"{result.n_patients} patients, classes {', '.join(result.classes)}. Results in {result.out}",
        markup=False,
        highlight=False,
    )
