"""CLI commands ``covidct train`` (one model) and ``covidct cv`` (patient-grouped repeated k-fold CV).

Every option defaults to ``None`` ("not given"), so a ``--config`` file is only overridden by flags actually
passed. Torch is imported inside the commands only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from covidct.cli._common import check_out, console, err_console
from covidct.cli._output import FormatOption, OutputFormat, info_console
from covidct.cli.metrics import print_summaries
from covidct.config import load_config
from covidct.errors import ConfigError

_T = "Training"
Model = Annotated[
    str | None, typer.Option("--model", "-m", help="Paper name (EfficientNetB0) or any timm name.")
]
Out = Annotated[Path | None, typer.Option("--out", "-o", help="Run folder.")]
Epochs = Annotated[int | None, typer.Option(help="Epochs (default: 30).", rich_help_panel=_T)]
BatchSize = Annotated[
    int | None, typer.Option("--batch-size", help="Batch size (default: 32).", rich_help_panel=_T)
]
ImageSize = Annotated[
    int | None, typer.Option("--image-size", help="Input size (default: the model's).", rich_help_panel=_T)
]
Lr = Annotated[float | None, typer.Option(help="Adam learning rate (default: 1e-4).", rich_help_panel=_T)]
Pretrained = Annotated[
    bool | None,
    typer.Option(
        "--pretrained/--no-pretrained",
        help="Start from pretrained weights (default: yes).",
        rich_help_panel=_T,
    ),
]
Weights = Annotated[
    Path | None, typer.Option(help="Pretrained weights file (safetensors/.pth).", rich_help_panel=_T)
]
WeightsDir = Annotated[
    Path | None,
    typer.Option("--weights-dir", help="Folder of <timm_name>.safetensors files.", rich_help_panel=_T),
]
Seed = Annotated[int | None, typer.Option(help="Random seed (default: 0).", rich_help_panel=_T)]
Dropout = Annotated[
    float | None, typer.Option(help="Dropout before the head (default: 0).", rich_help_panel=_T)
]
Freeze = Annotated[
    bool | None,
    typer.Option(
        "--freeze-backbone/--no-freeze-backbone", help="Train only the classifier head.", rich_help_panel=_T
    ),
]
FeatureCache = Annotated[
    bool | None,
    typer.Option(
        "--feature-cache/--no-feature-cache",
        help="With --freeze-backbone: compute backbone features once per image, cached on disk "
        "($COVIDCT_FEATURE_CACHE or ~/.cache/covidct/features), and train the head on them (default: yes; "
        "no augmentation on this path).",
        rich_help_panel=_T,
    ),
]
BackboneLrScale = Annotated[
    float | None,
    typer.Option(
        "--backbone-lr-scale",
        help="Discriminative learning rate: backbone lr = lr x SCALE, head lr = lr (default: 1).",
        rich_help_panel=_T,
    ),
]
HeadWarmup = Annotated[
    int | None,
    typer.Option(
        "--head-warmup",
        help="Train only the head for the first N epochs, backbone and its BatchNorm statistics frozen "
        "(default: 0).",
        rich_help_panel=_T,
    ),
]
PreciseBn = Annotated[
    bool | None,
    typer.Option(
        "--precise-bn/--no-precise-bn",
        help="Re-estimate BatchNorm statistics on the training data before each validation (default: yes).",
        rich_help_panel=_T,
    ),
]
ClassWeighting = Annotated[
    str | None, typer.Option("--class-weighting", help="none | balanced (loss weights).", rich_help_panel=_T)
]
Sampler = Annotated[
    str | None, typer.Option(help="random | balanced (class-balanced sampling).", rich_help_panel=_T)
]
Patience = Annotated[
    int | None, typer.Option(help="Early stopping after N epochs without improvement.", rich_help_panel=_T)
]
Augment = Annotated[
    str | None,
    typer.Option(
        "--augment",
        help="Augmentation preset: paper (the authors': rotation 360 deg, horizontal flip, zoom/shift 0.15, "
        "shear 0.15 deg; default), light (rotation 15 deg, both flips, shear ~8.5 deg) or none.",
        rich_help_panel=_T,
    ),
]
NoAugment = Annotated[
    bool | None, typer.Option("--no-augment", help="No augmentation (= --augment none).", rich_help_panel=_T)
]
Rotation = Annotated[
    float | None,
    typer.Option(
        help="Rotation range in degrees, overrides the preset's (paper 360, light 15).", rich_help_panel=_T
    ),
]
ValFraction = Annotated[
    float | None,
    typer.Option(
        "--val-fraction", help="Validation share of training patients (default: 0.2).", rich_help_panel=_T
    ),
]
Workers = Annotated[
    int | None, typer.Option(help="DataLoader worker processes (default: 0).", rich_help_panel=_T)
]
Cache = Annotated[
    bool | None,
    typer.Option(
        "--cache/--no-cache", help="Decode + resize each image once (default: yes).", rich_help_panel=_T
    ),
]
Device = Annotated[str | None, typer.Option(help="auto | cpu | cuda.", rich_help_panel=_T)]
Amp = Annotated[
    bool | None,
    typer.Option("--amp/--no-amp", help="Mixed precision (default: on CUDA only).", rich_help_panel=_T),
]
Crop = Annotated[
    str | None,
    typer.Option(
        help="none | lungs (crop each slice to its lungs' box + margin; kept in the checkpoint).",
        rich_help_panel=_T,
    ),
]
Standardize = Annotated[
    str | None,
    typer.Option(
        help="none | lungs (1st/99th percentiles inside the lung mask -> 0/1; kept in the checkpoint).",
        rich_help_panel=_T,
    ),
]
GroupNearDuplicates = Annotated[
    bool | None,
    typer.Option(
        "--group-near-duplicates/--no-group-near-duplicates",
        help="Keep near-duplicate images (perceptual hash, see 'covidct data audit') on one side of every "
        "split (default: no).",
    ),
]
NearDuplicateThreshold = Annotated[
    int | None,
    typer.Option(
        "--near-duplicate-threshold",
        help="Hamming distance (of 256 phash bits) for --group-near-duplicates (default: 32).",
    ),
]
ConfigFile = Annotated[
    Path | None, typer.Option("--config", help="A run's config.json to replay; flags override.")
]


#: The command parameters that are ``TrainConfig`` fields (shared by train, cv and compare).
TRAIN_OPTIONS = (
    "epochs",
    "batch_size",
    "image_size",
    "lr",
    "pretrained",
    "weights",
    "weights_dir",
    "seed",
    "dropout",
    "freeze_backbone",
    "class_weighting",
    "sampler",
    "patience",
    "augment",
    "rotation",
    "val_fraction",
    "workers",
    "cache",
    "device",
    "amp",
    "feature_cache",
    "backbone_lr_scale",
    "head_warmup",
    "recalibrate_bn",
    "crop",
    "standardize",
)


def train_overrides(**options: Any) -> dict[str, Any]:
    """CLI option values -> ``TrainConfig`` overrides (``None`` = not given; paths as strings)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items() if v is not None}


