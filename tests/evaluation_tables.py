"""Synthetic predictions tables for the evaluation tests (no model, no torch)."""

from __future__ import annotations

import numpy as np
import pandas as pd

CLASSES = ("COVID-19", "Healthy", "Pneumonia")


def make_predictions(
    *,
    repeats: int = 2,
    folds: int = 3,
    classes: tuple[str, ...] = CLASSES,
    patients_per_class: int = 3,
    slices_per_patient: int = 3,
    with_patients: bool = True,
    model: str = "m",
    signal: float = 1.5,
    seed: int = 0,
) -> pd.DataFrame:
    """A predictions table with the contract's columns; each class's own probability is pushed up by
    ``signal``."""
    rng = np.random.default_rng(seed)
    rows = []
    for repeat in range(repeats):
        for fold in range(folds):
            for ci, cls in enumerate(classes):
                for p in range(patients_per_class):
                    pid = f"{cls}-r{repeat}f{fold}p{p}"
                    for s in range(slices_per_patient):
                        logits = rng.normal(size=len(classes))
                        logits[ci] += signal
                        prob = np.exp(logits) / np.exp(logits).sum()
                        row = {
                            "path": f"{pid}/{s}.png",
                            "patient_id": pid if with_patients else "",
                            "label": cls,
                        }
                        row.update({f"prob_{c}": float(v) for c, v in zip(classes, prob, strict=False)})
                        row.update(fold=fold, repeat=repeat, model=model, run_id="run-1")
                        rows.append(row)
    return pd.DataFrame(rows)


def labels_from_confusion(cm: np.ndarray, classes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """y_true / y_pred arrays whose confusion matrix (rows true, columns predicted) is ``cm``."""
    y_true, y_pred = [], []
    for i, t in enumerate(classes):
        for j, p in enumerate(classes):
            y_true += [t] * int(cm[i, j])
            y_pred += [p] * int(cm[i, j])
    return np.array(y_true, dtype=object), np.array(y_pred, dtype=object)


def one_hot_probs(y_pred: np.ndarray, classes: tuple[str, ...], confidence: float = 0.8) -> np.ndarray:
    """Probabilities whose argmax is ``y_pred``."""
    idx = np.array([classes.index(p) for p in y_pred])
    prob = np.full((len(y_pred), len(classes)), (1 - confidence) / (len(classes) - 1))
    prob[np.arange(len(y_pred)), idx] = confidence
    return prob
