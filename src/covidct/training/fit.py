"""Train one model: :func:`fit` (given train/validation samples) and :func:`train` (``covidct train``).

An output folder holds ``best.pt`` (best validation epoch, a self-describing checkpoint), ``last.pt``
(weights, optimizer, scheduler, epoch, history: ``--resume`` continues from it), ``train_log.csv`` (rewritten
atomically each epoch), ``config.json`` (resolved) and ``env.json``. Each epoch reseeds from ``seed + epoch``
so a resumed run follows the same path as an uninterrupted one.
"""

from __future__ import annotations

import csv
import hashlib
import math
import multiprocessing
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler

from covidct.config import config_to_dict
from covidct.data.dataset import SliceCache, SliceDataset, collate_skip_none, default_loader
from covidct.data.manifest import MANIFEST_COLUMNS, load_manifest, save_manifest, scan_dataset
from covidct.data.preprocess import Preprocess
from covidct.data.splits import SampleLike, label_indices, validation_split
from covidct.errors import CheckpointError, DataError
from covidct.models.checkpoint import CheckpointMeta, read_checkpoint, save_checkpoint
from covidct.models.factory import create_model_with_report, init_head
from covidct.models.metadata import window_record
from covidct.models.normalization import model_normalization
from covidct.models.registry import get_spec
from covidct.models.spec import ModelSpec
from covidct.models.weights import WeightsReport
from covidct.training.augment import build_augment
from covidct.training.config import TrainConfig, TrainRunConfig
from covidct.training.features import FeatureStats, default_cache_dir, extract_features, head_network
from covidct.training.loop import (
    ProgressLike,
    evaluate,
    progress_task,
    recalibrate_batchnorm,
    train_one_epoch,
)
from covidct.utils import (
    atomic_path,
    environment_record,
    remove_stale_temps,
    seed_everything,
    write_json_atomic,
)

BEST = "best.pt"
LAST = "last.pt"
LOG = "train_log.csv"
#: Files a run folder's atomic writes replace: a ``kill -9`` mid-write leaves ``.<name>.*.tmp`` beside them.
RUN_FILES = (
    BEST,
    LAST,
    LOG,
    "config.json",
    "env.json",
    "manifest.csv",
    "warnings.json",
    "folds.csv",
    "predictions.csv",
    "metrics.json",
    "metrics.md",
)
LOG_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds", "best")


@dataclass(frozen=True)
class FitResult:
    """What :func:`fit` produced; ``model`` holds the best weights (eval mode)."""

    out_dir: Path
    best_path: Path
    log_path: Path
    best_epoch: int
    best_score: float
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, float]]
    skipped: list[tuple[str, str]]
    meta: CheckpointMeta
    model: nn.Module = field(repr=False, compare=False)
    weights: WeightsReport | None = None
    feature_stats: Any = None  # FeatureStats of the fast linear probe (hits / computed), else None

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess.from_meta(self.meta)


def samples_hash(samples: Sequence[SampleLike]) -> str:
    """sha256 of the ``path,label,patient_id`` lines: identifies the data a model saw."""
    digest = hashlib.sha256()
    for s in samples:
        digest.update(f"{s.path},{s.label},{s.patient_id or ''}\n".encode())
    return digest.hexdigest()


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: numpy and random follow torch's per-worker seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(
    dataset: SliceDataset, cfg: TrainConfig, *, train: bool, generator: torch.Generator | None = None
) -> DataLoader:
    """A DataLoader for ``dataset``: shuffled (or class-balanced) for training, ordered otherwise."""
    sampler = None
    shuffle = train
    if train and cfg.sampler == "balanced" and len(dataset):
        counts = np.bincount(dataset.labels, minlength=len(dataset.classes)).astype(float)
        weights = 1.0 / counts[dataset.labels]
        sampler = WeightedRandomSampler(weights.tolist(), len(dataset), replacement=True, generator=generator)
        shuffle = False
    kwargs: dict[str, Any] = {}
    if cfg.workers > 0:
        kwargs.update(worker_init_fn=seed_worker, persistent_workers=False)
        if "fork" in multiprocessing.get_all_start_methods():  # workers share the cache copy-on-write
            kwargs["multiprocessing_context"] = "fork"
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=shuffle,
        sampler=sampler,
        generator=generator,
        num_workers=cfg.workers,
        collate_fn=collate_skip_none,
        pin_memory=cfg.device == "cuda",
        drop_last=train and len(dataset) > cfg.batch_size and len(dataset) % cfg.batch_size == 1,  # BatchNorm
        **kwargs,
    )


