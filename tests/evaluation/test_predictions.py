"""The predictions table: schema, validation errors naming file and row, io, patient aggregation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from evaluation_tables import CLASSES, make_predictions

from covidct.errors import DataError
from covidct.evaluation.predictions import (
    PREDICTION_COLUMNS,
    aggregate_patients,
    classes_of,
    prob_columns,
    read_predictions,
    read_run_predictions,
    write_predictions,
)


def test_columns_classes_and_roundtrip(tmp_path: Path) -> None:
    df = make_predictions(repeats=1, folds=2)
    # shuffle the column order: the file gets the canonical order, classes keep the prob_ order
    df = df[list(reversed(df.columns))]
    path = write_predictions(df, tmp_path / "p.csv")
    back = read_predictions(path)
    reversed_classes = list(reversed(CLASSES))
    assert classes_of(back) == reversed_classes
    assert list(back.columns) == [
        "path",
        "patient_id",
        "label",
        *prob_columns(back),
        "fold",
        "repeat",
        "model",
        "run_id",
    ]
    assert set(PREDICTION_COLUMNS) <= set(back.columns)
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temp file
    np.testing.assert_allclose(
        back[prob_columns(back)].to_numpy(), df[prob_columns(back)].to_numpy(), rtol=0, atol=0
    )
    assert back["fold"].dtype.kind == "i" and back["label"].tolist() == df["label"].tolist()


def _write_raw(path: Path, df: pd.DataFrame) -> Path:
    df.to_csv(path, index=False)
    return path


def test_missing_column_names_the_file(tmp_path: Path) -> None:
    path = _write_raw(tmp_path / "bad.csv", make_predictions(repeats=1, folds=1).drop(columns=["label"]))
    with pytest.raises(DataError, match=r"bad\.csv: .*missing column.*label"):
        read_predictions(path)


def test_no_probability_columns(tmp_path: Path) -> None:
    df = make_predictions(repeats=1, folds=1)
    path = _write_raw(tmp_path / "noprob.csv", df.drop(columns=prob_columns(df)))
    with pytest.raises(DataError, match=r"noprob\.csv: .*prob_"):
        read_predictions(path)


@pytest.mark.parametrize("value", ["abc", ""])
def test_bad_probability_names_file_and_row(tmp_path: Path, value: str) -> None:
    df = make_predictions(repeats=1, folds=1).astype({"prob_Healthy": object})
    df.loc[4, "prob_Healthy"] = value
    path = _write_raw(tmp_path / "p.csv", df)
    with pytest.raises(DataError, match=r"p\.csv: row 5 \(line 6\): prob_Healthy is not a number"):
        read_predictions(path)


def test_probability_out_of_range(tmp_path: Path) -> None:
    df = make_predictions(repeats=1, folds=1)
    df.loc[2, "prob_COVID-19"] = 1.7
    with pytest.raises(DataError, match=r"row 3 .*not a probability"):
        read_predictions(_write_raw(tmp_path / "p.csv", df))


def test_unknown_label_names_file_and_row(tmp_path: Path) -> None:
    df = make_predictions(repeats=1, folds=1)
    df.loc[7, "label"] = "Flu"
    with pytest.raises(DataError, match=r"p\.csv: row 8 \(line 9\): label 'Flu' is not one of the classes"):
        read_predictions(_write_raw(tmp_path / "p.csv", df))


def test_non_integer_fold(tmp_path: Path) -> None:
    df = make_predictions(repeats=1, folds=1).astype({"fold": object})
    df.loc[0, "fold"] = "x"
    with pytest.raises(DataError, match=r"row 1 .*fold is not an integer"):
        read_predictions(_write_raw(tmp_path / "p.csv", df))


def test_missing_file_and_mismatched_classes(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: no such predictions file"):
        read_predictions(tmp_path / "nope.csv")
    a = write_predictions(make_predictions(repeats=1, folds=1), tmp_path / "a.csv")
    b = write_predictions(make_predictions(repeats=1, folds=1, classes=("x", "y")), tmp_path / "b.csv")
    with pytest.raises(DataError, match=r"b\.csv: classes"):
        read_predictions([a, b])


def test_optional_columns_get_defaults(tmp_path: Path) -> None:
    df = make_predictions(repeats=1, folds=1).drop(columns=["patient_id", "model", "run_id"])
    back = read_predictions(_write_raw(tmp_path / "p.csv", df))
    assert back["patient_id"].isna().all()
    assert (back["model"] == "").all() and (back["run_id"] == "").all()


def test_read_run_predictions_prefers_combined_then_folds(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such run folder"):
        read_run_predictions(tmp_path / "missing")
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(DataError, match="no predictions found"):
        read_run_predictions(run)
    df = make_predictions(repeats=1, folds=3)
    for fold, part in df.groupby("fold"):
        write_predictions(part, run / "folds" / f"r0_f{fold}" / "predictions.csv")
    from_folds = read_run_predictions(run)
    assert len(from_folds) == len(df) and sorted(from_folds["fold"].unique()) == [0, 1, 2]
    write_predictions(df[df["fold"] == 0], run / "predictions.csv")
    assert len(read_run_predictions(run)) == int((df["fold"] == 0).sum())


def test_aggregate_patients_means_and_schema() -> None:
    df = make_predictions(repeats=2, folds=2, patients_per_class=2, slices_per_patient=3)
    agg = aggregate_patients(df)
    assert list(agg.columns) == list(df.columns)
    assert len(agg) == df.groupby(["model", "repeat", "fold", "patient_id"]).ngroups == 2 * 2 * 3 * 2
    pid = df["patient_id"].iloc[0]
    row = agg[(agg["patient_id"] == pid) & (agg["repeat"] == 0)].iloc[0]
    expected = df[(df["patient_id"] == pid) & (df["repeat"] == 0)][prob_columns(df)].mean()
    np.testing.assert_allclose(row[prob_columns(df)].to_numpy(dtype=float), expected.to_numpy())
    assert row["path"] == pid and row["label"] == df["label"].iloc[0]


def test_aggregate_patients_keeps_slices_without_patient_id() -> None:
    df = make_predictions(repeats=1, folds=1, patients_per_class=1, slices_per_patient=2)
    df["patient_id"] = df["patient_id"].astype(object)
    df.loc[[0, 1], "patient_id"] = ["", np.nan]  # two slices of one patient lose their id
    agg = aggregate_patients(df)
    # the remaining 2 patients + 2 lone slices
    assert len(agg) == 4
    lone = agg[agg["patient_id"].isna()]
    assert sorted(lone["path"]) == sorted(df["path"].iloc[:2])


def test_aggregate_patients_rejects_mixed_labels() -> None:
    df = make_predictions(repeats=1, folds=1, patients_per_class=1, slices_per_patient=2)
    df.loc[1, "label"] = "Healthy"  # second slice of the COVID-19 patient
    with pytest.raises(DataError, match="mixed labels"):
        aggregate_patients(df)