def train_options(values: dict[str, Any]) -> dict[str, Any]:
    """The ``TrainConfig`` overrides among a command's parameter values (pass ``locals()``)."""
    options = {k: v for k, v in values.items() if k in TRAIN_OPTIONS}
    if values.get("no_augment"):
        if options.get("augment") not in (None, "none"):
            raise ConfigError(f"--no-augment contradicts --augment {options['augment']}")
        options["augment"] = "none"
    return train_overrides(**options)


class _FieldsColumn(ProgressColumn):
    def render(self, task: Any) -> Text:
        return Text(" ".join(f"{k} {v}" for k, v in task.fields.items()), style="cyan")


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        _FieldsColumn(),
        console=err_console,
        transient=False,
    )


def register(app: typer.Typer) -> None:
    """Add ``train`` and ``cv`` to the main app."""

    @app.command()
    def train(
        data: Annotated[Path | None, typer.Argument(help="Data folder or manifest CSV.")] = None,
        model: Model = None,
        out: Out = None,
        epochs: Epochs = None,
        batch_size: BatchSize = None,
        image_size: ImageSize = None,
        lr: Lr = None,
        pretrained: Pretrained = None,
        weights: Weights = None,
        weights_dir: WeightsDir = None,
        seed: Seed = None,
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
        resume: Annotated[bool | None, typer.Option("--resume", help="Continue from RUN/last.pt.")] = None,
        config: ConfigFile = None,
    ) -> None:
        """Train one model; the validation split comes from the training patients. Writes RUN/best.pt."""
        from covidct.training.config import TrainRunConfig
        from covidct.training.fit import train as train_api

        overrides = train_options(locals())
        cfg = load_config(
            TrainRunConfig,
            config,
            data=None if data is None else str(data),
            model=model,
            out=None if out is None else str(out),
            resume=resume,
            train=overrides,
        )
        check_out(cfg.out, folder=True)
        with _progress() as progress:
            result = train_api(cfg, progress=progress)
        last = result.history[-1] if result.history else {}
        console.print(
            f"best epoch {result.best_epoch}/{result.epochs_run}"
            f"{' (stopped early)' if result.stopped_early else ''}: "
            f"val accuracy {last.get('val_accuracy', float('nan')):.3f} (last epoch)"
        )
        if result.weights is not None:
            console.print(result.weights.describe(), markup=False, highlight=False)
        if result.feature_stats is not None:
            stats = result.feature_stats
            console.print(
                f"features: {stats.hits} from the cache, {stats.computed} computed", highlight=False
            )
        console.print(f"checkpoint: {result.best_path}\nlog: {result.log_path}")
        if result.skipped:
            console.print(
                f"[yellow]{len(result.skipped)} unreadable file(s) skipped[/yellow] (listed in "
                f"{Path(cfg.out) / 'warnings.json'} and manifest.csv):"
            )
            for path, reason in result.skipped[:10]:
                console.print(f"  {path}: {reason}", markup=False, highlight=False, soft_wrap=True)

    @app.command()
    def cv(
        data: Annotated[Path | None, typer.Argument(help="Data folder or manifest CSV.")] = None,
        model: Model = None,
        out: Out = None,
        folds: Annotated[int | None, typer.Option(help="Folds per repeat (default: 5).")] = None,
        repeats: Annotated[int | None, typer.Option(help="Repeats (default: 5).")] = None,
        seed: Annotated[
            int | None, typer.Option(help="Seed of the folds and of training (default: 0).")
        ] = None,
        group_near_duplicates: GroupNearDuplicates = None,
        near_duplicate_threshold: NearDuplicateThreshold = None,
        epochs: Epochs = None,
        batch_size: BatchSize = None,
        image_size: ImageSize = None,
        lr: Lr = None,
        pretrained: Pretrained = None,
        weights: Weights = None,
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
        config: ConfigFile = None,
        fmt: FormatOption = OutputFormat.table,
    ) -> None:
        """Patient-grouped, class-stratified repeated k-fold CV. A rerun skips finished folds."""
        from covidct.report.run_metrics import write_run_metrics
        from covidct.training.config import CVConfig
        from covidct.training.cv import cross_validate

        overrides = train_options(locals())
        cfg = load_config(
            CVConfig,
            config,
            data=None if data is None else str(data),
            model=model,
            out=None if out is None else str(out),
            folds=folds,
            repeats=repeats,
            seed=seed,
            group_near_duplicates=group_near_duplicates,
            near_duplicate_threshold=near_duplicate_threshold,
            train=overrides,
        )
        check_out(cfg.out, folder=True)
        with _progress() as progress:
            result = cross_validate(cfg, progress=progress)
        if result.run_metrics is not None:
            write_run_metrics(result.run_metrics)
        print_summaries([result.metrics], "both", fmt)
        info = info_console(fmt)
        for note in result.warnings:
            info.print(f"[yellow]warning:[/yellow] {note}", highlight=False)
        info.print(
            f"{result.trained} fold(s) trained, {result.skipped_jobs} already done; "
            f"{result.seconds:.0f} s. Results in {result.run_dir}"
        )
