"""CLI commands ``covidct explain`` (Grad-CAM family) and ``covidct activations`` (intermediate activation
maps)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from covidct.cli._common import check_out, console
from covidct.cli._output import print_renderable
from covidct.explain.methods import DEFAULT_METHOD, METHOD_NAMES


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.2f}"


def register(app: typer.Typer) -> None:
    """Add ``explain`` and ``activations`` to the main app."""
    app.command("explain")(explain)
    app.command("activations")(activations)


def explain(
    checkpoint: Annotated[Path, typer.Argument(help="A covidct checkpoint (.pt).")],
    inputs: Annotated[
        list[Path], typer.Argument(help="Images, folders (recursive) or DICOM series folders.")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder: PNG panels, .npy heatmaps, index.json/csv.")
    ],
    method: Annotated[
        str, typer.Option("--method", "-m", help=f"One of: {', '.join(METHOD_NAMES)}.")
    ] = DEFAULT_METHOD,
    target: Annotated[
        str, typer.Option("--target", "-t", help="predicted, all, or a class name.")
    ] = "predicted",
    layer: Annotated[
        str | None,
        typer.Option(
            "--layer",
            help="Target layer (default: the model's CAM layer if its map is >= 7x7 at the checkpoint's "
            "input size, else the deepest stage whose map is).",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Slices per CAM batch.")] = 16,
    masks: Annotated[
        Path | None,
        typer.Option(
            "--masks", help="Lesion masks mirroring the inputs' relative paths: prints localisation scores."
        ),
    ] = None,
    window: Annotated[
        str, typer.Option("--window", help="CT window for DICOM: lung, mediastinal or WIDTH,LEVEL.")
    ] = "lung",
    tolerance: Annotated[
        int,
        typer.Option(
            "--tolerance", min=0, help="Pointing game: a maximum within N pixels of the lesion is a hit."
        ),
    ] = 0,
    audit: Annotated[
        bool,
        typer.Option(
            "--audit",
            help="Shortcut audit: each map's energy inside the lungs vs the lungs' share of the slice "
            "(audit.csv; flagged panels).",
        ),
    ] = False,
    lungs: Annotated[
        Path | None,
        typer.Option(
            "--lungs",
            help="Lung masks mirroring the inputs (e.g. from 'covidct data lungs'); default: computed per "
            "slice.",
        ),
    ] = None,
    slice_labels: Annotated[
        Path | None,
        typer.Option(
            "--slice-labels",
            help="Radiologists' slice labels CSV (path,patient,diagnosis,infection_visible): "
            "disease-probability AUC within diseased patients (and, with --audit, in-lung energy on infected "
            "vs clean slices).",
        ),
    ] = None,
) -> None:
    """Class activation maps (Grad-CAM by default) per slice, plus localisation or faithfulness scores."""
    from covidct.explain.api import ExplainConfig
    from covidct.explain.api import explain as run_explain

    cfg = ExplainConfig(
        method=method,
        target=target,
        layer=layer,
        batch_size=batch_size,
        window=window,
        tolerance=tolerance,
        audit=audit or lungs is not None,
    )
    check_out(out, folder=True)
    with console.status(f"{cfg.method}: explaining {len(inputs)} input(s)..."):
        result = run_explain(
            checkpoint, inputs, out, masks=masks, lungs=lungs, slice_labels=slice_labels, config=cfg
        )
    console.print(f"{result.method} @ {result.layer}: {result.n_slices} slice(s) -> {result.out}")
    console.print(f"layer: {result.layer_note}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"index: {result.index}  (+ index.csv, one PNG panel and .npy heatmap(s) per slice)")
    if result.skipped:
        console.print(f"skipped {len(result.skipped)} unreadable file(s):", style="yellow")
        for path, reason in result.skipped[:10]:
            console.print(f"  {path}: {reason}", markup=False, highlight=False)
    loc = result.localization
    if loc is not None:
        console.print(
            f"localisation on {loc.n} slice(s) with a lesion ({loc.n_empty} without, "
            f"{result.masks_missing} without a mask file):"
        )
        console.print(
            f"  pointing game: {_fmt(loc.pointing_game)} (random baseline {_fmt(loc.random_pointing_game)}"
            f"{f'; tolerance {cfg.tolerance} px' if cfg.tolerance else ''})"
        )
        console.print(
            f"  energy inside mask: {_fmt(loc.energy_inside)} "
            f"(random baseline {_fmt(loc.random_energy_inside)})"
        )
    if result.audit is not None:
        _print_audit(result)
    labels = result.slice_labels
    if labels is not None:
        console.print(
            f"slice labels: {labels.n} slice(s) of {labels.n_patients} diseased patient(s), "
            f"{labels.n_infected} with visible infection: disease-probability ROC AUC {_fmt(labels.auc)}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        if result.audit is not None:
            console.print(
                f"  in-lung CAM energy: infected slices {_fmt(labels.lung_share_infected)}, clean slices "
                f"{_fmt(labels.lung_share_clean)}",
                markup=False,
                highlight=False,
            )
    faith = result.faithfulness
    if faith is not None:
        console.print(
            f"faithfulness: removing the top {faith.fraction:.0%} pixels drops the target probability by "
            f"{faith.drop:.3f} (random map {faith.random_drop:.3f}; gap {faith.gap:+.3f})"
        )


def activations(
    checkpoint: Annotated[Path, typer.Argument(help="A covidct checkpoint (.pt).")],
    image: Annotated[
        Path, typer.Argument(help="One image, DICOM file or series (its middle slice is used).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for the PNGs.")],
    top: Annotated[int, typer.Option("--top", min=1, help="Most active channels shown per stage.")] = 8,
    window: Annotated[
        str, typer.Option("--window", help="CT window for DICOM: lung, mediastinal or WIDTH,LEVEL.")
    ] = "lung",
) -> None:
    """The paper's intermediate activation maps: per backbone stage, a grid of the most active channels."""
    from covidct.explain.api import activations as run_activations

    check_out(out, folder=True)
    result = run_activations(checkpoint, image, out, top=top, window=window)
    note = f" (middle of {result.n_slices_in_input} slices)" if result.n_slices_in_input > 1 else ""
    console.print(f"activations of {result.source}{note}", markup=False, highlight=False)
    console.print(f"stages: {', '.join(result.stages)}")
    for path in result.files:
        console.print(f"  {path}", markup=False, highlight=False)


def _print_audit(result: Any) -> None:
    table = Table(title="shortcut audit: CAM energy inside the lungs", title_justify="left")
    for name in ("class", "slices", "in lungs", "random map", "mostly outside"):
        table.add_column(name, justify="left" if name == "class" else "right", no_wrap=name == "class")
    for row in result.audit:
        if row.group == "all":
            table.add_section()
        table.add_row(row.group, str(row.n), _fmt(row.lung_share), _fmt(row.lung_fraction), _pct(row.outside))
    print_renderable(table)
    console.print(f"per slice: {result.audit_table}", markup=False, highlight=False, soft_wrap=True)


def _pct(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.0%}"
