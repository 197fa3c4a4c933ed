"""Metric properties: row order and label strings do not matter; patient level equals slice level without
ids."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from evaluation_tables import make_predictions

from covidct.evaluation.summary import per_fold_metrics


def _values(per_fold: pd.DataFrame) -> pd.Series:
    return per_fold.set_index(["model", "repeat", "fold", "level", "class", "metric"])["value"].sort_index()


def test_row_order_does_not_matter() -> None:
    df = make_predictions(seed=3)
    shuffled = df.sample(frac=1.0, random_state=7).reset_index(drop=True)
    pd.testing.assert_series_equal(_values(per_fold_metrics(df)), _values(per_fold_metrics(shuffled)))


def test_label_strings_do_not_matter() -> None:
    df = make_predictions(seed=4)
    rename = {"COVID-19": "c", "Healthy": "zz_h", "Pneumonia": "0p"}
    renamed = df.assign(label=df["label"].map(rename)).rename(
        columns={f"prob_{k}": f"prob_{v}" for k, v in rename.items()}
    )
    a = _values(per_fold_metrics(df)).rename(index=rename, level="class")
    b = _values(per_fold_metrics(renamed))
    pd.testing.assert_series_equal(a.sort_index(), b.sort_index())


def test_patient_level_equals_slice_level_without_patient_ids() -> None:
    df = make_predictions(with_patients=False, seed=5)
    pf = per_fold_metrics(df)
    slice_values = pf[pf["level"] == "slice"].drop(columns="level").reset_index(drop=True)
    patient_values = pf[pf["level"] == "patient"].drop(columns="level").reset_index(drop=True)
    pd.testing.assert_frame_equal(slice_values, patient_values)


def test_patient_level_differs_when_patients_pool_slices() -> None:
    df = make_predictions(seed=6, signal=0.8)
    pf = per_fold_metrics(df)
    acc = pf[(pf["class"] == "__all__") & (pf["metric"] == "accuracy")].groupby("level")["value"].mean()
    assert acc["patient"] != pytest.approx(acc["slice"])
    assert np.isfinite(acc).all()
