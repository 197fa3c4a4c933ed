"""The predictions table: the single source of truth every reported number is computed from.

Columns, in this order: ``path, patient_id, label, prob_<class>... (one per class, in the recorded class
order), fold, repeat, model, run_id``. One row per slice (or per patient after :func:`aggregate_patients`,
same schema). Probabilities are always stored, never only the argmax, so every metric can be recomputed.

``patient_id`` may be empty (slice-level data); ``model`` and ``run_id`` may be missing in a hand-made table
and are then filled with ``""``. Everything else is validated by :func:`read_predictions`, which raises
:class:`~covidct.errors.DataError` naming the file and the row.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from covidct.errors import DataError
from covidct.utils import atomic_path

PROB_PREFIX = "prob_"
#: Columns before the probability columns, and after them.
HEAD_COLUMNS: tuple[str, ...] = ("path", "patient_id", "label")
TAIL_COLUMNS: tuple[str, ...] = ("fold", "repeat", "model", "run_id")
#: The fixed (non-probability) columns of the table.
PREDICTION_COLUMNS: tuple[str, ...] = HEAD_COLUMNS + TAIL_COLUMNS
#: Columns a table must have (besides at least one ``prob_`` column); the others get defaults.
REQUIRED_COLUMNS: tuple[str, ...] = ("path", "label", "fold", "repeat")
_OPTIONAL_DEFAULTS: dict[str, float | str] = {"patient_id": np.nan, "model": "", "run_id": ""}
_STRING_COLUMNS = ("path", "patient_id", "label", "model", "run_id")
_PROB_TOLERANCE = 1e-6

PathLike = str | os.PathLike[str]


def model_dirname(model: str) -> str:
    """A file-system safe name for a model (``hf-hub:x/y`` -> ``hf-hub_x_y``): folders and file suffixes."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("_") or "model"


def prob_columns(df: pd.DataFrame) -> list[str]:
    """The ``prob_<class>`` columns, in table order (the recorded class order)."""
    return [c for c in df.columns if isinstance(c, str) and c.startswith(PROB_PREFIX)]


def classes_of(df: pd.DataFrame) -> list[str]:
    """Class names in the recorded order, taken from the ``prob_`` columns."""
    return [c[len(PROB_PREFIX) :] for c in prob_columns(df)]


def ordered_columns(df: pd.DataFrame) -> list[str]:
    """The canonical column order for ``df`` (extra, unknown columns are appended at the end)."""
    probs = prob_columns(df)
    known = [*HEAD_COLUMNS, *probs, *TAIL_COLUMNS]
    return known + [c for c in df.columns if c not in known]


def missing_patient(values: pd.Series) -> pd.Series:
    """True where a patient id is unknown (NaN, None or an empty/blank string)."""
    return values.isna() | (values.astype(str).str.strip() == "")


def validate_predictions(
    df: pd.DataFrame, source: PathLike = "<table>", *, require_labels: bool = True
) -> pd.DataFrame:
    """Check the schema and return a normalised copy (column order, dtypes, defaults).

    Args:
        df: a raw predictions table (e.g. straight from ``pd.read_csv(..., dtype=str)``).
        source: the file it came from, used in error messages.
        require_labels: if False, an empty ``label`` is allowed (predictions on unlabelled data).

    Raises:
        DataError: ``"<source>: ..."`` naming the missing columns or the first bad row (1-based data row and
            its line number in a CSV with a header).
    """
    probs = prob_columns(df)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing or not probs:
        what = missing + ([] if probs else ["prob_<class> (one per class)"])
        raise DataError(source, f"not a predictions table: missing column(s) {', '.join(what)}")
    classes = classes_of(df)
    if len(set(classes)) != len(classes):
        raise DataError(source, f"duplicate probability columns {probs}")
    out = df.copy()
    for column, default in _OPTIONAL_DEFAULTS.items():
        if column not in out.columns:
            out[column] = default

    def bad_row(index: int, reason: str) -> DataError:
        return DataError(source, f"row {index + 1} (line {index + 2}): {reason}")

    out = out.reset_index(drop=True)
    for column in probs:
        values = pd.to_numeric(out[column], errors="coerce").astype(float)
        bad = ~np.isfinite(values.to_numpy())
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise bad_row(i, f"{column} is not a number: {df[column].iloc[i]!r}")
        outside = (values < -_PROB_TOLERANCE) | (values > 1 + _PROB_TOLERANCE)
        if outside.any():
            i = int(np.flatnonzero(outside.to_numpy())[0])
            raise bad_row(i, f"{column} = {values.iloc[i]} is not a probability in [0, 1]")
        out[column] = values
    for column in ("fold", "repeat"):
        values = pd.to_numeric(out[column], errors="coerce")
        not_int = values.isna() | (values != values.round())
        if not_int.any():
            i = int(np.flatnonzero(not_int.to_numpy())[0])
            raise bad_row(i, f"{column} is not an integer: {df[column].iloc[i]!r}")
        out[column] = values.astype(int)
    for column in _STRING_COLUMNS:
        values = out[column]
        keep_nan = values.isna()
        out[column] = values.astype(object).where(keep_nan, values.astype(str))
    out.loc[missing_patient(out["patient_id"]), "patient_id"] = np.nan
    out["model"] = out["model"].fillna("")
    out["run_id"] = out["run_id"].fillna("")
    labels = out["label"].fillna("").astype(str)
    out["label"] = labels
    unknown = ~labels.isin(classes)
    if not require_labels:
        unknown &= labels.str.strip() != ""
    if unknown.any():
        i = int(np.flatnonzero(unknown.to_numpy())[0])
        raise bad_row(i, f"label {labels.iloc[i]!r} is not one of the classes {classes}")
    if out["path"].isna().any():
        i = int(np.flatnonzero(out["path"].isna().to_numpy())[0])
        raise bad_row(i, "empty path")
    return out[ordered_columns(out)]


