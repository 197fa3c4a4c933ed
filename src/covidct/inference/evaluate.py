"""``covidct evaluate MODEL_OR_RUN DATA``: score a trained model on a labelled dataset (external evaluation).

``MODEL_OR_RUN`` is a covidct checkpoint, an ONNX model, a training run folder (``RUN/best.pt``) or a CV run
folder (``RUN/folds/*/best.pt``: the fold models' probabilities are averaged, an ensemble). ``DATA`` is any
layout :func:`covidct.data.manifest.scan_dataset` reads (class folders, class/patient folders, a CSV, DICOM
series). Label sets that differ are mapped by explicit ``FROM=TO`` pairs, applied to the data's labels and to
the model's classes alike (model classes mapped onto one name have their probabilities summed), or refused.
``backend``/``precision`` pick the runtime as for ``predict`` (:func:`covidct.inference.load.load_predictor`);
slices are decoded by the predictor's ordered pool (:func:`covidct.data.pipeline.ordered_prefetch`).

Writes into ``OUT``: ``predictions.csv`` (the standard predictions schema of
:mod:`covidct.evaluation.predictions`, one test set: fold 0, repeat 0, plus the data's own label in
``source_label``, and the ``backend`` and ``precision`` that ran), ``manifest.csv``, ``config.json``,
``env.json``, ``warnings.json``; the metrics are computed by the same code as ``covidct cv``
(:func:`covidct.evaluation.summary.run_metrics`) and the caller writes ``metrics.json``, ``metrics.md``,
confusion matrices and ROC curves (:func:`covidct.report.run_metrics.write_run_metrics`, as
``covidct evaluate`` does). ``covidct report OUT`` renders the folder. Unreadable files are reported and
skipped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from covidct.config import config_to_dict
from covidct.data.manifest import (
    DatasetScan,
    Sample,
    canonical_label,
    load_manifest,
    resolve_aliases,
    save_manifest,
    scan_dataset,
)
from covidct.data.readers import load_slice
from covidct.errors import CheckpointError, ConfigError, DataError
from covidct.evaluation.predictions import write_predictions
from covidct.evaluation.summary import RunMetrics, run_metrics
from covidct.inference.backends import check_backend
from covidct.inference.load import load_predictor
from covidct.inference.predictor import Predictor, SliceImage
from covidct.utils import environment_record, sha256_file, write_json_atomic

PathLike = str | os.PathLike[str]
LEVELS = ("slice", "patient", "both")
SINGLE_TEST_SET_NOTE = (
    "external evaluation on one test set: there are no folds, so the ± std of every metric is 0 by "
    "construction and says nothing about uncertainty"
)


@dataclass(frozen=True, kw_only=True)
class EvaluateConfig:
    """``covidct evaluate MODEL_OR_RUN DATA --out DIR [--level] [--map FROM=TO ...]``."""

    model: str
    data: str
    out: str
    level: str = "both"  # which level the CLI prints; metrics.json always holds both
    mapping: tuple[tuple[str, str], ...] = ()
    batch_size: int = 16
    device: str = "cpu"
    window: str | None = None  # CT window for DICOM/NIfTI; None -> each model's own
    backend: str | None = None  # torch | onnx | openvino; None: by each model file's suffix
    precision: str = "auto"  # auto | fp32 | bf16 (openvino)

    def __post_init__(self) -> None:
        for name in ("model", "data", "out"):
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                object.__setattr__(self, name, str(value))
        if self.level not in LEVELS:
            raise ConfigError(f"--level must be one of {', '.join(LEVELS)}, got {self.level!r}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        check_backend(self.backend, self.precision)
        object.__setattr__(self, "mapping", tuple((str(a), str(b)) for a, b in self.mapping))


@dataclass(frozen=True)
class LabelMap:
    """How the data's labels and the model's classes meet: ``classes`` is the evaluation's class order."""

    classes: tuple[str, ...]
    data: dict[str, str]  # data label -> evaluation class
    columns: dict[str, list[int]]  # evaluation class -> model class indices whose probabilities are summed

    def probabilities(self, probs: np.ndarray) -> np.ndarray:
        return np.stack([probs[:, self.columns[c]].sum(axis=1) for c in self.classes], axis=1)


@dataclass
class EvaluateResult:
    out: Path
    predictions: Path
    metrics: dict[str, Any]  # what metrics.json holds (``run_metrics.payload``)
    classes: tuple[str, ...]
    model_classes: tuple[str, ...]
    data_classes: tuple[str, ...]
    models: list[Path]
    n_slices: int
    n_patients: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    backend: str = ""  # what ran (torch | onnx | openvino)
    precision: str = ""  # what ran, after `auto` was resolved
    precision_note: str = ""  # why `auto` chose it, when that needs saying
    run_metrics: RunMetrics | None = None  # for covidct.report.run_metrics.write_run_metrics