def build_cache(
    samples: Sequence[SampleLike],
    image_size: int,
    window: str,
    *,
    workers: int = 2,
    progress: ProgressLike | None = None,
    description: str = "decode",
    preprocess: Preprocess | None = None,
) -> SliceCache:
    """Decode and resize every sample once (with a progress task); ``preprocess`` adds its lung options."""
    paths = list(dict.fromkeys(s.path for s in samples))
    with progress_task(progress, description, len(paths)) as update:
        return SliceCache(
            paths,
            image_size,
            loader=default_loader(window),
            workers=workers,
            progress=lambda done, total: update(completed=done),
            preprocess=preprocess,
        )


def _set_trainable(params: Sequence[nn.Parameter], trainable: bool) -> None:
    for p in params:
        p.requires_grad_(trainable)


def uses_feature_cache(cfg: TrainConfig) -> bool:
    """The fast linear probe: a frozen backbone's features computed once per image (see ``features``)."""
    return cfg.freeze_backbone and cfg.feature_cache


def feature_cache_dir(cfg: TrainConfig) -> Path:
    return Path(cfg.feature_cache_dir) if cfg.feature_cache_dir else default_cache_dir()


def _score(row: dict[str, float], monitor: str) -> float:
    """Higher is better; falls back to training values when there is no validation split."""
    if monitor == "val_accuracy":
        value = row["val_accuracy"] if not math.isnan(row["val_accuracy"]) else row["train_accuracy"]
        return value
    value = row["val_loss"] if not math.isnan(row["val_loss"]) else row["train_loss"]
    return -value


def _write_log(path: Path, history: list[dict[str, float]]) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(history, columns=list(LOG_COLUMNS)).to_csv(tmp, index=False)


