"""``covidct demo`` (``make demo``): the whole pipeline in a few CPU minutes, on synthetic phantoms.

1. synthetic 3-class chest CT phantoms with lesion masks (:func:`covidct.data.synth.synthesize_dataset`);
2. a small comparison study: 2 small timm models from scratch, patient-grouped 3-fold CV, a few epochs, small
   images;
3. Grad-CAM on a few test slices of the best model's first fold (:func:`covidct.explain.api.explain`);
4. the HTML report with the paper's published numbers beside ours.

Everything lands in ``OUT/{data,study}``; a rerun reuses the phantoms and skips finished jobs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from covidct.data.synth import synthesize_dataset
from covidct.errors import ConfigError
from covidct.report.html import write_report
from covidct.study.compare import StudyResult, compare
from covidct.study.config import StudyConfig
from covidct.study.executors import OnResult
from covidct.study.grid import job_dir
from covidct.training.config import TrainConfig

log = logging.getLogger(__name__)

#: Two small models that learn from scratch within the demo's budget. MobileNetV3-small and EfficientNet-B0
#: were tried first: from scratch on ~50 training slices in 12 epochs they stayed at chance (0.33 accuracy).
DEMO_MODELS = ("resnet10t", "resnet14t")


@dataclass(frozen=True, kw_only=True)
class DemoConfig:
    """Sizes chosen so the demo takes a few minutes on 2 CPU cores."""

    out: str = "demo_out"
    models: tuple[str, ...] = DEMO_MODELS
    folds: int = 3
    repeats: int = 1
    epochs: int = 15
    image_size: int = 96  # ground glass is a few pixels at 64 px: too little to learn from scratch
    batch_size: int = 16
    lr: float = 2e-3  # from scratch on tiny data: faster than the paper's fine-tuning rate
    patients_per_class: int = 12
    slices_per_patient: int = 4
    phantom_size: int = 96
    explain_slices: int = 6
    executor: str = "local"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.explain_slices < 0:
            raise ConfigError(f"explain_slices must be >= 0, got {self.explain_slices}")
        if self.patients_per_class < self.folds:
            raise ConfigError(f"need at least {self.folds} patients per class for {self.folds} folds")


@dataclass(frozen=True)
class DemoResult:
    data: Path
    study: StudyResult
    explanations: Path | None
    report: Path


def _explain_best(study: StudyResult, cfg: DemoConfig) -> Path | None:
    """Grad-CAM panels for a few test slices (one per class first) of the best model's first job."""
    from covidct.explain.api import explain

    tables = study.tables
    if tables is None or cfg.explain_slices == 0:
        return None
    best = str(tables.wilcoxon.iloc[0]["model"]) if not tables.wilcoxon.empty else tables.models[0]
    done = sorted(o.job for o in study.outcomes if o.ok and o.job.model == best)
    folds = pd.read_csv(study.study_dir / "folds.csv", dtype=str, keep_default_na=False)
    candidates = [job_dir(study.study_dir, j) for j in done] or sorted(
        (study.study_dir / "models").glob(f"{best}/folds/r*_f*")
    )
    for folder in candidates:
        checkpoint = folder / "best.pt"
        if not checkpoint.is_file():
            continue
        repeat, fold = (int(x[1:]) for x in folder.name.split("_"))
        test = folds[
            (folds["split"] == "test") & (folds["repeat"] == str(repeat)) & (folds["fold"] == str(fold))
        ]
        picks = test.groupby("label", sort=True).head(1)["path"].tolist()
        picks += [p for p in test["path"] if p not in picks][: max(0, cfg.explain_slices - len(picks))]
        out = study.study_dir / "explanations" / f"{best}_{folder.name}"
        lungs = Path(cfg.out) / "data" / "lungs"  # the phantoms' true lung masks
        explain(
            checkpoint, picks[: cfg.explain_slices], out, audit=True, lungs=lungs if lungs.is_dir() else None
        )
        return out
    log.warning("no checkpoint of %s found to explain", best)
    return None


def run_demo(
    cfg: DemoConfig = DemoConfig(),
    *,
    progress: Any = None,
    on_result: OnResult | None = None,
    log: Callable[[str], None] = lambda msg: None,
) -> DemoResult:
    """Phantoms -> compare -> explain -> report (see the module docstring)."""
    root = Path(cfg.out)
    data = root / "data"
    if not (data / "images").is_dir():
        log(f"synthesizing phantoms into {data} ...")
        synthesize_dataset(
            data,
            patients_per_class=cfg.patients_per_class,
            slices_per_patient=cfg.slices_per_patient,
            size=cfg.phantom_size,
            seed=cfg.seed,
        )
    train = TrainConfig(
        epochs=cfg.epochs,
        image_size=cfg.image_size,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        pretrained=False,
        seed=cfg.seed,
        augment="light",  # the demo's from-scratch budget was tuned with these, not the paper's 360 deg
    )
    study_cfg = StudyConfig(
        data=str(data / "images"),
        out=str(root / "study"),
        models=cfg.models,
        folds=cfg.folds,
        repeats=cfg.repeats,
        seed=cfg.seed,
        train=train,
        executor=cfg.executor,
        max_retries=1,
    )
    log(
        f"comparison study of {', '.join(cfg.models)}: {cfg.folds} folds x {cfg.repeats} repeat(s), "
        f"{cfg.epochs} epochs at {cfg.image_size} px ..."
    )
    study = compare(study_cfg, progress=progress, on_result=on_result)
    explanations = None
    if study.tables is not None:
        log("explaining a few slices with Grad-CAM ...")
        explanations = _explain_best(study, cfg)
    report = write_report(study.study_dir, reference="paper")
    return DemoResult(data=data, study=study, explanations=explanations, report=report)
