"""Radiologists' slice labels (issue 14): does the model's per-slice disease probability, and does its map,
follow the slices where infection is visible? Pure pandas / sklearn, no torch.

The labels table (``covid-ct-md/slice-labels.csv``) has ``path, patient, diagnosis, instance_number,
slice_location, infection_visible``. Within the diseased patients (diagnosis not normal), a slice without
visible infection is no evidence of the diagnosis on its own, so the score is the ROC AUC of the slice's
disease probability (1 - P(healthy class), or P(COVID-19) when the model has no healthy class) against
``infection_visible``; with a shortcut audit, the mean in-lung CAM energy on infected vs clean slices.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from covidct.errors import DataError

HEALTHY_NAMES = ("healthy", "normal", "non-covid", "noncovid")
LABEL_COLUMNS = ("path", "patient", "diagnosis", "infection_visible")


def read_slice_labels(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The labels table, validated (``DataError`` naming the file and the problem)."""
    try:
        table = pd.read_csv(path, dtype={"path": str, "patient": str, "diagnosis": str})
    except (OSError, ValueError) as exc:
        raise DataError(path, f"cannot read slice labels ({exc})") from None
    missing = [c for c in LABEL_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(
            path, f"slice labels need columns {', '.join(LABEL_COLUMNS)}; missing {', '.join(missing)}"
        )
    flags = pd.to_numeric(table["infection_visible"], errors="coerce")
    bad = flags.isna() | ~flags.isin([0, 1])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 2
        raise DataError(path, f"row {row}: infection_visible must be 0 or 1")
    return table.assign(infection_visible=flags.astype(int))


def disease_probability(probabilities: Mapping[str, float]) -> float:
    """1 - P(healthy class), or P(COVID-19) (any class named like it) when there is no healthy class."""
    for name, p in probabilities.items():
        if name.lower().replace("_", "-") in HEALTHY_NAMES:
            return 1.0 - float(p)
    for name, p in probabilities.items():
        if "covid" in name.lower():
            return float(p)
    raise ValueError(f"no healthy or COVID-19 class among {', '.join(probabilities)}")


def match_labels(sources: Sequence[str], labels: pd.DataFrame) -> list[int | None]:
    """For each slice source, the row of ``labels`` whose ``path`` its path ends with (None if none)."""
    by_suffix = {Path(p).as_posix(): i for i, p in enumerate(labels["path"])}
    out: list[int | None] = []
    for source in sources:
        parts = Path(source.split("#", 1)[0]).as_posix().split("/")
        found = None
        for k in range(len(parts)):
            found = by_suffix.get("/".join(parts[k:]))
            if found is not None:
                break
        out.append(found)
    return out


@dataclass(frozen=True)
class SliceLabelScores:
    """Scores on the ``n`` explained slices of ``n_patients`` diseased patients that have a label."""

    n: int
    n_patients: int
    n_infected: int
    auc: float  # disease probability vs infection_visible (NaN with one class only)
    lung_share_infected: float = math.nan  # mean in-lung CAM energy (audit) on infected slices
    lung_share_clean: float = math.nan


def slice_label_scores(table: pd.DataFrame) -> SliceLabelScores:
    """From a table with ``patient, diagnosis, infection_visible, disease_probability`` and optionally
    ``lung_share``: the scores within the patients whose diagnosis is not normal/healthy."""
    from sklearn.metrics import roc_auc_score

    diseased = table[~table["diagnosis"].str.lower().isin(HEALTHY_NAMES)]
    y = diseased["infection_visible"].to_numpy(dtype=int)
    auc = (
        float(roc_auc_score(y, diseased["disease_probability"].to_numpy(dtype=float)))
        if len(np.unique(y)) == 2
        else math.nan
    )
    shares = {}
    for flag in (1, 0):
        if "lung_share" in diseased:
            values = diseased.loc[diseased["infection_visible"] == flag, "lung_share"].dropna()
            shares[flag] = float(values.mean()) if len(values) else math.nan
        else:
            shares[flag] = math.nan
    return SliceLabelScores(
        n=len(diseased),
        n_patients=int(diseased["patient"].nunique()),
        n_infected=int(y.sum()),
        auc=auc,
        lung_share_infected=shares[1],
        lung_share_clean=shares[0],
    )
