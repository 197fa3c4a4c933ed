"""CLI ``covidct data scan | summary | synth | lungs | audit``: manifests, synthetic phantoms (issue #2), lung
masks (issue 14), the leakage audit (issue 10)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from covidct.cli._common import check_out, console, err_console, split_csv
from covidct.cli._output import print_renderable
from covidct.errors import ConfigError

data_app = typer.Typer(
    name="data",
    help="Scan datasets into manifests, summarise them, synthesize CT phantoms, segment lungs.",
    no_args_is_help=True,
)

ALIAS_HELP = (
    "Extra label alias KEY=VALUE (folder/CSV label -> class), e.g. --alias Others=Pneumonia. Repeatable."
)
CLASSES_HELP = (
    "Fixed class order, comma-separated (default: COVID-19, non-COVID, Healthy, Pneumonia, then the others "
    "sorted)."
)
Alias = Annotated[list[str] | None, typer.Option("--alias", help=ALIAS_HELP)]
Classes = Annotated[str | None, typer.Option("--classes", help=CLASSES_HELP)]


def parse_aliases(items: list[str] | None) -> dict[str, str] | None:
    """``["Other=Pneumonia"]`` -> ``{"Other": "Pneumonia"}``; ConfigError for anything else."""
    if not items:
        return None
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"--alias expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _scan(data: Path, alias: list[str] | None, classes: str | None) -> Any:
    from covidct.data.manifest import scan_dataset

    return scan_dataset(data, aliases=parse_aliases(alias), classes=split_csv(classes))


def _print_warnings(scan: Any) -> None:
    for note in scan.warnings:
        loud = note == scan.warning
        err_console.print(
            f"WARNING: {note}" if loud else f"warning: {note}",
            style="bold red" if loud else "yellow",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


def render_scan(scan: Any, *, limit: int = 10) -> list[Any]:
    """Rich renderables: per-class table, sizes, duplicates, unreadable files."""
    table = Table(title=f"{scan.root} ({scan.layout})", title_justify="left")
    table.add_column("Class", style="bold", no_wrap=True)
    table.add_column("Images", justify="right")
    table.add_column("Patients", justify="right")
    for label, (n_images, n_patients) in scan.class_counts().items():
        table.add_row(label, str(n_images), str(n_patients) if scan.has_patients else "unknown")
    n_patients = len({s.patient_id for s in scan.samples if s.patient_id is not None})
    table.add_section()
    table.add_row("total", str(len(scan.samples)), str(n_patients) if scan.has_patients else "unknown")
    out: list[Any] = [table]
    sizes = scan.size_range()
    if sizes:
        (h0, h1), (w0, w1) = sizes
        out.append(f"size: height {h0}-{h1} px, width {w0}-{w1} px")
    out.append(f"duplicates (same sha256): {len(scan.duplicates)} group(s)")
    out.extend(f"  {' = '.join(group)}" for group in scan.duplicates[:limit])
    out.append(f"unreadable or unknown files (skipped): {len(scan.skipped)}")
    out.extend(f"  {path}: {reason}" for path, reason in scan.skipped[:limit])
    if len(scan.skipped) > limit or len(scan.duplicates) > limit:
        out.append(f"  ... (first {limit} shown)")
    return out


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to the main app."""
    app.add_typer(data_app, name="data")


