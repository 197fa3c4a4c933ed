"""Patient-grouped repeated k-fold cross-validation, one resumable job per (repeat, fold).

``plan_cv(cfg)`` scans the data and fixes the folds (and each fold's validation patients) from the data and
the CV seed alone, never from the model, so the comparison study trains every model on identical folds. It
writes ``RUN/config.json`` (resolved, replayable with ``--config``), ``env.json``, ``manifest.csv``,
``folds.csv`` (path, patient_id, label, repeat, fold, split) and ``warnings.json``.

``run_fold(plan, repeat, fold)`` trains on the fold's training patients and writes the test predictions to
``RUN/folds/r{repeat}_f{fold}/predictions.csv`` atomically; an existing file means the job is done (resume
after a crash or Ctrl-C; a half-trained fold continues from its ``last.pt``). ``cross_validate(cfg)`` runs
every job, then writes ``RUN/predictions.csv`` and computes the metrics
(:func:`covidct.evaluation.summary.run_metrics`); the caller writes the metric files
(:func:`covidct.report.run_metrics.write_run_metrics`, as ``covidct cv`` does).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from covidct.config import config_to_dict
from covidct.data.audit import near_duplicate_pairs
from covidct.data.dataset import SliceCache, SliceDataset
from covidct.data.manifest import save_manifest
from covidct.data.preprocess import Preprocess
from covidct.data.splits import (
    Fold,
    SampleLike,
    leakage_groups,
    make_folds,
    patient_groups,
    validation_split,
)
from covidct.errors import ConfigError, CovidCTWarning, DataError
from covidct.evaluation.predictions import read_predictions, write_predictions
from covidct.evaluation.summary import run_metrics
from covidct.models.registry import get_spec
from covidct.training.config import CVConfig, TrainConfig
from covidct.training.features import extract_features, head_network
from covidct.training.fit import (
    RUN_FILES,
    build_cache,
    feature_cache_dir,
    fit,
    load_samples,
    make_loader,
    uses_feature_cache,
)
from covidct.training.loop import ProgressLike, predict_proba, progress_task
from covidct.utils import (
    atomic_path,
    environment_record,
    remove_stale_temps,
    sha256_file,
    write_json_atomic,
)

if TYPE_CHECKING:
    from covidct.evaluation.summary import RunMetrics

#: Options that may differ between a run and its resumption (hardware, speed), unlike everything else.
RUNTIME_KEYS = ("device", "amp", "channels_last", "workers", "cache", "feature_cache_dir")


@dataclass
class CVPlan:
    """The data, class order and folds of a CV run. ``splits[(r, f)] = (train_idx, val_idx, test_idx)``."""

    cfg: CVConfig
    run_dir: Path
    samples: list[SampleLike]
    classes: tuple[str, ...]
    folds: list[Fold]
    splits: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]]
    grouped: bool
    warnings: list[str]
    run_id: str
    groups: np.ndarray | None = None  # the split group of each sample (patients, duplicates merged)
    _caches: dict[tuple[Any, ...], SliceCache] = field(default_factory=dict, repr=False)

    @property
    def jobs(self) -> list[tuple[int, int]]:
        return [(f.repeat, f.fold) for f in self.folds]

    def fold_dir(self, repeat: int, fold: int, run_dir: Path | None = None) -> Path:
        return Path(run_dir or self.run_dir) / "folds" / f"r{repeat}_f{fold}"

    def predictions_path(self, repeat: int, fold: int, run_dir: Path | None = None) -> Path:
        return self.fold_dir(repeat, fold, run_dir) / "predictions.csv"

    def cache_for(
        self,
        image_size: int,
        window: str,
        progress: ProgressLike | None = None,
        *,
        crop: str = "none",
        standardize: str = "none",
    ) -> SliceCache:
        """Every sample decoded once per (size, window, lung options), shared by all folds of this plan."""
        key = (image_size, window, crop, standardize)
        if key not in self._caches:
            self._caches[key] = build_cache(
                self.samples,
                image_size,
                window,
                progress=progress,
                description=f"decode {len(self.samples)} images at {image_size} px",
                preprocess=Preprocess(image_size=image_size, crop=crop, standardize=standardize),
            )
        return self._caches[key]


@dataclass(frozen=True)
class CVResult:
    run_dir: Path
    predictions: Path
    metrics: dict[str, Any]  # what metrics.json holds (``run_metrics.payload``)
    trained: int
    skipped_jobs: int
    warnings: list[str]
    seconds: float
    run_metrics: RunMetrics | None = None  # for covidct.report.run_metrics.write_run_metrics


def comparable_config(cfg_dict: dict[str, Any]) -> dict[str, Any]:
    """A recorded CV config less what may change when a run resumes (``out``, :data:`RUNTIME_KEYS`)."""
    # runs recorded before an option existed ran with its default
    cfg_dict = {"group_near_duplicates": False, "near_duplicate_threshold": 32, **cfg_dict}
    train = {k: v for k, v in cfg_dict.get("train", {}).items() if k not in RUNTIME_KEYS}
    return {**{k: v for k, v in cfg_dict.items() if k not in ("train", "out")}, "train": train}


def _folds_table(plan: CVPlan) -> pd.DataFrame:
    paths = np.asarray([s.path for s in plan.samples], dtype=object)
    pids = np.asarray([s.patient_id or "" for s in plan.samples], dtype=object)
    labels = np.asarray([s.label for s in plan.samples], dtype=object)
    parts = []
    for (repeat, fold), (train, val, test) in plan.splits.items():
        for split, idx in (("train", train), ("val", val), ("test", test)):
            parts.append(
                pd.DataFrame(
                    {
                        "path": paths[idx],
                        "patient_id": pids[idx],
                        "label": labels[idx],
                        "repeat": repeat,
                        "fold": fold,
                        "split": split,
                    }
                )
            )
    return pd.concat(parts, ignore_index=True)


def plan_cv(cfg: CVConfig, *, write: bool = True) -> CVPlan:
    """Scan ``cfg.data``, fix the folds and validation patients, and (``write``) record them in ``cfg.out``.

    Raises:
        ConfigError: ``cfg.out`` already holds a run with other data, folds or options.
        DataError: unreadable data, or too few patients per class for the folds.
    """
    samples, classes, scan = load_samples(cfg.data)
    samples = sorted(samples, key=lambda s: s.path)  # folds depend on content, not scan order
    _, grouped = patient_groups(samples)
    notes: list[str] = []
    links = np.empty((0, 2), dtype=np.int64)
    if cfg.group_near_duplicates:
        pairs = near_duplicate_pairs(samples, threshold=cfg.near_duplicate_threshold, window=cfg.train.window)
        links = pairs[["i", "j"]].to_numpy(dtype=np.int64)
        notes.append(
            f"--group-near-duplicates: {len(pairs)} pair(s) within {cfg.near_duplicate_threshold} bits "
            "(256-bit phash, exact duplicates included) kept on one side of every split"
        )
    groups = leakage_groups(samples, links=links)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CovidCTWarning)
        try:
            folds = make_folds(samples, classes, cfg.folds, cfg.repeats, cfg.seed, groups=groups)
        except DataError as exc:  # the splitter only knows "<dataset>"; the user knows the path
            raise DataError(cfg.data if exc.path == "<dataset>" else exc.path, exc.reason) from None
    fold_notes = [str(w.message) for w in caught if issubclass(w.category, CovidCTWarning)]
    for note in fold_notes:  # re-emitted once here, recorded in warnings.json
        warnings.warn(note, CovidCTWarning, stacklevel=2)
    notes.extend(fold_notes)
    # the scan says "no patient ids" too; the fold warnings above already do, once is enough
    notes.extend(str(w) for w in getattr(scan, "warnings", ()) or () if "no patient id" not in str(w))
    duplicates = list(getattr(scan, "duplicates", []) or [])
    if duplicates:
        notes.append(
            f"{len(duplicates)} set(s) of byte-identical images: each kept on one side of every split"
        )
    skipped = list(getattr(scan, "skipped", []) or [])
    if skipped:
        notes.append(f"{len(skipped)} unreadable file(s) left out (see manifest.csv)")
    splits: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for f in folds:
        train_samples = [samples[i] for i in f.train_idx]
        tr, va = validation_split(
            train_samples,
            classes,
            cfg.train.val_fraction,
            seed=cfg.seed + 1000 * f.repeat + f.fold,
            groups=groups[f.train_idx],
        )
        splits[(f.repeat, f.fold)] = (f.train_idx[tr], f.train_idx[va], f.test_idx)
    run = Path(cfg.out)
    resolved = replace(cfg, train=cfg.train.resolve(get_spec(cfg.model)))
    plan = CVPlan(
        cfg=resolved,
        run_dir=run,
        samples=samples,
        classes=classes,
        folds=folds,
        splits=splits,
        grouped=grouped,
        warnings=notes,
        run_id=run.resolve().name,
        groups=groups,
    )
    if write:
        _write_plan(plan, scan)
    return plan


def _write_plan(plan: CVPlan, scan: Any) -> None:
    run = plan.run_dir
    run.mkdir(parents=True, exist_ok=True)
    config = config_to_dict(plan.cfg)
    table = _folds_table(plan)
    old_config, old_folds = run / "config.json", run / "folds.csv"
    if old_config.is_file():
        try:
            previous = json.loads(old_config.read_text(encoding="utf-8"))
        except ValueError:
            previous = None
        if previous is not None and comparable_config(previous) != comparable_config(config):
            raise ConfigError(
                f"{run}: holds a run with other options; use another --out (or --config "
                f"{old_config} to resume it)"
            )
    if old_folds.is_file():
        before = pd.read_csv(old_folds, dtype=str, keep_default_na=False)
        if not before.equals(table.astype(str)):
            raise ConfigError(f"{run}: holds a run with other data or folds; use another --out")
    write_json_atomic(run / "config.json", config)
    write_json_atomic(run / "warnings.json", {"warnings": plan.warnings})
    save_manifest(scan, run / "manifest.csv")
    with atomic_path(old_folds) as tmp:
        table.to_csv(tmp, index=False)
    write_json_atomic(
        run / "env.json",
        environment_record(
            plan.cfg.seed,
            data=str(plan.cfg.data),
            manifest_sha256=sha256_file(run / "manifest.csv"),
            folds_sha256=sha256_file(old_folds),
            n_samples=len(plan.samples),
            classes=list(plan.classes),
            grouped=plan.grouped,
            run_id=plan.run_id,
        ),
    )


def run_fold(
    plan: CVPlan,
    repeat: int,
    fold: int,
    *,
    model: str | None = None,
    train: TrainConfig | None = None,
    run_dir: str | Path | None = None,
    progress: ProgressLike | None = None,
) -> Path:
    """Train and test one (repeat, fold) job; returns its predictions file (skipped if it already exists).

    ``model``, ``train`` and ``run_dir`` override the plan's (the comparison study runs several models on one
    plan's folds).
    """
    if (repeat, fold) not in plan.splits:
        raise ConfigError(f"no fold r{repeat}_f{fold} in this plan ({len(plan.splits)} jobs)")
    target = plan.predictions_path(repeat, fold, Path(run_dir) if run_dir else None)
    if target.is_file():
        return target
    spec = get_spec(model or plan.cfg.model)
    cfg = (train or plan.cfg.train).resolve(spec)
    assert cfg.image_size is not None
    train_idx, val_idx, test_idx = plan.splits[(repeat, fold)]
    pick = lambda idx: [plan.samples[i] for i in idx]  # noqa: E731
    on_features = uses_feature_cache(cfg)  # features come from the disk cache: no decoded-image cache needed
    cache = (
        plan.cache_for(cfg.image_size, cfg.window, progress, crop=cfg.crop, standardize=cfg.standardize)
        if cfg.cache and not on_features
        else None
    )
    run_id = Path(run_dir).resolve().name if run_dir else plan.run_id
    result = fit(
        pick(train_idx),
        pick(val_idx),
        plan.classes,
        spec,
        cfg,
        target.parent,
        resume=True,
        cache=cache,
        progress=progress,
        env={"repeat": repeat, "fold": fold, "run_id": run_id},
    )
    if on_features:
        test_ds: Any = extract_features(
            result.model,
            pick(test_idx),
            plan.classes,
            result.preprocess,
            cache_dir=feature_cache_dir(cfg),
            window=cfg.window,
            device=_device_of(result.model),
            batch_size=cfg.batch_size,
            progress=progress,
        )
        net, channels_last = head_network(result.model), False
    else:
        test_ds = SliceDataset(pick(test_idx), plan.classes, result.preprocess, cache=cache, with_index=True)
        net, channels_last = result.model, bool(cfg.channels_last)
    if len(test_ds) == 0:
        raise DataError(target.parent, "no readable test images in this fold")
    probs, _ = predict_proba(
        net,
        make_loader(test_ds, cfg, train=False),
        _device_of(result.model),
        amp=bool(cfg.amp),
        channels_last=channels_last,
    )
    table = pd.DataFrame(
        {
            "path": [s.path for s in test_ds.samples],
            "patient_id": [s.patient_id for s in test_ds.samples],
            "label": [s.label for s in test_ds.samples],
            **{f"prob_{c}": probs[:, i] for i, c in enumerate(plan.classes)},
            "fold": fold,
            "repeat": repeat,
            "model": spec.name,
            "run_id": run_id,
        }
    )

    write_predictions(table, target)
    (target.parent / "last.pt").unlink(
        missing_ok=True
    )  # training state is only needed until the fold is done
    return target


def _device_of(model: Any) -> Any:
    return next(model.parameters()).device


def cross_validate(cfg: CVConfig, *, progress: ProgressLike | None = None) -> CVResult:
    """Every (repeat, fold) job (finished ones skipped), then ``RUN/predictions.csv`` and the run's metrics.

    The metrics are computed, not written: pass ``result.run_metrics`` to
    :func:`covidct.report.run_metrics.write_run_metrics` for ``metrics.json``, ``metrics.md`` and the figures.
    """
    began = time.perf_counter()
    plan = plan_cv(cfg)
    # temp files a kill -9 left mid-write; also in finished folds, which fit() never revisits
    remove_stale_temps(plan.run_dir, RUN_FILES)
    for folder in sorted((plan.run_dir / "folds").glob("r*_f*")):
        remove_stale_temps(folder, RUN_FILES)
    files: list[Path] = []
    trained = skipped = 0
    with progress_task(progress, f"cv {plan.cfg.model}", len(plan.jobs)) as update:
        for repeat, fold in plan.jobs:
            done = plan.predictions_path(repeat, fold).is_file()
            update(description=f"cv {plan.cfg.model} r{repeat} f{fold}")
            files.append(run_fold(plan, repeat, fold, progress=progress))
            trained, skipped = trained + (not done), skipped + done
            update(advance=1)
    combined = plan.run_dir / "predictions.csv"
    write_predictions(read_predictions(files), combined)
    metrics = run_metrics(plan.run_dir)
    return CVResult(
        run_dir=plan.run_dir,
        predictions=combined,
        metrics=metrics.payload,
        run_metrics=metrics,
        trained=trained,
        skipped_jobs=skipped,
        warnings=plan.warnings,
        seconds=time.perf_counter() - began,
    )


def fold_patients(plan: CVPlan, repeat: int, fold: int) -> dict[str, Sequence[str]]:
    """Patient (group) ids per split of one job, for checks and reports."""
    groups = plan.groups if plan.groups is not None else leakage_groups(plan.samples)
    train, val, test = plan.splits[(repeat, fold)]
    return {
        "train": sorted(set(groups[train])),
        "val": sorted(set(groups[val])),
        "test": sorted(set(groups[test])),
    }
