"""Patient-grouped, class-stratified repeated k-fold splits (the paper's protocol, done without patient
leakage).

:class:`PatientStratifiedKFold` follows sklearn (parameters only, validated in ``__init__``; ``split()``
yields indices): each repeat is one ``StratifiedGroupKFold(shuffle=True, random_state=seed + repeat)``.

The groups that must never straddle a split are the connected components (:func:`leakage_groups`) of three
links: same patient id, same file content (sha256: byte-identical images) and, on request, near-duplicate
pairs (:mod:`covidct.data.audit`). Slices without a patient id are their own group unless such a link joins
them. When every group is a single slice (no ids, no duplicates) the split is slice-level ``StratifiedKFold``
and warns
(:class:`CovidCTWarning`), because neighbouring slices of one patient then land on both sides of a split and
accuracy is optimistic.

The fold assignment depends only on the samples (in their given order), the class order and the seed, never on
the model: the comparison study trains every model on identical folds.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from covidct.errors import ConfigError, CovidCTWarning, DataError

SLICE_LEVEL_WARNING = (
    "no patient ids: folds are slice-level, so slices of one patient can be in both training and test; "
    "accuracy is optimistic"
)


def missing_ids_warning(n_missing: int, n_total: int) -> str:
    """The warning for data where only some slices have a patient id."""
    return (
        f"{n_missing} of {n_total} slices have no patient id: each of them is its own group (patients with "
        "an id stay grouped), so id-less slices of one patient can sit in both train and test"
    )


class SampleLike(Protocol):
    """What splitting needs of a sample (read-only, so frozen dataclasses such as ``Sample`` match)."""

    @property
    def path(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def patient_id(self) -> str | None: ...


@dataclass(frozen=True)
class Fold:
    """One (repeat, fold) job: indices into the sample list."""

    repeat: int
    fold: int
    train_idx: np.ndarray
    test_idx: np.ndarray


def _has_id(pid: object) -> bool:
    return pid is not None and str(pid).strip() != "" and str(pid).lower() != "nan"


def patient_groups(samples: Sequence[SampleLike]) -> tuple[np.ndarray, bool]:
    """Group key per sample (the patient id, or the slice's own path when unknown) and whether all have
    ids."""
    keys = [str(s.patient_id) if _has_id(s.patient_id) else f"slice:{s.path}" for s in samples]
    return np.asarray(keys, dtype=object), all(_has_id(s.patient_id) for s in samples)


def leakage_groups(samples: Sequence[SampleLike], *, links: Iterable[tuple[int, int]] = ()) -> np.ndarray:
    """One group key per sample: connected components of same patient id, same sha256, and ``links``.

    ``links`` are extra ``(i, j)`` index pairs that must share a group (near-duplicates). A sample's sha256 is
    read from its ``sha256`` attribute where it has one. The key of a group is its smallest member key (the
    patient id, else ``"slice:<path>"``), so keys stay readable and depend only on the samples.
    """
    n = len(samples)
    own, _ = patient_groups(samples)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    hashes = np.asarray([getattr(s, "sha256", None) or f"#{i}" for i, s in enumerate(samples)], dtype=object)
    for keys in (own, hashes):  # chain the members of each key: i -> next sample with the same key
        codes = pd.factorize(pd.Series(keys, dtype=object))[0]
        order = np.argsort(codes, kind="stable")
        same = codes[order][1:] == codes[order][:-1]
        rows.append(order[:-1][same])
        cols.append(order[1:][same])
    extra = np.asarray(list(links), dtype=np.int64).reshape(-1, 2)
    if extra.size and (extra.min() < 0 or extra.max() >= n):
        raise ValueError(f"links must index the {n} samples")
    rows.append(extra[:, 0])
    cols.append(extra[:, 1])
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(r.size, dtype=np.int8), (r, c)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    first = pd.Series(own, dtype=object).groupby(component).transform("min")
    return first.to_numpy(dtype=object)


def label_indices(samples: Sequence[SampleLike], classes: Sequence[str]) -> np.ndarray:
    """Class index per sample; a label outside ``classes`` is a :class:`DataError`."""
    index = {c: i for i, c in enumerate(classes)}
    out = np.empty(len(samples), dtype=np.int64)
    for i, s in enumerate(samples):
        if s.label not in index:
            raise DataError(s.path, f"label {s.label!r} is not one of the classes {list(classes)}")
        out[i] = index[s.label]
    return out


class PatientStratifiedKFold:
    """Repeated, class-stratified k-fold over patients (``StratifiedGroupKFold`` per repeat, seed + repeat).

    Args:
        n_splits: folds per repeat (>= 2).
        n_repeats: repeats (>= 1), each with a different shuffle.
        seed: base seed; repeat ``r`` uses ``seed + r``.
    """

    def __init__(self, n_splits: int = 5, n_repeats: int = 1, seed: int = 0) -> None:
        if int(n_splits) != n_splits or n_splits < 2:
            raise ConfigError(f"folds must be an integer >= 2, got {n_splits}")
        if int(n_repeats) != n_repeats or n_repeats < 1:
            raise ConfigError(f"repeats must be an integer >= 1, got {n_repeats}")
        self.n_splits = int(n_splits)
        self.n_repeats = int(n_repeats)
        self.seed = int(seed)

    def __repr__(self) -> str:
        return (
            f"PatientStratifiedKFold(n_splits={self.n_splits}, n_repeats={self.n_repeats}, seed={self.seed})"
        )

    def get_n_splits(self) -> int:
        return self.n_splits * self.n_repeats

    def _check(self, y: np.ndarray, groups: np.ndarray, grouped: bool) -> None:
        unit = "patients" if grouped else "slices"
        for cls in np.unique(y):
            n = len(np.unique(groups[y == cls])) if grouped else int((y == cls).sum())
            if n < self.n_splits:
                raise DataError(
                    "<dataset>",
                    f"class {cls!r} has {n} {unit}, fewer than the {self.n_splits} folds; "
                    f"use --folds {max(2, n)} or more data",
                )

    def split(
        self, y: ArrayLike, groups: ArrayLike | None = None
    ) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
        """Yield ``(repeat, fold, train_idx, test_idx)``. ``groups=None`` means slice-level folds."""
        y_arr = np.asarray(y)
        grouped = groups is not None
        g_arr = np.asarray(groups, dtype=object) if grouped else np.arange(len(y_arr))
        self._check(y_arr, g_arr, grouped)
        x = np.zeros((len(y_arr), 1))
        for repeat in range(self.n_repeats):
            seed = self.seed + repeat
            if grouped:
                splitter = StratifiedGroupKFold(n_splits=self.n_splits, shuffle=True, random_state=seed)
                parts = splitter.split(x, y_arr, g_arr)
            else:
                parts = StratifiedKFold(n_splits=self.n_splits, shuffle=True, random_state=seed).split(
                    x, y_arr
                )
            for fold, (train, test) in enumerate(parts):
                if grouped:
                    shared = np.intersect1d(g_arr[train], g_arr[test])
                    if shared.size:  # a bug, not a user error: StratifiedGroupKFold never does this
                        raise RuntimeError(f"patients {shared[:5].tolist()} in both train and test")
                yield repeat, fold, np.sort(train), np.sort(test)


def make_folds(
    samples: Sequence[SampleLike],
    classes: Sequence[str],
    folds: int = 5,
    repeats: int = 1,
    seed: int = 0,
    *,
    links: Iterable[tuple[int, int]] = (),
    groups: ArrayLike | None = None,
) -> list[Fold]:
    """All (repeat, fold) splits of ``samples``, grouped by :func:`leakage_groups` (or the given ``groups``).

    Slices of one patient id (also under several labels), byte-identical images and ``links`` stay on one
    side.
    Warns with :class:`CovidCTWarning`: :data:`SLICE_LEVEL_WARNING` when no sample has a patient id,
    :func:`missing_ids_warning` when only some have one.
    """
    splitter = PatientStratifiedKFold(folds, repeats, seed)
    if not samples:
        raise DataError("<dataset>", "no samples to split")
    y = label_indices(samples, classes)
    keys = leakage_groups(samples, links=links) if groups is None else np.asarray(groups, dtype=object)
    n_missing = sum(not _has_id(s.patient_id) for s in samples)
    if n_missing == len(samples):
        warnings.warn(SLICE_LEVEL_WARNING, CovidCTWarning, stacklevel=2)
    elif n_missing:
        warnings.warn(missing_ids_warning(n_missing, len(samples)), CovidCTWarning, stacklevel=2)
    grouped = len(pd.unique(keys)) < len(samples)  # all singletons: plain slice-level StratifiedKFold
    labels = np.asarray(classes, dtype=object)[y]
    return [
        Fold(repeat=r, fold=f, train_idx=train, test_idx=test)
        for r, f, train, test in splitter.split(labels, keys if grouped else None)
    ]


def validation_split(
    samples: Sequence[SampleLike],
    classes: Sequence[str],
    fraction: float = 0.2,
    seed: int = 0,
    *,
    groups: ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split training samples into (train_idx, val_idx), grouped and stratified where possible.

    Groups are :func:`leakage_groups` of ``samples`` unless ``groups`` (one key per sample) is given. Uses one
    fold of ``StratifiedGroupKFold(n_splits=round(1 / fraction))`` (fewer splits when a class has few
    patients). ``fraction == 0`` returns no validation samples.
    """
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {fraction}")
    n = len(samples)
    everything = np.arange(n)
    if fraction == 0.0 or n < 2:
        return everything, np.empty(0, dtype=np.int64)
    y = label_indices(samples, classes)
    groups = leakage_groups(samples) if groups is None else np.asarray(groups, dtype=object)
    per_class = min(len(np.unique(groups[y == c])) for c in np.unique(y))
    n_splits = min(max(2, round(1.0 / fraction)), len(np.unique(groups)))
    x = np.zeros((n, 1))
    if per_class >= n_splits:
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        train, val = next(iter(splitter.split(x, y, groups)))
    elif n_splits >= 2:  # too few patients in some class to stratify: grouped only
        from sklearn.model_selection import GroupShuffleSplit

        splitter2 = GroupShuffleSplit(n_splits=1, test_size=1.0 / n_splits, random_state=seed)
        train, val = next(iter(splitter2.split(x, y, groups)))
    else:
        return everything, np.empty(0, dtype=np.int64)
    return np.sort(train), np.sort(val)