def write_predictions(df: pd.DataFrame, path: PathLike) -> Path:
    """Validate ``df`` and write it as CSV atomically (temp file + ``os.replace``). Returns the path."""
    table = validate_predictions(df, path, require_labels=False)
    target = Path(path)
    with atomic_path(target) as tmp:
        table.to_csv(tmp, index=False)
    return target


def _read_one(path: Path, *, require_labels: bool) -> pd.DataFrame:
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except FileNotFoundError:
        raise DataError(path, "no such predictions file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read predictions CSV: {exc}") from None
    return validate_predictions(raw, path, require_labels=require_labels)


def read_predictions(paths: PathLike | Sequence[PathLike], *, require_labels: bool = True) -> pd.DataFrame:
    """Read and validate one predictions CSV, or several with the same classes (concatenated in order).

    Raises:
        DataError: a missing/unreadable file, a schema error (naming the file and row), or files whose class
            columns differ.
    """
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise DataError("<predictions>", "no predictions files given")
    tables: list[pd.DataFrame] = []
    first_classes: list[str] | None = None
    for item in items:
        table = _read_one(Path(item), require_labels=require_labels)
        classes = classes_of(table)
        if first_classes is None:
            first_classes = classes
        elif classes != first_classes:
            raise DataError(item, f"classes {classes} differ from {first_classes} in {items[0]}")
        tables.append(table)
    if len(tables) == 1:
        return tables[0]
    return pd.concat(tables, ignore_index=True)


def fold_prediction_files(run_dir: PathLike) -> list[Path]:
    """``RUN/folds/*/predictions.csv`` files, sorted by folder name."""
    return sorted(Path(run_dir).glob("folds/*/predictions.csv"))


def read_run_predictions(run_dir: PathLike) -> pd.DataFrame:
    """A run's predictions: ``RUN/predictions.csv`` if present, else all ``RUN/folds/*/predictions.csv``.

    Raises:
        DataError: the folder does not exist or holds no predictions.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise DataError(run, "no such run folder")
    combined = run / "predictions.csv"
    if combined.is_file():
        return read_predictions(combined)
    files = fold_prediction_files(run)
    if not files:
        raise DataError(run, "no predictions found (expected predictions.csv or folds/*/predictions.csv)")
    return read_predictions(files)


GROUP_KEYS: tuple[str, ...] = ("model", "repeat", "fold")


def aggregate_patients(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, repeat, fold, patient) with the mean probability over the patient's slices.

    The result keeps the predictions schema: ``path`` holds the patient id and ``label`` the patient's label.
    Rows without a patient id stay on their own (their ``path`` is kept; ``patient_id`` stays empty), so on
    slice-level data this returns the table unchanged apart from row order.

    Raises:
        DataError: a patient whose slices carry different labels within one fold.
    """
    table = df if set(PREDICTION_COLUMNS) <= set(df.columns) else validate_predictions(df)
    probs = prob_columns(table)
    if table.empty:
        return table.copy()
    no_patient = missing_patient(table["patient_id"])
    key = table["patient_id"].astype(object).where(~no_patient, "\0slice:" + table["path"].astype(str))
    work = table.assign(_key=key.to_numpy())
    keys = [*GROUP_KEYS, "_key"]
    grouped = work.groupby(keys, sort=True, dropna=False)
    n_labels = grouped["label"].nunique()
    mixed = n_labels[n_labels > 1]
    if not mixed.empty:
        model, repeat, fold, patient = mixed.index[0]
        labels = sorted(work.loc[work["_key"] == patient, "label"].unique())
        raise DataError(
            patient, f"patient has mixed labels {labels} (model {model!r}, repeat {repeat}, fold {fold})"
        )
    agg: dict[str, str] = {c: "mean" for c in probs}
    agg.update({"label": "first", "run_id": "first", "patient_id": "first", "path": "first"})
    out = grouped.agg(agg).reset_index()
    is_patient = ~missing_patient(out["patient_id"])
    out["patient_id"] = out["patient_id"].astype(object).where(is_patient, np.nan)
    out.loc[is_patient, "path"] = out.loc[is_patient, "patient_id"]
    out = out.drop(columns="_key")
    out.attrs["level"] = "patient"
    return out[ordered_columns(out)].reset_index(drop=True)
