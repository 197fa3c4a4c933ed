"""Patient-grouped, stratified folds: no patient on both sides, classes balanced, slice-level fallback warns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from covidct.data.splits import (
    SLICE_LEVEL_WARNING,
    PatientStratifiedKFold,
    make_folds,
    patient_groups,
    validation_split,
)
from covidct.errors import ConfigError, CovidCTWarning, DataError

CLASSES = ("COVID-19", "Healthy", "Pneumonia")


@dataclass(frozen=True)
class S:
    path: str
    label: str
    patient_id: str | None


def _samples(patients_per_class: tuple[int, ...] = (10, 12, 8), slices: int = 5, ids: bool = True) -> list[S]:
    rng = np.random.default_rng(0)
    out = []
    for cls, n in zip(CLASSES, patients_per_class, strict=True):
        for p in range(n):
            for k in range(int(rng.integers(1, slices + 1))):  # uneven slices per patient
                out.append(S(f"{cls}/p{p}/{k}.png", cls, f"{cls}-p{p}" if ids else None))
    return out


def test_folds_never_share_a_patient_and_cover_every_slice() -> None:
    samples = _samples()
    patients = np.asarray([s.patient_id for s in samples])
    folds = make_folds(samples, CLASSES, folds=4, repeats=3, seed=7)
    assert len(folds) == 12
    for r in range(3):
        tests = [f.test_idx for f in folds if f.repeat == r]
        assert np.array_equal(
            np.sort(np.concatenate(tests)), np.arange(len(samples))
        )  # each slice tested once
    for f in folds:
        assert np.intersect1d(patients[f.train_idx], patients[f.test_idx]).size == 0
        assert np.intersect1d(f.train_idx, f.test_idx).size == 0
        assert len(f.train_idx) + len(f.test_idx) == len(samples)


def test_stratification_roughly_holds() -> None:
    samples = _samples((10, 10, 10))
    labels = np.asarray([s.label for s in samples])
    for f in make_folds(samples, CLASSES, folds=5, repeats=1, seed=0):
        test_patients = {samples[i].patient_id for i in f.test_idx}
        per_class = [sum(p.startswith(c) for p in test_patients) for c in CLASSES]
        assert all(1 <= n <= 3 for n in per_class), per_class  # 10 patients per class -> about 2 per fold
        share = np.mean(labels[f.test_idx][:, None] == np.asarray(CLASSES), axis=0)
        overall = np.mean(labels[:, None] == np.asarray(CLASSES), axis=0)
        assert np.abs(share - overall).max() < 0.15


def test_repeats_differ_and_seed_reproduces() -> None:
    samples = _samples()
    a = make_folds(samples, CLASSES, folds=3, repeats=2, seed=1)
    b = make_folds(samples, CLASSES, folds=3, repeats=2, seed=1)
    assert all(np.array_equal(x.test_idx, y.test_idx) for x, y in zip(a, b, strict=True))
    first = {tuple(f.test_idx) for f in a if f.repeat == 0}
    second = {tuple(f.test_idx) for f in a if f.repeat == 1}
    assert first != second


def test_slice_level_fallback_warns() -> None:
    samples = _samples(ids=False)
    with pytest.warns(CovidCTWarning, match="slice-level"):
        folds = make_folds(samples, CLASSES, folds=3, repeats=1, seed=0)
    assert "optimistic" in SLICE_LEVEL_WARNING
    assert patient_groups(samples)[1] is False
    assert sum(len(f.test_idx) for f in folds) == len(samples)


def test_validation_in_init_and_for_data() -> None:
    with pytest.raises(ConfigError, match="folds"):
        PatientStratifiedKFold(1)
    with pytest.raises(ConfigError, match="repeats"):
        PatientStratifiedKFold(3, 0)
    assert "n_splits=3" in repr(PatientStratifiedKFold(3, 2, 5))
    with pytest.raises(DataError, match="Pneumonia.*fewer than the 5 folds"):
        make_folds(_samples((6, 6, 3)), CLASSES, folds=5)
    with pytest.raises(DataError, match="not one of the classes"):
        make_folds([S("x.png", "Other", "p")] * 4, CLASSES, folds=2)


def test_validation_split_is_grouped_and_from_training_patients() -> None:
    samples = _samples((6, 6, 6))
    train, val = validation_split(samples, CLASSES, 0.2, seed=3)
    patients = np.asarray([s.patient_id for s in samples])
    assert len(val) > 0 and len(train) > 0
    assert np.intersect1d(patients[train], patients[val]).size == 0
    assert {samples[i].label for i in val} == set(CLASSES)  # stratified: one patient per class
    assert validation_split(samples, CLASSES, 0.0)[1].size == 0
