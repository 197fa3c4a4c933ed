"""CLI commands ``covidct compare`` (the comparison study), ``covidct report`` (HTML) and ``covidct demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from covidct.cli._common import console, err_console, split_csv


def register(app: typer.Typer) -> None:
    """Add ``compare``, ``report`` and ``demo`` to the main app."""
    app.command("compare")(compare)
    app.command("report")(report)
    app.command("demo")(demo)


def _progress() -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


def _compact(entry: dict[str, Any]) -> str:
    """``0.953±0.012`` (narrow terminals)."""
    from covidct.evaluation.summary import format_mean_std

    return format_mean_std(entry).replace(" ± ", "±")


def _render_result(result: Any) -> None:
    """Jobs summary, the model table and any failures."""
    from rich.table import Table

    from covidct.study.tables import format_params

    console.print(f"{result.total} job(s): {result.ran} run, {result.skipped} already done, "
                  f"{len(result.failures)} failed", markup=False)
    tables = result.tables
    if tables is not None:
        table = Table(title=f"{result.study_dir.name}: mean ± std over folds (slice level)", title_justify="left")
        for column in ("Model", "Params", "Input", "CPU ms", "Accuracy", "Macro F1", "AUC", "p (Holm)"):
            table.add_column(column, justify="left" if column == "Model" else "right", no_wrap=True)
        stats = tables.wilcoxon.set_index("model") if not tables.wilcoxon.empty else None
        for row in tables.model_info.itertuples():
            overall = tables.summaries[row.model]["overall"]
            p = "best" if stats is not None and bool(stats.loc[row.model, "is_best"]) else (
                f"{stats.loc[row.model, 'p_holm']:.3g}" if stats is not None else "")
            latency = "n/a" if row.latency_ms != row.latency_ms else f"{row.latency_ms:.1f}"
            table.add_row(row.model, format_params(row.params), str(row.image_size), latency,
                          _compact(overall["accuracy"]), _compact(overall["macro_f1"]),
                          _compact(overall["roc_auc_ovr"]), p)
        console.print(table)
        for note in tables.missing:
            console.print(f"warning: {note}", style="yellow", markup=False, highlight=False)
        console.print(f"wrote tables and figures into {result.study_dir} (study.md, summary.json, figures/); "
                      f"HTML: covidct report {result.study_dir}", markup=False, highlight=False)
    for outcome in result.failures:
        err_console.print(f"FAILED {outcome.job} after {outcome.attempts} attempt(s): {outcome.error}",
                          style="red", markup=False, highlight=False)
    if result.failures:
        err_console.print("rerun the same command to retry the failed jobs (finished jobs are skipped)",
                          style="yellow")


def compare(
    data: Path = typer.Argument(..., help="Dataset folder (class folders, class/patient folders or a CSV)."),
    out: Path = typer.Option(..., "--out", "-o", help="Study folder (created; rerun to resume)."),
    models: str | None = typer.Option(None, "--models", "-m",
                                      help="paper (the 20), all, or NAME,NAME (paper or timm names). Default paper."),
    folds: int | None = typer.Option(None, "--folds", help="Folds per repeat (default 5)."),
    repeats: int | None = typer.Option(None, "--repeats", help="Repeats of k-fold (default 5)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed for the folds and for training (default 0)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Training epochs per job (default 30)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Batch size (default 32)."),
    image_size: int | None = typer.Option(None, "--image-size", help="Input size in px (default: each model's)."),
    lr: float | None = typer.Option(None, "--lr", help="Adam learning rate (default 1e-4)."),
    pretrained: bool | None = typer.Option(None, "--pretrained/--no-pretrained",
                                           help="Start from pretrained weights (default) or from scratch."),
    weights_dir: Path | None = typer.Option(None, "--weights-dir", help="Folder of <timm_name>.safetensors files."),
    dropout: float | None = typer.Option(None, "--dropout", help="Dropout before the classifier."),
    freeze_backbone: bool | None = typer.Option(None, "--freeze-backbone/--no-freeze-backbone",
                                                help="Train only the classifier head."),
    label_smoothing: float | None = typer.Option(None, "--label-smoothing", help="Default 0.1."),
    class_weighting: str | None = typer.Option(None, "--class-weighting", help="none or balanced."),
    sampler: str | None = typer.Option(None, "--sampler", help="random or balanced."),
    patience: int | None = typer.Option(None, "--patience", help="Early stopping patience (epochs)."),
    augment: bool | None = typer.Option(None, "--augment/--no-augment", help="Paper's augmentation (default on)."),
    val_fraction: float | None = typer.Option(None, "--val-fraction", help="Validation patients (default 0.2)."),
    workers: int | None = typer.Option(None, "--workers", help="Data-loader worker processes."),
    cache: bool | None = typer.Option(None, "--cache/--no-cache", help="Decode images once (default on)."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu or cuda."),
    amp: bool | None = typer.Option(None, "--amp/--no-amp", help="Mixed precision (default: on with CUDA)."),
    channels_last: bool | None = typer.Option(None, "--channels-last/--no-channels-last",
                                              help="Channels-last memory format (default: on with CUDA)."),
    window: str | None = typer.Option(None, "--window", help="DICOM window: lung, mediastinal or WIDTH,LEVEL."),
    executor: str | None = typer.Option(None, "--executor", help="local (default, sequential) or ray."),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Existing Ray cluster (e.g. auto)."),
    cpus_per_job: float | None = typer.Option(None, "--cpus-per-job", help="Ray: CPUs per job (default 1)."),
    gpus_per_job: float | None = typer.Option(None, "--gpus-per-job", help="Ray: GPU fraction per job (default 0)."),
    max_retries: int | None = typer.Option(None, "--max-retries", help="Retries of a failing job (default 1)."),
    latency: bool | None = typer.Option(None, "--latency/--no-latency", help="Measure CPU latency (default on)."),
    config: Path | None = typer.Option(None, "--config", help="A study.json to replay (flags override it)."),
) -> None:
    """The comparison study: every model x every (repeat, fold) of one shared fold plan; resumable."""
    from covidct.config import load_config
    from covidct.study.compare import compare as run_compare
    from covidct.study.config import StudyConfig

    train = dict(epochs=epochs, batch_size=batch_size, image_size=image_size, lr=lr, pretrained=pretrained,
                 weights_dir=str(weights_dir) if weights_dir else None, dropout=dropout,
                 freeze_backbone=freeze_backbone, label_smoothing=label_smoothing, class_weighting=class_weighting,
                 sampler=sampler, patience=patience, augment=augment, val_fraction=val_fraction, workers=workers,
                 cache=cache, device=device, amp=amp, channels_last=channels_last, window=window, seed=seed)
    cfg = load_config(
        StudyConfig, config, data=str(data), out=str(out), models=split_csv(models),
        folds=folds, repeats=repeats, seed=seed, executor=executor, ray_address=ray_address,
        cpus_per_job=cpus_per_job, gpus_per_job=gpus_per_job, max_retries=max_retries, latency=latency, train=train,
    )
    with _progress() as progress:
        task = progress.add_task("study jobs", total=None)

        def on_result(outcome: Any) -> None:
            status = "done" if outcome.ok else "FAILED"
            progress.console.print(f"{status}: {outcome.job}" + ("" if outcome.ok else f" ({outcome.error})"),
                                   markup=False, highlight=False)
            progress.update(task, advance=1)

        result = run_compare(cfg, progress=progress, on_result=on_result)
    _render_result(result)
    if result.failures:
        raise typer.Exit(1)


def report(
    study: Path = typer.Argument(..., help="A study folder written by covidct compare."),
    out: Path | None = typer.Option(None, "--out", "-o", help="HTML file (default STUDY/report.html)."),
    reference: str | None = typer.Option(None, "--reference", help="Show published numbers beside ours: paper."),
) -> None:
    """One self-contained HTML report of a study (tables, statistics, figures embedded)."""
    from covidct.report.html import write_report

    with console.status("recomputing the study's tables and figures..."):
        path = write_report(study, out, reference=reference)
    console.print(f"report: {path}", markup=False, highlight=False)


def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", "-o", help="Demo folder (data, study, report)."),
    models: str | None = typer.Option(None, "--models", help="Default resnet10t,mobilenetv3_small_050."),
    epochs: int | None = typer.Option(None, "--epochs", help="Epochs per job (default 8)."),
    folds: int | None = typer.Option(None, "--folds", help="Folds (default 3)."),
    image_size: int | None = typer.Option(None, "--image-size", help="Input size in px (default 64)."),
    executor: str | None = typer.Option(None, "--executor", help="local (default) or ray."),
) -> None:
    """The main job: synthetic phantoms -> small comparison study -> Grad-CAM -> HTML report."""
    from covidct.study.demo import DemoConfig, run_demo

    overrides = dict(models=tuple(split_csv(models)) if models else None, epochs=epochs, folds=folds,
                     image_size=image_size, executor=executor)
    cfg = DemoConfig(out=str(out), **{k: v for k, v in overrides.items() if v is not None})
    with _progress() as progress:
        task = progress.add_task("demo study jobs", total=None)

        def on_result(outcome: Any) -> None:
            progress.update(task, advance=1)

        result = run_demo(cfg, progress=progress, on_result=on_result,
                          log=lambda msg: progress.console.print(msg, markup=False, highlight=False))
    _render_result(result.study)
    if result.explanations is not None:
        console.print(f"explanations: {result.explanations}", markup=False, highlight=False)
    console.print(f"\nHTML report: {result.report}", style="bold green", markup=False, highlight=False)
    if result.study.failures:
        raise typer.Exit(1)