def fit(
    train_samples: Sequence[SampleLike],
    val_samples: Sequence[SampleLike],
    classes: Sequence[str],
    spec: ModelSpec | str,
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    cache: SliceCache | None = None,
    progress: ProgressLike | None = None,
    env: dict[str, Any] | None = None,
    record: dict[str, Any] | None = None,
) -> FitResult:
    """Train one model on ``train_samples``, choosing the best epoch on ``val_samples``.

    Args:
        cache: decoded images covering the samples (built here when ``None`` and ``cfg.cache``).
        resume: continue from ``out_dir/last.pt`` if it exists.
        env: extra fields for ``env.json``.
        record: extra top-level fields for ``config.json`` (e.g. ``data``, ``out``, so ``--config`` replays).

    Raises:
        DataError: no readable training images. ConfigError/CheckpointError: bad options or weights.
    """
    spec = get_spec(spec) if isinstance(spec, str) else spec
    cfg = cfg.resolve(spec)
    assert cfg.image_size is not None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out, RUN_FILES)  # 5-25 MB checkpoints half-written by a killed run
    classes = tuple(classes)
    if not train_samples:
        raise DataError(out, "no training samples")
    label_indices(list(train_samples) + list(val_samples), classes)  # every label known

    device = torch.device(cfg.device)
    seed_everything(cfg.seed)
    torch.manual_seed(cfg.seed)
    previous_det = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        model, weights_report = create_model_with_report(
            spec.name,
            len(classes),
            pretrained=cfg.pretrained,
            weights=cfg.weights,
            weights_dir=cfg.weights_dir,
            dropout=cfg.dropout,
        )
        init_head(model)
        mean, std = model_normalization(model)
        preprocess = Preprocess(
            image_size=cfg.image_size,
            mean=mean,  # type: ignore[arg-type]
            std=std,  # type: ignore[arg-type]
            crop=cfg.crop,
            standardize=cfg.standardize,
        )
        loader_fn = default_loader(cfg.window)
        net: nn.Module | None = None
        feature_stats = None
        train_ds: torch.utils.data.Dataset[Any]
        val_ds: torch.utils.data.Dataset[Any]
        if uses_feature_cache(cfg):
            feature_stats = FeatureStats()
            train_ds, val_ds = (
                extract_features(
                    model,
                    part,
                    classes,
                    preprocess,
                    cache_dir=feature_cache_dir(cfg),
                    window=cfg.window,
                    image_cache=cache,
                    loader=loader_fn,
                    device=device,
                    batch_size=cfg.batch_size,
                    progress=progress,
                    stats=feature_stats,
                )
                for part in (train_samples, val_samples)
            )
            net = head_network(model, cfg.dropout)
        else:
            if cache is None and cfg.cache:
                cache = build_cache(
                    [*train_samples, *val_samples],
                    cfg.image_size,
                    cfg.window,
                    workers=max(2, cfg.workers),
                    progress=progress,
                    preprocess=preprocess,
                )
            train_ds = SliceDataset(
                train_samples,
                classes,
                preprocess,
                cache=cache,
                loader=loader_fn,
                augment=build_augment(cfg.augmentation) if cfg.augmentation else None,
                with_index=True,
            )
            val_ds = SliceDataset(
                val_samples, classes, preprocess, cache=cache, loader=loader_fn, with_index=True
            )
        if len(train_ds) == 0:
            raise DataError(out, "none of the training images could be read")
        meta = CheckpointMeta(
            model_name=spec.name,
            timm_name=spec.timm_name,
            classes=classes,
            image_size=cfg.image_size,
            mean=cast("tuple[float, float, float]", mean),
            std=cast("tuple[float, float, float]", std),
            window=window_record(cfg.window),
            cam_layer=spec.cam_layer,
            dropout=cfg.dropout,
            preprocess=preprocess.record() if preprocess.uses_lungs else {},
            config=config_to_dict(cfg),
        )
        write_json_atomic(
            out / "config.json",
            {
                **(record or {}),
                "model": spec.name,
                "train": config_to_dict(cfg),
            },
        )
        write_json_atomic(
            out / "env.json",
            environment_record(
                cfg.seed,
                data_hash=samples_hash([*train_samples, *val_samples]),
                n_train=len(train_ds),
                n_val=len(val_ds),
                weights_source=weights_report.to_dict(),
                **({"feature_cache": vars(feature_stats)} if feature_stats is not None else {}),
                **({"no_lungs": len(cache.no_lungs)} if cache is not None and preprocess.uses_lungs else {}),
                **(env or {}),
            ),
        )
        result = _train(
            model, train_ds, val_ds, cfg, meta, out, device, resume=resume, progress=progress, net=net
        )
        return replace(result, weights=weights_report, feature_stats=feature_stats)
    finally:
        torch.use_deterministic_algorithms(previous_det)


