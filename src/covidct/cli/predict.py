"""CLI commands ``covidct predict``, ``covidct export`` and ``covidct bench`` (issue #5)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import Progress
from rich.table import Table

from covidct.cli._common import (
    Backend,
    Precision,
    check_out,
    console,
    err_console,
    report_precision,
    split_csv,
)
from covidct.cli._output import print_renderable
from covidct.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd


def register(app: typer.Typer) -> None:
    """Add ``predict``, ``export`` and ``bench`` to the main app."""
    app.command("predict")(predict)
    app.command("export")(export)
    app.command("bench")(bench)


def predict(
    model: Annotated[Path, typer.Argument(help="A covidct checkpoint (.pt) or an exported model (.onnx).")],
    inputs: Annotated[
        list[Path], typer.Argument(help="Images, folders (recursive), DICOM series folders, NIfTI volumes.")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="preds.csv (+ preds.patients.csv) or preds.json.")
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", "-b", min=1, help="Slices per forward pass.")
    ] = 8,
    backend: Backend = None,
    precision: Precision = "auto",
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="CPU threads (default: physical cores).")
    ] = None,
    window: Annotated[
        str | None, typer.Option("--window", help="CT window override: lung, mediastinal or W,L.")
    ] = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="Also write Grad-CAM overlays (torch checkpoints only).")
    ] = False,
    explain_dir: Annotated[
        Path | None,
        typer.Option(
            "--explain-dir", help="Where --explain writes (default: <out stem>.cams/ or ./covidct-cams/)."
        ),
    ] = None,
    show_slices: Annotated[
        int, typer.Option("--show-slices", min=0, help="Print slice rows when there are at most N.")
    ] = 20,
) -> None:
    """Per-slice probabilities and a per-patient/series prediction (mean slice probability, slice votes)."""
    from covidct.inference.load import load_predictor

    if out is not None and out.suffix.lower() not in (".csv", ".json"):
        raise ConfigError(f"{out}: --out must end in .csv or .json")
    if explain and model.suffix.lower() == ".onnx":
        raise ConfigError("--explain needs a torch checkpoint (Grad-CAM uses gradients); got an .onnx model")
    check_out(out, folder=False)
    if explain:
        check_out(explain_dir, folder=True, option="--explain-dir")
    predictor = load_predictor(
        model, backend=backend, precision=precision, device=device, threads=threads, batch_size=batch_size
    )
    report_precision(predictor)
    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task(f"predicting ({predictor.backend} {predictor.precision})", total=None)
        result = predictor.predict(inputs, window=window, progress=lambda n: bar.advance(task, n))
    if len(result.slices) <= show_slices:
        print_renderable(_table(result.slices, f"{len(result.slices)} slice(s)"))
    title = f"{len(result.groups)} patient(s)/series - {result.model} ({result.backend} {result.precision})"
    print_renderable(_table(result.groups, title))
    if result.skipped:
        err_console.print(f"skipped {len(result.skipped)} unreadable file(s):", style="yellow")
        for path, reason in result.skipped[:10]:
            err_console.print(f"  {path}: {reason}", markup=False, highlight=False)
    if "lungs_found" in result.slices:  # the checkpoint's lung preprocessing
        lungs = predictor.preprocess
        missing = int((~result.slices["lungs_found"].astype(bool)).sum())
        err_console.print(
            f"lung preprocessing (crop {lungs.crop}, standardize {lungs.standardize}): {missing} of "
            f"{len(result.slices)} slice(s) without lungs found, whole slice used",
            style="yellow" if missing else None,
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    if out is not None:
        for written in result.save(out):
            console.print(f"wrote {written}", markup=False, highlight=False)
    if explain:
        from covidct.explain.api import ExplainConfig
        from covidct.explain.api import explain as run_explain

        target = explain_dir or (
            out.with_name(f"{out.stem}.cams") if out is not None else Path("covidct-cams")
        )
        cams = run_explain(
            model,
            inputs,
            target,
            config=ExplainConfig(batch_size=batch_size, window=window or predictor.meta.window_spec),
        )
        console.print(
            f"Grad-CAM overlays ({cams.method} @ {cams.layer}): {cams.n_slices} slice(s) -> {cams.out}"
        )


_RUN_COLUMNS = ("model", "backend", "precision")  # the same in every row: in the title instead


def _table(frame: pd.DataFrame, title: str) -> Table:
    table = Table(title=title)
    for column in frame.columns:
        if column in _RUN_COLUMNS:
            continue
        table.add_column(
            column.removeprefix("prob_").join(("P(", ")")) if column.startswith("prob_") else column,
            justify="right" if frame[column].dtype.kind in "fiu" else "left",
            overflow="fold",
        )
    for row in frame.itertuples(index=False):
        values = [v for c, v in zip(frame.columns, row, strict=True) if c not in _RUN_COLUMNS]
        table.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in values))
    return table


def export(
    checkpoint: Annotated[Path, typer.Argument(help="A covidct checkpoint (.pt).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The ONNX file to write (model.onnx).")],
    tolerance: Annotated[
        float, typer.Option("--tolerance", help="Largest allowed |ONNX - PyTorch| logit difference.")
    ] = 1e-3,
    check: Annotated[
        bool, typer.Option("--check/--no-check", help="Compare with PyTorch on random inputs.")
    ] = True,
    opset: Annotated[int, typer.Option("--opset", min=11, help="ONNX opset.")] = 17,
) -> None:
    """Export to ONNX (dynamic batch; classes, input size, normalisation, window in its metadata)."""
    from covidct.inference.export import export_onnx

    check_out(out, folder=False)
    with console.status(f"exporting {checkpoint.name} to ONNX..."):
        result = export_onnx(checkpoint, out, check=check, tolerance=tolerance, opset=opset)
    console.print(
        f"wrote {result.path}  ({result.model_name}, {result.input_size} px, classes: "
        f"{', '.join(result.classes)}, opset {result.opset})",
        markup=False,
        highlight=False,
    )
    if result.max_abs_diff is not None:
        console.print(
            f"parity vs PyTorch ({result.exporter} exporter): max abs diff {result.max_abs_diff:.2e} "
            f"(max |logit| {result.max_abs_logit:.3g}, tolerance {result.tolerance:g})"
        )


def bench(
    models: Annotated[str, typer.Option("--models", help="Comma-separated model names.")] = (
        "EfficientNetB0,EfficientNetB5"
    ),
    backends: Annotated[
        str,
        typer.Option(
            "--backends", help="Comma-separated: torch, onnx, openvino[:fp32|:bf16], eager (baseline)."
        ),
    ] = "torch,onnx",
    batch_sizes: Annotated[str, typer.Option("--batch-sizes", help="Comma-separated batch sizes.")] = "1,8",
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Folder for bench.csv, bench.md, env.json.")
    ] = None,
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Timed runs per batch size.")] = 10,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed runs first.")] = 2,
    image_size: Annotated[
        int | None, typer.Option("--image-size", help="Input size (default: each model's).")
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="CPU threads (default: physical cores).")
    ] = None,
    images: Annotated[
        list[Path] | None, typer.Option("--images", help="Files for end-to-end timing (repeatable).")
    ] = None,
    series: Annotated[
        Path | None, typer.Option("--series", help="A DICOM series folder timed whole.")
    ] = None,
    parity: Annotated[
        Path | None,
        typer.Option(
            "--parity",
            help="Instead of timing: compare --precision with fp32 on these slices (dataset folder, CSV with "
            "path[,label], or a folder/series) for --model; saves <model>.parity.json, which auto reads.",
        ),
    ] = None,
    model: Annotated[Path | None, typer.Option("--model", help="With --parity: the trained model.")] = None,
    precision: Annotated[
        str, typer.Option("--precision", help="With --parity: the precision to check.")
    ] = "bf16",
    parity_backend: Annotated[
        str, typer.Option("--parity-backend", help="With --parity: the backend.")
    ] = "openvino",
) -> None:
    """Latency (median, p90 per image) and throughput per model, backend and batch size; random weights.

    With --parity DATA --model MODEL: accuracy parity of a reduced precision against fp32 on real slices."""
    from covidct.inference.bench import BenchConfig, run_bench

    if parity is not None or model is not None:
        if parity is None or model is None:
            raise ConfigError("--parity DATA and --model MODEL go together")
        _parity(model, parity, parity_backend, precision, threads)
        return
    try:
        sizes = tuple(int(b) for b in split_csv(batch_sizes) or ())
    except ValueError:
        raise ConfigError(f"--batch-sizes must be integers, got {batch_sizes!r}") from None
    cfg = BenchConfig(
        models=tuple(split_csv(models) or ()),
        backends=tuple(split_csv(backends) or ()),
        batch_sizes=sizes,
        device=device,
        repeats=repeats,
        warmup=warmup,
        image_size=image_size,
        threads=threads,
        images=tuple(str(p) for p in images or ()),
        series=None if series is None else str(series),
    )
    with console.status("benchmarking...") as status:
        result = run_bench(cfg, out, on_case=lambda m, b: status.update(f"benchmarking {m} / {b}..."))
    table = Table(title="covidct inference speed (per image; random weights)")
    for column in (
        "model",
        "backend",
        "precision",
        "batch",
        "size",
        "model ms (med/p90)",
        "model img/s",
        "e2e ms (med/p90)",
        "e2e img/s",
        "stream img/s",
        "series slices/s",
    ):
        left = column in ("model", "backend", "precision")
        table.add_column(column, justify="left" if left else "right", no_wrap=column == "model")
    for r in result.table.itertuples(index=False):
        table.add_row(
            str(r.model),
            str(r.backend),
            str(r.precision),
            str(r.batch_size),
            str(r.image_size),
            f"{r.model_ms_median:.1f} / {r.model_ms_p90:.1f}",
            f"{r.model_img_s:.1f}",
            f"{r.e2e_ms_median:.1f} / {r.e2e_ms_p90:.1f}",
            f"{r.e2e_img_s:.1f}",
            f"{r.stream_img_s:.1f}",
            f"{r.series_img_s:.1f}" if r.series_slices else "-",
        )
    print_renderable(table)
    for path in result.files:
        console.print(f"wrote {path}", markup=False, highlight=False)


def _parity(model: Path, data: Path, backend: str, precision: str, threads: int | None) -> None:
    from covidct.inference.parity import run_parity
    from covidct.inference.parity_record import parity_record_path

    with console.status(f"parity: {backend} {precision} vs fp32 on {data} ..."):
        report = run_parity(model, data, backend=backend, precision=precision, threads=threads)
    console.print(f"slices: {report.n_slices}", markup=False, highlight=False)
    console.print(f"max |dp|: {report.max_abs_diff:.5f}", markup=False, highlight=False)
    console.print(
        f"top-1 agreement: {report.agreement:.2%} (auto needs >= {report.min_agreement:.1%})",
        markup=False,
        highlight=False,
    )
    if report.auc_diff is not None:
        console.print(
            f"ROC AUC: fp32 {report.auc_fp32:.4f}, {precision} {report.auc_candidate:.4f} "
            f"(diff {report.auc_diff:+.4f})",
            markup=False,
            highlight=False,
        )
    else:
        console.print("ROC AUC: n/a (no labels, or one class only)")
    verdict = "allowed" if report.passed else "refused (auto uses fp32 for this model)"
    console.print(
        f"auto -> {precision}: {verdict}; recorded in {parity_record_path(model)}",
        markup=False,
        highlight=False,
    )