@data_app.command()
def scan(
    data: Annotated[
        Path, typer.Argument(help="Dataset folder (class/[patient/]images) or a CSV path,label[,patient_id].")
    ],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the manifest CSV here.")] = None,
    alias: Alias = None,
    classes: Classes = None,
) -> None:
    """Find, hash and validate every image; optionally write a manifest CSV."""
    from covidct.data.manifest import save_manifest

    check_out(out, folder=False)
    result = _scan(data, alias, classes)
    counts = ", ".join(f"{label} {n}" for label, (n, _) in result.class_counts().items())
    console.print(
        f"{len(result.samples)} images ({counts}); layout {result.layout}; classes "
        f"{', '.join(result.classes)}; {len(result.skipped)} skipped; {len(result.duplicates)} duplicate "
        "group(s)",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    for path, reason in result.skipped[:10]:
        console.print(f"  skipped {path}: {reason}", markup=False, highlight=False, soft_wrap=True)
    if out is not None:
        console.print(f"wrote {save_manifest(result, out)}", markup=False, highlight=False, soft_wrap=True)
    _print_warnings(result)


@data_app.command()
def summary(
    data: Annotated[Path, typer.Argument(help="Dataset folder or CSV (as for 'covidct data scan').")],
    alias: Alias = None,
    classes: Classes = None,
) -> None:
    """Images and patients per class, size range, duplicates and unreadable files."""
    result = _scan(data, alias, classes)
    for renderable in render_scan(result):
        if isinstance(renderable, str):
            console.print(renderable, markup=False, highlight=False, soft_wrap=True)
        else:
            print_renderable(renderable)
    _print_warnings(result)


@data_app.command()
def synth(
    out: Annotated[
        Path,
        typer.Argument(
            help="Output folder: writes OUT/images/<class>/<patient>/<k>.png, OUT/masks (lesions), OUT/lungs."
        ),
    ],
    patients_per_class: Annotated[int, typer.Option("--patients-per-class", help="Patients per class.")] = 4,
    slices_per_patient: Annotated[int, typer.Option("--slices-per-patient", help="Slices per patient.")] = 4,
    size: Annotated[int, typer.Option("--size", help="Image side in pixels.")] = 128,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same images).")] = 0,
) -> None:
    """Synthesize chest CT phantoms (COVID-19 ground glass, pneumonia consolidation, healthy) and masks."""
    from covidct.data.synth import synthesize_dataset

    result = synthesize_dataset(
        out,
        patients_per_class=patients_per_class,
        slices_per_patient=slices_per_patient,
        size=size,
        seed=seed,
    )
    console.print(
        f"wrote {result.n_images} images of {', '.join(result.classes)} to {result.images_dir} "
        f"(lesion masks in {result.masks_dir}, lung masks in {result.lungs_dir})",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


@data_app.command()
def audit(
    data: Annotated[
        Path, typer.Argument(help="Dataset folder, dataset CSV or manifest (as for 'covidct data scan').")
    ],
    folds: Annotated[
        Path | None,
        typer.Option(
            "--folds", help="A fold plan (RUN/folds.csv): count pairs across its train/test splits."
        ),
    ] = None,
    threshold: Annotated[
        int | None,
        typer.Option("--threshold", help="Near-duplicate Hamming distance, of 256 phash bits (default: 32)."),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the pairs as CSV here.")] = None,
) -> None:
    """Leakage audit: exact (sha256) and near-duplicate (perceptual hash) image pairs, and fold crossings."""
    from covidct.data.audit import DEFAULT_THRESHOLD, HASH_BITS, write_pairs
    from covidct.data.audit import audit as run_audit

    plain: dict[str, Any] = {"markup": False, "highlight": False, "soft_wrap": True}
    limit = DEFAULT_THRESHOLD if threshold is None else threshold
    result = run_audit(data, folds=folds, threshold=limit)
    console.print(
        f"{result.n_samples} slices: {result.n_exact} exact-duplicate pair(s) (same sha256), {result.n_near} "
        f"near-duplicate pair(s) (phash, Hamming distance <= {limit} of {HASH_BITS} bits)",
        **plain,
    )
    spread = ", ".join(f"{d}: {n}" for d, n in sorted(result.distances.items()) if d <= 2 * limit)
    console.print(f"nearest-neighbour distance per slice (distance: slices): {spread or 'none'}", **plain)
    if result.crossings is not None:
        table = Table(title=f"pairs across test vs train/val of {folds}", title_justify="left")
        for name in ("Repeat", "Fold", "Pairs crossing", "Exact crossing"):
            table.add_column(name, justify="right")
        for row in result.crossings.itertuples(index=False):
            table.add_row(str(row.repeat), str(row.fold), str(row.pairs_crossing), str(row.exact_crossing))
        print_renderable(table)
        total = int(result.crossings["pairs_crossing"].sum())
        console.print(
            f"{total} pair crossing(s) over {len(result.crossings)} fold(s) "
            f"({int(result.crossings['exact_crossing'].sum())} exact)",
            **plain,
        )
    if out is not None:
        console.print(f"wrote {write_pairs(result.pairs, out)}", **plain)
    for path, reason in result.unreadable[:10]:
        err_console.print(f"warning: skipped {path}: {reason}", style="yellow", **plain)


@data_app.command()
def lungs(
    inputs: Annotated[
        list[Path], typer.Argument(help="Images, folders (recursive), DICOM series or NIfTI volumes.")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder: one PNG mask per slice + lungs.csv.")
    ],
) -> None:
    """Lung masks per slice: HU threshold (-320) for DICOM/NIfTI, Otsu body + dark regions for 8-bit
    images."""
    from covidct.data.lungs import write_lung_masks

    with console.status(f"segmenting lungs in {len(inputs)} input(s)..."):
        result = write_lung_masks(inputs, out)
    methods = sorted({row.method for row in result.rows})
    fractions = [row.lung_fraction for row in result.rows]
    console.print(
        f"wrote {len(result.rows)} lung mask(s) ({', '.join(methods)}) to {result.out}; table {result.table}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    if fractions:
        console.print(
            f"lung fraction per slice: min {min(fractions):.3f}, mean {sum(fractions) / len(fractions):.3f}, "
            f"max {max(fractions):.3f}",
            markup=False,
            highlight=False,
        )
    for path, reason in result.skipped[:10]:
        console.print(f"  skipped {path}: {reason}", markup=False, highlight=False, soft_wrap=True)
