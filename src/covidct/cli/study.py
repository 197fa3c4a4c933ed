"""CLI commands ``covidct compare`` (the comparison study), ``covidct report`` (HTML) and ``covidct demo``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from covidct.cli._common import console, err_console, split_csv
from covidct.cli._output import FormatOption, OutputFormat, info_console, print_renderable, write_records
from covidct.cli.train import (  # the training options of `covidct train`/`cv`, shared
    Amp,
    Augment,
    BackboneLrScale,
    BatchSize,
    Cache,
    ClassWeighting,
    Crop,
    Device,
    Dropout,
    Epochs,
    FeatureCache,
    Freeze,
    GroupNearDuplicates,
    HeadWarmup,
    ImageSize,
    Lr,
    NearDuplicateThreshold,
    NoAugment,
    Patience,
    PreciseBn,
    Pretrained,
    Rotation,
    Sampler,
    Standardize,
    ValFraction,
    WeightsDir,
    Workers,
    train_options,
)
from covidct.config import load_config
from covidct.study.demo_config import DemoConfig


def register(app: typer.Typer) -> None:
    """Add ``compare``, ``report`` and ``demo`` to the main app."""
    app.command("compare")(compare)
    app.command("report")(report)
    app.command("demo")(demo)


def _progress() -> Progress:
    """Job progress on stderr (as for train and cv): stdout keeps the result."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    )


def _num(value: float, digits: int) -> str:
    return "n/a" if value != value else f"{value:.{digits}f}"  # NaN: not measured


def _compact(entry: dict[str, Any]) -> str:
    """``0.953±0.012`` (narrow terminals)."""
    from covidct.evaluation.summary import format_mean_std

    return format_mean_std(entry).replace(" ± ", "±")


STUDY_METRICS = {"accuracy": "Accuracy", "macro_f1": "Macro F1", "roc_auc_ovr": "AUC"}
STUDY_COLUMNS = (
    "model",
    "params",
    "input_size",
    "cpu_ms",
    *(f"{m}_{s}" for m in STUDY_METRICS for s in ("mean", "std")),
    "p_holm",
    "is_best",
)


def study_records(tables: Any) -> list[dict[str, Any]]:
    """One record per model of a study's summary (slice level, mean and std over folds, Holm-adjusted p)."""
    stats = tables.wilcoxon.set_index("model") if not tables.wilcoxon.empty else None
    records = []
    for row in tables.model_info.itertuples():
        overall = tables.summaries[row.model]["overall"]
        record: dict[str, Any] = {
            "model": row.model,
            "params": row.params,
            "input_size": row.image_size,
            "cpu_ms": row.latency_ms,
        }
        for metric in STUDY_METRICS:
            entry = overall.get(metric) or {}
            record[f"{metric}_mean"], record[f"{metric}_std"] = entry.get("mean"), entry.get("std")
        record["p_holm"] = None if stats is None else stats.loc[row.model, "p_holm"]
        record["is_best"] = None if stats is None else bool(stats.loc[row.model, "is_best"])
        records.append(record)
    return records


def _study_table(result: Any) -> Table:
    from covidct.report.study_tables import format_params

    tables = result.tables
    table = Table(title=f"{result.study_dir.name}: mean ± std over folds (slice level)", title_justify="left")
    for column in ("Model", "Params", "Input", "CPU ms", *STUDY_METRICS.values(), "p (Holm)"):
        name = column == "Model"
        table.add_column(column, justify="left" if name else "right", no_wrap=name, overflow="fold")
    for record in study_records(tables):
        overall = tables.summaries[record["model"]]["overall"]
        p = "" if record["p_holm"] is None else ("best" if record["is_best"] else f"{record['p_holm']:.3g}")
        table.add_row(
            record["model"],
            format_params(record["params"]),
            _num(record["input_size"], 0),
            _num(record["cpu_ms"], 1),
            *(_compact(overall[metric]) for metric in STUDY_METRICS),
            p,
        )
    return table