def _train(
    model: nn.Module,
    train_ds: Any,
    val_ds: Any,
    cfg: TrainConfig,
    meta: CheckpointMeta,
    out: Path,
    device: torch.device,
    *,
    resume: bool,
    progress: ProgressLike | None,
    net: nn.Module | None = None,
) -> FitResult:
    """The epoch loop. ``net`` is what is trained and evaluated when it is not ``model`` itself (the head on
    cached features); checkpoints always hold the whole ``model``."""
    on_features = net is not None
    net = net if net is not None else model
    model.to(device)
    channels_last = bool(cfg.channels_last) and not on_features
    if channels_last:
        model.to(memory_format=torch.channels_last)
    head_ids = {id(p) for p in model.get_classifier().parameters()}  # type: ignore[operator]
    head = [p for p in model.parameters() if id(p) in head_ids]
    backbone = [p for p in model.parameters() if id(p) not in head_ids]
    groups: list[dict[str, Any]] = [{"params": head, "lr": cfg.lr}]
    if not cfg.freeze_backbone and not on_features:
        groups.append({"params": backbone, "lr": cfg.lr * cfg.backbone_lr_scale})
    optimizer = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    mode: Literal["min", "max"] = "max" if cfg.monitor == "val_accuracy" else "min"
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode=mode, factor=cfg.lr_factor, patience=cfg.lr_patience
    )
    weight = None
    if cfg.class_weighting == "balanced":
        counts = np.bincount(train_ds.labels, minlength=len(meta.classes)).astype(float)
        weight = torch.tensor(
            len(train_ds) / (len(meta.classes) * np.maximum(counts, 1)), dtype=torch.float32
        )
    criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing).to(device)
    scaler = torch.amp.GradScaler("cuda") if cfg.amp and device.type == "cuda" else None

    history: list[dict[str, float]] = []
    best_score, best_epoch, start = -math.inf, 0, 1
    last_path, best_path, log_path = out / LAST, out / BEST, out / LOG
    if resume and last_path.is_file():
        state = read_checkpoint(last_path)["extra"]
        if _resumable(state.get("config") or {}) != _resumable(meta.config):
            raise CheckpointError(
                f"{last_path}: saved with different options; remove it or use another --out"
            )
        model.load_state_dict(read_checkpoint(last_path)["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, best_score, best_epoch = (
            list(state["history"]),
            float(state["best_score"]),
            int(state["best_epoch"]),
        )
        start = int(state["epoch"]) + 1
    stopped_early = bool(history) and _patience_exceeded(history, best_epoch, cfg)
    generator = torch.Generator()
    train_loader = make_loader(train_ds, cfg, train=True, generator=generator)
    val_loader = make_loader(val_ds, cfg, train=False)
    with progress_task(progress, "epochs", cfg.epochs, completed=start - 1) as update_epochs:
        for epoch in range(start, cfg.epochs + 1):
            if stopped_early:
                break
            began = time.perf_counter()
            seed_everything(cfg.seed + epoch)
            torch.manual_seed(cfg.seed + epoch)
            generator.manual_seed(cfg.seed + epoch)
            frozen = cfg.freeze_backbone or epoch <= cfg.head_warmup
            _set_trainable(backbone, not frozen)
            stats = train_one_epoch(
                net,
                train_loader,
                optimizer,
                criterion,
                device,
                amp=bool(cfg.amp),
                channels_last=channels_last,
                scaler=scaler,
                progress=progress,
                description=f"epoch {epoch}/{cfg.epochs}" + (" (head only)" if frozen else ""),
                bn_eval=frozen,  # a frozen backbone keeps its (pretrained) BatchNorm statistics too
            )
            if cfg.recalibrate_bn and not frozen:
                recalibrate_batchnorm(model, train_loader, device, channels_last=channels_last)
            val = evaluate(net, val_loader, criterion, device, amp=bool(cfg.amp), channels_last=channels_last)
            row = {
                "epoch": epoch,
                "train_loss": stats.loss,
                "train_accuracy": stats.accuracy,
                "val_loss": val.loss,
                "val_accuracy": val.accuracy,
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": round(time.perf_counter() - began, 3),
                "best": 0,
            }
            score = _score(row, cfg.monitor)
            scheduler.step(score if mode == "max" else -score)
            if score > best_score:
                best_score, best_epoch, row["best"] = score, epoch, 1
                save_checkpoint(best_path, model, meta, epoch=epoch, score=score, monitor=cfg.monitor)
            history.append(row)
            _write_log(log_path, history)
            save_checkpoint(
                last_path,
                model,
                meta,
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                epoch=epoch,
                history=history,
                best_score=best_score,
                best_epoch=best_epoch,
                config=meta.config,
            )
            stopped_early = _patience_exceeded(history, best_epoch, cfg)
            update_epochs(
                advance=1,
                loss=f"{stats.loss:.4f}",
                acc=f"{stats.accuracy:.3f}",
                val_acc=f"{val.accuracy:.3f}",
            )
    if not best_path.is_file():
        raise CheckpointError(f"{best_path}: missing although training finished (was the folder edited?)")
    model.load_state_dict(read_checkpoint(best_path)["state_dict"])
    model.eval()
    return FitResult(
        out_dir=out,
        best_path=best_path,
        log_path=log_path,
        best_epoch=best_epoch,
        best_score=best_score,
        epochs_run=len(history),
        stopped_early=stopped_early and len(history) < cfg.epochs,
        history=history,
        skipped=list(train_ds.skipped) + list(val_ds.skipped),
        meta=meta,
        model=model,
    )


#: Options that may change when a run is resumed (more epochs, other hardware).
RESUMABLE_CHANGES = (
    "epochs",
    "patience",
    "device",
    "amp",
    "channels_last",
    "workers",
    "cache",
    "feature_cache_dir",
)


def _resumable(config: dict[str, Any]) -> dict[str, Any]:
    # options added after a run was saved take their defaults, so older runs still resume
    config = {**config_to_dict(TrainConfig()), **config}
    return {k: v for k, v in config.items() if k not in RESUMABLE_CHANGES}


def _patience_exceeded(history: list[dict[str, float]], best_epoch: int, cfg: TrainConfig) -> bool:
    return cfg.patience is not None and history[-1]["epoch"] - best_epoch >= cfg.patience


def _is_manifest(path: Path) -> bool:
    """A covidct manifest (``save_manifest``) rather than a plain ``path,label[,patient_id]`` CSV."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return True  # load_manifest reports the problem
    return {c.strip().lower() for c in header} >= set(MANIFEST_COLUMNS)


def load_samples(data: str | Path) -> tuple[list[SampleLike], tuple[str, ...], Any]:
    """A data folder or a plain ``path,label[,patient_id]`` CSV (``scan_dataset``: every file validated), or a
    covidct manifest CSV (``load_manifest``) -> samples, classes, scan."""
    path = Path(data)
    if path.is_dir():
        scan = scan_dataset(path)
    elif path.is_file():
        scan = load_manifest(path) if _is_manifest(path) else scan_dataset(path)
    else:
        raise DataError(path, "no such data folder or manifest file")
    if not scan.samples:
        raise DataError(path, "no readable images found")
    return list(scan.samples), tuple(scan.classes), scan


def train(cfg: TrainRunConfig, *, progress: ProgressLike | None = None) -> FitResult:
    """``covidct train``: all data, a validation split from the training patients, results in ``cfg.out``.

    As ``cv`` does, the run folder records the data: ``manifest.csv`` (unreadable files marked
    ``readable=false``) and ``warnings.json``; the result's ``skipped`` lists every file left out."""
    samples, classes, scan = load_samples(cfg.data)
    try:
        train_idx, val_idx = validation_split(samples, classes, cfg.train.val_fraction, seed=cfg.train.seed)
    except DataError as exc:
        raise DataError(cfg.data if exc.path == "<dataset>" else exc.path, exc.reason) from None
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    unreadable = list(getattr(scan, "skipped", []) or [])
    save_manifest(scan, out / "manifest.csv")
    notes = list(getattr(scan, "warnings", ()) or ())
    if unreadable:
        notes.append(f"{len(unreadable)} unreadable file(s) left out (see manifest.csv)")
    write_json_atomic(out / "warnings.json", {"warnings": notes, "skipped": [list(s) for s in unreadable]})
    result = fit(
        [samples[i] for i in train_idx],
        [samples[i] for i in val_idx],
        classes,
        cfg.model,
        cfg.train,
        cfg.out,
        resume=cfg.resume,
        progress=progress,
        env={"data": str(cfg.data)},
        record={"data": cfg.data, "out": cfg.out},
    )
    return replace(result, skipped=unreadable + [s for s in result.skipped if s not in unreadable])