def parse_mapping(items: Sequence[str] | None) -> tuple[tuple[str, str], ...]:
    """``["CAP=non-COVID", ...]`` -> ``(("CAP", "non-COVID"), ...)``."""
    pairs = []
    for item in items or ():
        source, sep, target = item.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise ConfigError(f"--map expects CLASS=CLASS (e.g. CAP=non-COVID), got {item!r}")
        pairs.append((source.strip(), target.strip()))
    return tuple(pairs)


def map_labels(
    data_classes: Sequence[str], model_classes: Sequence[str], mapping: Sequence[tuple[str, str]] = ()
) -> LabelMap:
    """Apply ``FROM=TO`` to both label sets; every (mapped) data label must be a (mapped) model class.

    ``FROM`` may be a class name of either side or a raw folder name with a default alias (``CAP``,
    ``Normal``). Raises :class:`ConfigError` listing both label sets when they do not meet, or for a ``FROM``
    that names no class.
    """
    aliases = resolve_aliases()
    rename: dict[str, str] = {}
    for source, target in mapping:
        for key in {source, canonical_label(source, aliases)}:
            rename[key] = target
    known = set(data_classes) | set(model_classes)
    unused = [s for s, _ in mapping if s not in known and canonical_label(s, aliases) not in known]
    if unused:
        raise ConfigError(
            f"--map names no class: {', '.join(unused)} (the data's classes: {', '.join(data_classes)}; "
            f"the model's: {', '.join(model_classes)})"
        )
    targets = [rename.get(c, c) for c in model_classes]
    classes = tuple(dict.fromkeys(targets))
    if len(classes) < 2:
        raise ConfigError(f"--map leaves the model with one class ({classes[0]}): nothing to evaluate")
    data = {c: rename.get(c, c) for c in data_classes}
    missing = sorted({data[c] for c in data_classes} - set(classes))
    if missing:
        hint = " ".join(f"--map {c}=CLASS" for c in data_classes if data[c] in missing)
        raise ConfigError(
            f"the data's classes ({', '.join(data_classes)}) differ from the model's "
            f"({', '.join(model_classes)}): {', '.join(missing)} is not a model class"
            + (" after --map" if mapping else "")
            + f"; map them explicitly, e.g. {hint}"
        )
    columns = {c: [i for i, t in enumerate(targets) if t == c] for c in classes}
    return LabelMap(classes=classes, data=data, columns=columns)


def model_files(model_or_run: PathLike) -> list[Path]:
    """The model file(s) behind ``MODEL_OR_RUN``: the file, ``RUN/best.pt`` or ``RUN/folds/*/best.pt``."""
    path = Path(model_or_run)
    if path.is_file():
        return [path]
    if path.is_dir():
        if (path / "best.pt").is_file():
            return [path / "best.pt"]
        folds = sorted(path.glob("folds/*/best.pt"))
        if folds:
            return folds
        raise CheckpointError(
            f"{path}: no model found (expected RUN/best.pt, a CV run's RUN/folds/*/best.pt, or give a "
            ".pt/.onnx file)"
        )
    raise CheckpointError(f"{path}: no such model file or run folder")


def _load_predictors(files: Sequence[Path], cfg: EvaluateConfig) -> list[Predictor]:
    predictors = []
    for f in files:
        predictors.append(
            load_predictor(
                f, backend=cfg.backend, precision=cfg.precision, batch_size=cfg.batch_size, device=cfg.device
            )
        )
    first = predictors[0].classes
    for f, p in zip(files, predictors, strict=True):
        if p.classes != first:
            raise CheckpointError(f"{f}: classes {list(p.classes)} differ from {list(first)} in {files[0]}")
    return predictors


def _slices(samples: Sequence[Sample], window: str) -> Iterator[tuple[str, SliceImage, str]]:
    """One lazy loader per sample: the predictor's ordered decoding pool reads them (as ``predict`` does); an
    unreadable one comes back in the result's ``skipped``."""
    for s in samples:
        yield s.path, partial(load_slice, s.path, window=window), s.patient_id or ""


def _scan(data: PathLike) -> DatasetScan:
    path = Path(data)
    if not path.exists():
        raise DataError(path, "no such data folder or manifest file")
    if path.is_file() and path.suffix.lower() == ".csv":
        try:
            return load_manifest(path)
        except DataError:  # not a covidct manifest: a plain path,label[,patient_id] CSV
            pass
    return scan_dataset(path)


