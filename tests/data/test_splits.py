"""Patient-grouped, stratified folds: no patient on both sides, classes balanced, slice-level fallback
warns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from covidct.data.splits import (
    SLICE_LEVEL_WARNING,
    PatientStratifiedKFold,
    leakage_groups,
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


@dataclass(frozen=True)
class H:
    path: str
    label: str
    patient_id: str | None
    sha256: str | None = None


def _same_side(folds: list, i: int, j: int) -> bool:
    return all((i in f.test_idx) == (j in f.test_idx) for f in folds)


def test_byte_identical_images_never_straddle_a_split() -> None:
    # 60 id-less slices; 6 pairs of byte-identical files (same sha256), one pair across labels
    samples = [H(f"{c}/{k}.png", c, None, f"h{c}{k}") for c in CLASSES[:2] for k in range(30)]
    pairs = [(k, k + 1) for k in range(0, 10, 2)] + [(20, 45)]
    for a, b in pairs:
        samples[b] = H(samples[b].path, samples[b].label, None, samples[a].sha256)
    with pytest.warns(CovidCTWarning, match="slice-level"):
        folds = make_folds(samples, CLASSES[:2], folds=5, repeats=3, seed=0)
    assert all(_same_side(folds, a, b) for a, b in pairs)
    assert sum(len(f.test_idx) for f in folds) == 3 * len(samples)


def test_duplicates_merge_with_the_patient_group() -> None:
    # a copy of patient A's slice filed under patient B: A and B become one group
    samples = _samples((6, 6, 6), slices=3)
    a = next(i for i, s in enumerate(samples) if s.patient_id == "COVID-19-p0")
    b = next(i for i, s in enumerate(samples) if s.patient_id == "COVID-19-p1")
    hashed = [H(s.path, s.label, s.patient_id, f"h{i}") for i, s in enumerate(samples)]
    hashed[b] = H(hashed[b].path, hashed[b].label, hashed[b].patient_id, hashed[a].sha256)
    groups = leakage_groups(hashed)
    merged = {i for i, s in enumerate(hashed) if s.patient_id in ("COVID-19-p0", "COVID-19-p1")}
    assert {i for i, g in enumerate(groups) if g == groups[a]} == merged
    folds = make_folds(hashed, CLASSES, folds=3, repeats=4, seed=0)
    assert all(_same_side(folds, a, k) for k in merged)


def test_links_merge_groups_and_are_validated() -> None:
    samples = [H(f"x{k}.png", "COVID-19", None) for k in range(4)]
    groups = leakage_groups(samples, links=[(0, 3), (3, 2)])
    assert groups[0] == groups[2] == groups[3] != groups[1]
    with pytest.raises(ValueError, match="index"):
        leakage_groups(samples, links=[(0, 9)])


def test_partial_patient_ids_still_group_known_patients() -> None:
    samples = _samples((8, 8, 8), slices=5)
    rng = np.random.default_rng(1)
    lost = set(rng.choice(len(samples), size=7, replace=False).tolist())
    samples = [S(s.path, s.label, None if i in lost else s.patient_id) for i, s in enumerate(samples)]
    with pytest.warns(CovidCTWarning, match=f"7 of {len(samples)} slices have no patient id"):
        folds = make_folds(samples, CLASSES, folds=4, repeats=3, seed=2)
    patients = np.asarray([s.patient_id or f"none{i}" for i, s in enumerate(samples)], dtype=object)
    for f in folds:
        assert np.intersect1d(patients[f.train_idx], patients[f.test_idx]).size == 0


@pytest.mark.real_data
def test_sarscov2_exact_duplicates_stay_together(shared_data) -> None:
    from covidct.data.manifest import scan_dataset

    root = shared_data / "sarscov2-ct"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    scan = scan_dataset(root)
    samples = sorted(scan.samples, key=lambda s: s.path)
    index = {Path(s.path).name: i for i, s in enumerate(samples)}
    with pytest.warns(CovidCTWarning, match="slice-level"):
        folds = make_folds(samples, scan.classes, folds=5, repeats=2, seed=0)
    for a, b in (("Covid (128).png", "Covid (129).png"), ("Covid (134).png", "Covid (135).png")):
        assert samples[index[a]].sha256 == samples[index[b]].sha256
        assert _same_side(folds, index[a], index[b]), (a, b)