def _render_result(result: Any, fmt: OutputFormat = OutputFormat.table) -> None:
    """Jobs summary, the model table (or its csv/json records) and any failures."""
    info = info_console(fmt)
    info.print(
        f"{result.total} job(s): {result.ran} run, {result.skipped} already done, "
        f"{len(result.failures)} failed",
        markup=False,
    )
    tables = result.tables
    if tables is not None:
        if fmt is OutputFormat.table:
            print_renderable(_study_table(result))
        else:
            write_records(study_records(tables), fmt, columns=STUDY_COLUMNS)
        for note in tables.missing:
            info.print(f"warning: {note}", style="yellow", markup=False, highlight=False)
        info.print(
            f"wrote tables and figures into {result.study_dir} (study.md, summary.json, figures/); "
            f"HTML: covidct report {result.study_dir}",
            markup=False,
            highlight=False,
        )
    for outcome in result.failures:
        err_console.print(
            f"FAILED {outcome.job} after {outcome.attempts} attempt(s): {outcome.error}",
            style="red",
            markup=False,
            highlight=False,
        )
    if result.failures:
        err_console.print(
            "rerun the same command to retry the failed jobs (finished jobs are skipped)", style="yellow"
        )


_C = "Cluster (Ray)"


def compare(
    data: Annotated[
        Path, typer.Argument(help="Dataset folder (class folders, class/patient folders or a CSV).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Study folder (created; rerun to resume).")],
    models: Annotated[
        str | None,
        typer.Option(
            "--models",
            "-m",
            help="paper (the 20), all (every registered model) or NAME,NAME (paper or timm names) "
            "(default: paper).",
        ),
    ] = None,
    folds: Annotated[int | None, typer.Option(help="Folds per repeat (default: 5).")] = None,
    repeats: Annotated[int | None, typer.Option(help="Repeats (default: 5).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the folds and of training (default: 0).")] = None,
    group_near_duplicates: GroupNearDuplicates = None,
    near_duplicate_threshold: NearDuplicateThreshold = None,
    epochs: Epochs = None,
    batch_size: BatchSize = None,
    image_size: ImageSize = None,
    lr: Lr = None,
    pretrained: Pretrained = None,
    weights_dir: WeightsDir = None,
    dropout: Dropout = None,
    freeze_backbone: Freeze = None,
    feature_cache: FeatureCache = None,
    backbone_lr_scale: BackboneLrScale = None,
    head_warmup: HeadWarmup = None,
    recalibrate_bn: PreciseBn = None,
    class_weighting: ClassWeighting = None,
    sampler: Sampler = None,
    patience: Patience = None,
    augment: Augment = None,
    no_augment: NoAugment = None,
    rotation: Rotation = None,
    val_fraction: ValFraction = None,
    workers: Workers = None,
    cache: Cache = None,
    device: Device = None,
    amp: Amp = None,
    crop: Crop = None,
    standardize: Standardize = None,
    executor: Annotated[
        str | None, typer.Option(help="local (sequential) or ray (default: local).", rich_help_panel=_C)
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="An existing Ray cluster (auto, ray://HEAD:10001); else a local instance.",
            rich_help_panel=_C,
        ),
    ] = None,
    cpus_per_job: Annotated[
        float | None, typer.Option("--cpus-per-job", help="CPUs per job (default: 1).", rich_help_panel=_C)
    ] = None,
    gpus_per_job: Annotated[
        float | None,
        typer.Option("--gpus-per-job", help="GPU fraction per job (default: 0).", rich_help_panel=_C),
    ] = None,
    max_retries: Annotated[
        int | None, typer.Option("--max-retries", help="Retries of a failing job (default: 1).")
    ] = None,
    latency: Annotated[
        bool | None,
        typer.Option("--latency/--no-latency", help="Measure CPU latency per model (default: yes)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="A STUDY/study.json to replay; flags override (training flags: its per-model "
            "model_train options too).",
        ),
    ] = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """The comparison study: every model x every (repeat, fold) of one shared fold plan; resumable."""
    from covidct.study.compare import compare as run_compare
    from covidct.study.config import StudyConfig

    train = train_options(locals())
    cfg = load_config(
        StudyConfig,
        config,
        data=str(data),
        out=str(out),
        models=split_csv(models),
        folds=folds,
        repeats=repeats,
        seed=seed,
        group_near_duplicates=group_near_duplicates,
        near_duplicate_threshold=near_duplicate_threshold,
        executor=executor,
        ray_address=ray_address,
        cpus_per_job=cpus_per_job,
        gpus_per_job=gpus_per_job,
        max_retries=max_retries,
        latency=latency,
        train=train,
    )
    if train and cfg.model_train:  # a training flag overrides every model's options
        cfg = replace(cfg, model_train=tuple((m, replace(t, **train)) for m, t in cfg.model_train))
    with _progress() as progress:
        task = progress.add_task("study jobs", total=None)

        def on_result(outcome: Any) -> None:
            status = "done" if outcome.ok else "FAILED"
            progress.console.print(
                f"{status}: {outcome.job}" + ("" if outcome.ok else f" ({outcome.error})"),
                markup=False,
                highlight=False,
            )
            progress.update(task, advance=1)

        result = run_compare(cfg, progress=progress, on_result=on_result)
    _render_result(result, fmt)
    if result.failures:
        raise typer.Exit(1)


def report(
    study: Annotated[Path, typer.Argument(help="A study folder written by covidct compare.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="HTML file (default: STUDY/report.html).")
    ] = None,
    reference: Annotated[
        str | None, typer.Option("--reference", help="Show published numbers beside ours: paper.")
    ] = None,
) -> None:
    """One self-contained HTML report of a study (tables, statistics, figures embedded)."""
    from covidct.report.html import write_report

    with console.status("recomputing the study's tables and figures..."):
        path = write_report(study, out, reference=reference)
    console.print(f"report: {path}", markup=False, highlight=False)


_DEMO = DemoConfig()  # the help's defaults


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Demo folder (data, study, report).")] = Path(
        _DEMO.out
    ),
    models: Annotated[
        str | None,
        typer.Option("--models", help=f"Models trained from scratch (default: {','.join(_DEMO.models)})."),
    ] = None,
    pretrained_models: Annotated[
        str | None,
        typer.Option(
            "--pretrained-models",
            help="ImageNet-pretrained models fine-tuned beside them when their weights are on this machine "
            f"(default: {','.join(_DEMO.pretrained_models)}; none for none).",
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            "--epochs",
            help=f"Epochs per from-scratch job (default: {_DEMO.epochs}; "
            f"fine-tuning: {_DEMO.pretrained_epochs}).",
        ),
    ] = None,
    folds: Annotated[int | None, typer.Option("--folds", help=f"Folds (default: {_DEMO.folds}).")] = None,
    image_size: Annotated[
        int | None, typer.Option("--image-size", help=f"Input size in px (default: {_DEMO.image_size}).")
    ] = None,
    executor: Annotated[
        str | None, typer.Option("--executor", help=f"local or ray (default: {_DEMO.executor}).")
    ] = None,
) -> None:
    """The main job: synthetic phantoms -> small comparison study -> Grad-CAM -> HTML report."""
    from covidct.study.demo import run_demo

    pretrained = split_csv(pretrained_models) if pretrained_models else None
    overrides: dict[str, Any] = dict(
        models=tuple(split_csv(models) or ()) if models else None,
        pretrained_models=None if pretrained is None else tuple(m for m in pretrained if m.lower() != "none"),
        epochs=epochs,
        folds=folds,
        image_size=image_size,
        executor=executor,
    )
    cfg = DemoConfig(out=str(out), **{k: v for k, v in overrides.items() if v is not None})
    with _progress() as progress:
        task = progress.add_task("demo study jobs", total=None)

        def on_result(outcome: Any) -> None:
            progress.update(task, advance=1)

        result = run_demo(
            cfg,
            progress=progress,
            on_result=on_result,
            log=lambda msg: progress.console.print(msg, markup=False, highlight=False),
        )
    _render_result(result.study)
    if result.explanations is not None:
        console.print(f"explanations: {result.explanations}", markup=False, highlight=False)
    console.print(f"\nHTML report: {result.report}", style="bold green", markup=False, highlight=False)
    if result.study.failures:
        raise typer.Exit(1)
