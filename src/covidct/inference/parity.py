"""Accuracy parity of a reduced-precision backend against fp32 on real slices (issue #15).

``run_parity(model, data)`` predicts ``data`` twice with the same backend, fp32 and the candidate precision
(default OpenVINO bf16), and reports max |dp| (over slices and classes), top-1 agreement and, where ``data``
has labels, the ROC AUC of each and their difference. ``data``: a dataset folder (class folders, as
``covidct train`` reads it: labels), a CSV with a ``path`` (and optional ``label``) column, e.g. a fold's
held-out ``predictions.csv``, or any folder/series of slices (no labels: no AUC).

The result is saved beside the model as ``<model>.parity.json`` (with the model file's SHA-256; the record:
:mod:`covidct.inference.parity_record`); precision ``auto`` reads it and refuses bf16 (uses fp32, with a
message) for a model whose top-1 agreement is under ``MIN_AGREEMENT``. No torch import here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from covidct.data.manifest import scan_dataset
from covidct.errors import ConfigError, DataError
from covidct.inference.load import load_predictor
from covidct.inference.parity_record import ParityReport, parity_record_path
from covidct.utils import sha256_file, write_json_atomic

PathLike = str | os.PathLike[str]


def roc_auc(probs: np.ndarray, labels: np.ndarray) -> float | None:
    """First class vs rest for 2 classes, macro one-vs-rest over the classes present otherwise; None if only
    one class is present."""
    present = np.unique(labels)
    if len(present) < 2:
        return None
    if probs.shape[1] == 2:
        return float(roc_auc_score(labels == 0, probs[:, 0]))
    return float(np.mean([roc_auc_score(labels == c, probs[:, c]) for c in present]))


def parity_metrics(
    reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None = None
) -> dict[str, Any]:
    """max |Δp|, top-1 agreement and (with labels: class indices, -1 = unknown) both ROC AUCs."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape or reference.ndim != 2 or not len(reference):
        raise ValueError(
            f"need two equal (N, C) probability arrays, got {reference.shape}, {candidate.shape}"
        )
    out: dict[str, Any] = {
        "n_slices": len(reference),
        "max_abs_diff": float(np.abs(candidate - reference).max()),
        "agreement": float(np.mean(candidate.argmax(axis=1) == reference.argmax(axis=1))),
        "auc_fp32": None,
        "auc_candidate": None,
    }
    if labels is not None:
        known = np.asarray(labels) >= 0
        if known.any():
            out["auc_fp32"] = roc_auc(reference[known], np.asarray(labels)[known])
            out["auc_candidate"] = roc_auc(candidate[known], np.asarray(labels)[known])
    return out


def parity_inputs(data: PathLike, classes: tuple[str, ...] = ()) -> tuple[list[str], dict[str, str] | None]:
    """``(inputs to predict, labels by path or None)`` for a dataset folder, a CSV or a folder of slices.

    A folder counts as a labelled dataset only when its class folders are the model's ``classes``;
    otherwise (e.g. patient folders) it is plain slices."""
    data = Path(data)
    if not data.exists():
        raise DataError(data, "no such file or folder")
    if data.is_file() and data.suffix.lower() == ".csv":
        table = pd.read_csv(data, dtype=str, keep_default_na=False)
        if "path" not in table.columns:
            raise DataError(data, "a parity CSV needs a 'path' column (and optionally 'label')")
        paths = [p if Path(p).is_absolute() else str(data.parent / p) for p in table["path"]]
        paths = list(dict.fromkeys(paths))  # a CV predictions table may list a slice once per repeat
        labels = dict(zip(paths, table["label"], strict=False)) if "label" in table.columns else None
        return paths, labels
    if data.is_dir():
        try:
            scan = scan_dataset(data)
        except DataError:
            return [str(data)], None
        if len(scan.classes) >= 2 and scan.samples and (not classes or set(scan.classes) <= set(classes)):
            return [s.path for s in scan.samples], {s.path: s.label for s in scan.samples}
    return [str(data)], None


def run_parity(
    model: PathLike,
    data: PathLike,
    *,
    backend: str = "openvino",
    precision: str = "bf16",
    threads: int | None = None,
    batch_size: int = 8,
    save: bool = True,
) -> ParityReport:
    """Predict ``data`` with ``backend`` at fp32 and at ``precision``; compare (see the module docstring).
    ``save`` writes ``<model>.parity.json`` (what ``auto`` reads)."""
    if precision in ("fp32", "auto"):
        raise ConfigError(f"parity compares a reduced precision with fp32; got --precision {precision}")
    common: dict[str, Any] = {"threads": threads, "batch_size": batch_size}
    fp32 = load_predictor(model, backend=backend, precision="fp32", **common)
    inputs, labels = parity_inputs(data, fp32.classes)
    reference = fp32.predict(inputs)
    del fp32
    candidate = load_predictor(model, backend=backend, precision=precision, **common).predict(inputs)
    if reference.slices["path"].tolist() != candidate.slices["path"].tolist():
        raise DataError(data, "the two runs read different slices (files changed while running?)")
    label_idx = None
    if labels is not None:
        index = {c: i for i, c in enumerate(reference.classes)}
        unknown = sorted({lab for lab in labels.values() if lab and lab not in index})
        if unknown:
            raise DataError(data, f"labels {unknown} are not classes of the model {list(reference.classes)}")
        label_idx = np.array([index.get(labels.get(p, ""), -1) for p in reference.slices["path"]])
    metrics = parity_metrics(reference.probabilities, candidate.probabilities, label_idx)
    report = ParityReport(
        backend=backend,
        precision=precision,
        data=str(data),
        model=str(model),
        model_sha256=sha256_file(model),
        **metrics,
    )
    if save:
        write_json_atomic(parity_record_path(model), report.to_dict())
    return report