def evaluate(cfg: EvaluateConfig, *, progress: Callable[[int], None] | None = None) -> EvaluateResult:
    """Score ``cfg.model`` on ``cfg.data`` and write the evaluation folder (see the module docstring).

    Raises:
        CheckpointError: no usable model. DataError: no readable labelled image. ConfigError: label sets that
            do not meet (listing both), a bad ``--map``.
    """
    files = model_files(cfg.model)
    predictors = _load_predictors(files, cfg)
    model_classes = tuple(predictors[0].classes)
    scan = _scan(cfg.data)
    labels = map_labels(scan.classes, model_classes, cfg.mapping)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)

    skipped: list[tuple[str, str]] = list(scan.skipped)
    unique = list({s.path: s for s in scan.samples}.values())
    probs: list[pd.DataFrame] = []
    for i, predictor in enumerate(predictors):
        window = cfg.window or predictor.meta.window_spec
        result = predictor.predict_slices(_slices(unique, window), progress=progress)
        if i == 0:
            skipped += result.skipped
        frame = result.slices.set_index("path")[[f"prob_{c}" for c in model_classes]]
        probs.append(frame)
    paths = probs[0].index
    mean = np.mean([p.reindex(paths).to_numpy(dtype=float) for p in probs], axis=0)
    if np.isnan(mean).any():  # a file one model could read and another could not: keep rows all read
        keep = ~np.isnan(mean).any(axis=1)
        skipped += [(p, "unreadable for some of the ensemble's models") for p in paths[~keep]]
        paths, mean = paths[keep], mean[keep]
    by_path = {s.path: s for s in unique}
    samples = [by_path[p] for p in paths]
    mapped = labels.probabilities(mean)
    name = predictors[0].meta.model_name
    backend, precision = predictors[0].backend, predictors[0].precision
    table = pd.DataFrame(
        {
            "path": [s.path for s in samples],
            "patient_id": [s.patient_id for s in samples],
            "label": [labels.data[s.label] for s in samples],
            **{f"prob_{c}": mapped[:, j] for j, c in enumerate(labels.classes)},
            "fold": 0,
            "repeat": 0,
            "model": name,
            "run_id": out.resolve().name,
            "source_label": [s.label for s in samples],
            "backend": backend,
            "precision": precision,
        }
    )
    notes = _notes(cfg, scan, labels, model_classes, files, skipped)
    target = write_predictions(table, out / "predictions.csv")
    save_manifest(scan, out / "manifest.csv")
    write_json_atomic(out / "warnings.json", {"warnings": notes})
    record = {
        "kind": "evaluate",
        **config_to_dict(cfg),
        "models": [str(f) for f in files],
        "ensemble": len(files) > 1,
        "model_name": name,
        "ran_with": {"backend": backend, "precision": precision},
        "model_classes": list(model_classes),
        "data_classes": list(scan.classes),
        "classes": list(labels.classes),
        "label_map": labels.data,
        "probability_sums": {c: [model_classes[i] for i in idx] for c, idx in labels.columns.items()},
        "n_slices": len(table),
        "n_skipped": len(skipped),
    }
    write_json_atomic(out / "config.json", record)
    write_json_atomic(
        out / "env.json",
        environment_record(
            0,
            data=str(cfg.data),
            manifest_sha256=sha256_file(out / "manifest.csv"),
            models_sha256={str(f): sha256_file(f) for f in files},
            n_samples=len(table),
            classes=list(labels.classes),
            grouped=bool(table["patient_id"].notna().any()),
            run_id=out.resolve().name,
        ),
    )
    metrics = run_metrics(out)
    return EvaluateResult(
        out=out,
        predictions=target,
        metrics=metrics.payload,
        run_metrics=metrics,
        classes=labels.classes,
        model_classes=model_classes,
        data_classes=tuple(scan.classes),
        models=files,
        n_slices=len(table),
        n_patients=int(table["patient_id"].dropna().nunique()),
        skipped=skipped,
        warnings=notes,
        backend=backend,
        precision=precision,
        precision_note=predictors[0].precision_note,
    )


def _notes(
    cfg: EvaluateConfig,
    scan: DatasetScan,
    labels: LabelMap,
    model_classes: Sequence[str],
    files: Sequence[Path],
    skipped: Sequence[tuple[str, str]],
) -> list[str]:
    notes = [SINGLE_TEST_SET_NOTE]
    if len(files) > 1:
        notes.append(f"ensemble of {len(files)} fold models: their slice probabilities are averaged")
    changed = {k: v for k, v in labels.data.items() if k != v}
    if changed:
        notes.append("data labels mapped: " + ", ".join(f"{k} -> {v}" for k, v in changed.items()))
    merged = {c: idx for c, idx in labels.columns.items() if len(idx) > 1 or model_classes[idx[0]] != c}
    if merged:
        notes.append(
            "model classes mapped: "
            + "; ".join(
                f"p({c}) = " + " + ".join(f"p({model_classes[i]})" for i in idx) for c, idx in merged.items()
            )
        )
    absent = [c for c in labels.classes if c not in set(labels.data.values())]
    if absent:
        notes.append(f"no test image of class {', '.join(absent)}: its sensitivity is undefined")
    if not scan.has_patients:
        notes.append(
            "some or all slices have no patient id: patient-level metrics treat each as its own patient"
        )
    if skipped:
        notes.append(f"{len(skipped)} unreadable file(s) skipped (see the evaluate output)")
    return notes
