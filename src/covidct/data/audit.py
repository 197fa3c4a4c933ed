"""Leakage audit: exact and near-duplicate image pairs, and how many of them straddle a fold plan's splits.

Near-duplicates are found with a perceptual hash (``imagehash.phash`` with ``hash_size=16``: a 256-bit DCT
hash of the image at 64 x 64, robust to small shifts, intensity changes and re-encoding) and a Hamming
distance threshold. The 64-bit default hash is too coarse for CT: unrelated patients' slices collide.
Byte-identical files (same sha256) are always pairs at distance 0. ``near_duplicate_pairs`` feeds
``--group-near-duplicates`` (:func:`covidct.data.splits.make_folds` ``links``); ``audit`` adds the fold-plan
crossings for ``covidct data audit``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd

from covidct.data.manifest import MANIFEST_COLUMNS, load_manifest, scan_dataset
from covidct.data.readers import load_slice
from covidct.data.splits import SampleLike
from covidct.errors import ConfigError, DataError
from covidct.utils import atomic_path

#: Default Hamming threshold (of 256 bits): see docs/leakage.md for how it was chosen on sarscov2-ct.
DEFAULT_THRESHOLD = 32
HASH_SIZE = 16
HASH_BITS = HASH_SIZE * HASH_SIZE
PAIR_COLUMNS = ("path_a", "path_b", "label_a", "label_b", "patient_a", "patient_b", "distance", "exact")


def _phash_bits(source: str, window: str) -> np.ndarray | str:
    """The 64-bit perceptual hash of one slice as a bool array, or the reason it could not be read."""
    import imagehash
    from PIL import Image

    try:
        image = load_slice(source, window=window)
    except DataError as exc:
        return exc.reason
    pil = Image.fromarray(np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    return np.asarray(imagehash.phash(pil, hash_size=HASH_SIZE).hash, dtype=bool).ravel()


def perceptual_hashes(
    samples: Sequence[SampleLike], *, window: str = "lung", workers: int = 2
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """``(hashes (n, HASH_BITS // 64) uint64, readable (n,) bool, unreadable [(path, reason)])``."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(lambda s: _phash_bits(s.path, window), samples))
    bits = np.zeros((len(samples), HASH_BITS), dtype=bool)
    ok = np.ones(len(samples), dtype=bool)
    bad: list[tuple[str, str]] = []
    for i, (sample, result) in enumerate(zip(samples, results, strict=True)):
        if isinstance(result, str):
            bad.append((sample.path, result))
            ok[i] = False
        else:
            bits[i] = result
    packed = np.ascontiguousarray(np.packbits(bits, axis=1)).view(np.uint64)
    return packed, ok, bad


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits per hash: sums over the last axis (the 64-bit words of one hash)."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(x).sum(axis=-1, dtype=np.int64)
    bytes_ = np.ascontiguousarray(x).view(np.uint8)
    return np.unpackbits(bytes_, axis=-1).sum(axis=-1, dtype=np.int64)


def hamming_pairs(hashes: np.ndarray, threshold: int, *, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(i < j)`` with Hamming distance <= ``threshold`` and their distances (vectorised)."""
    h = np.asarray(hashes, dtype=np.uint64).reshape(len(hashes), -1)
    pairs: list[np.ndarray] = []
    dists: list[np.ndarray] = []
    for start in range(0, h.size, chunk):
        block = h[start : start + chunk]
        d = _popcount(block[:, None, :] ^ h[None, :, :])
        i, j = np.nonzero(d <= threshold)
        i = i + start
        keep = i < j
        pairs.append(np.stack([i[keep], j[keep]], axis=1))
        dists.append(d[i[keep] - start, j[keep]])
    if not pairs:
        return np.empty((0, 2), dtype=np.int64), np.empty(0, dtype=np.int64)
    return np.concatenate(pairs), np.concatenate(dists)


def _check_threshold(threshold: int) -> int:
    if int(threshold) != threshold or not 0 <= threshold < HASH_BITS:
        raise ConfigError(
            f"the near-duplicate threshold must be an integer in 0..{HASH_BITS - 1}, got {threshold}"
        )
    return int(threshold)


def near_duplicate_pairs(
    samples: Sequence[SampleLike],
    *,
    threshold: int = DEFAULT_THRESHOLD,
    window: str = "lung",
    hashes: tuple[np.ndarray, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Every pair of slices within ``threshold`` bits of each other, or byte-identical (same sha256).

    ``hashes`` may pass ``(hashes, readable)`` from :func:`perceptual_hashes`; unreadable slices pair with
    none.
    Columns :data:`PAIR_COLUMNS` plus ``i, j`` (indices into ``samples``), sorted by distance then path.
    """
    threshold = _check_threshold(threshold)
    if hashes is None:
        h, readable, _ = perceptual_hashes(samples, window=window)
    else:
        h, readable = hashes
    idx, dist = hamming_pairs(h, threshold)
    sha = pd.Series([getattr(s, "sha256", None) for s in samples], dtype=object)
    exact_pairs = []
    for members in sha[sha.notna()].groupby(sha[sha.notna()]).groups.values():
        m = np.asarray(sorted(members))
        exact_pairs += [(a, b) for k, a in enumerate(m) for b in m[k + 1 :]]
    found = pd.DataFrame({"i": idx[:, 0], "j": idx[:, 1], "distance": dist})
    if exact_pairs:
        ex = pd.DataFrame(exact_pairs, columns=["i", "j"])
        ex["distance"] = _popcount(h[ex["i"].to_numpy()] ^ h[ex["j"].to_numpy()])
        found = pd.concat([found, ex], ignore_index=True).drop_duplicates(["i", "j"])
    found = found[readable[found["i"]] & readable[found["j"]]]
    i, j = found["i"].to_numpy(dtype=np.int64), found["j"].to_numpy(dtype=np.int64)
    attr = lambda name, k: [getattr(samples[x], name) for x in k]  # noqa: E731
    exact = [bool(sha[a] is not None and sha[a] == sha[b]) for a, b in zip(i, j, strict=True)]
    table = pd.DataFrame(
        {
            "path_a": attr("path", i),
            "path_b": attr("path", j),
            "label_a": attr("label", i),
            "label_b": attr("label", j),
            "patient_a": [p or "" for p in attr("patient_id", i)],
            "patient_b": [p or "" for p in attr("patient_id", j)],
            "distance": found["distance"].to_numpy(dtype=np.int64),
            "exact": exact,
            "i": i,
            "j": j,
        }
    )
    return table.sort_values(["distance", "path_a", "path_b"], ignore_index=True)


def crossings(pairs: pd.DataFrame, folds: pd.DataFrame) -> pd.DataFrame:
    """Per (repeat, fold) of a ``folds.csv`` table: pairs with one slice in test and the other in train/val.

    Columns ``repeat, fold, pairs_crossing, exact_crossing``.
    """
    need = {"path", "repeat", "fold", "split"}
    if not need <= set(folds.columns):
        raise DataError("folds.csv", f"needs columns {sorted(need)}, found {list(folds.columns)}")
    rows = []
    for (repeat, fold), part in folds.groupby(["repeat", "fold"], sort=True):
        side = dict(zip(part["path"].astype(str), part["split"].astype(str) == "test", strict=True))
        a = pairs["path_a"].map(side)
        b = pairs["path_b"].map(side)
        cross = a.notna() & b.notna() & (a != b)
        rows.append(
            (
                int(cast(int, repeat)),
                int(cast(int, fold)),
                int(cross.sum()),
                int((cross & pairs["exact"]).sum()),
            )
        )
    return pd.DataFrame(rows, columns=["repeat", "fold", "pairs_crossing", "exact_crossing"])


@dataclass(frozen=True)
class AuditResult:
    """``covidct data audit``: the pairs, the distance histogram and (with a fold plan) the crossings."""

    n_samples: int
    threshold: int
    pairs: pd.DataFrame
    distances: dict[int, int]  # nearest-neighbour Hamming distance -> number of slices (capped at 64)
    crossings: pd.DataFrame | None
    unreadable: list[tuple[str, str]]

    @property
    def n_exact(self) -> int:
        return int(self.pairs["exact"].sum())

    @property
    def n_near(self) -> int:
        return int((~self.pairs["exact"]).sum())


def nearest_distances(hashes: np.ndarray, *, chunk: int = 256, cap: int = 64) -> dict[int, int]:
    """Histogram of each slice's distance to its nearest other slice (capped at ``cap``)."""
    h = np.asarray(hashes, dtype=np.uint64).reshape(len(hashes), -1)
    nearest = np.empty(len(h), dtype=np.int64)
    for start in range(0, len(h), chunk):
        d = _popcount(h[start : start + chunk, None, :] ^ h[None, :, :])
        d[np.arange(d.shape[0]), np.arange(start, start + d.shape[0])] = HASH_BITS + 1
        nearest[start : start + chunk] = d.min(axis=1)
    values, counts = np.unique(np.minimum(nearest, cap), return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts, strict=True)}


def audit(
    data: str | os.PathLike[str],
    *,
    folds: str | os.PathLike[str] | None = None,
    threshold: int = DEFAULT_THRESHOLD,
    window: str = "lung",
) -> AuditResult:
    """Scan ``data`` (folder, dataset CSV or manifest), find exact and near-duplicate pairs, count crossings.

    Raises:
        DataError: unreadable data or fold plan. ConfigError: a threshold outside 0..255.
    """
    threshold = _check_threshold(threshold)
    path = Path(data)
    scan = load_manifest(path) if path.is_file() and _is_manifest(path) else scan_dataset(path)
    samples = scan.samples
    hashes, readable, bad = perceptual_hashes(samples, window=window)
    pairs = near_duplicate_pairs(samples, threshold=threshold, hashes=(hashes, readable))
    plan = None
    if folds is not None:
        fpath = Path(folds)
        try:
            table = pd.read_csv(fpath, dtype={"path": str, "split": str}, keep_default_na=False)
        except (OSError, ValueError) as exc:
            raise DataError(fpath, f"cannot read the fold plan ({exc})") from None
        plan = crossings(pairs, table)
    return AuditResult(len(samples), threshold, pairs, nearest_distances(hashes[readable]), plan, bad)


def _is_manifest(path: Path) -> bool:
    try:
        header = path.read_text(encoding="utf-8-sig").splitlines()[0]
    except (OSError, UnicodeDecodeError, IndexError):
        return False
    return set(MANIFEST_COLUMNS) <= {c.strip() for c in header.split(",")}


def write_pairs(pairs: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """The pairs table (without the index columns) as CSV, atomically."""
    target = Path(path)
    with atomic_path(target) as tmp:
        pairs[list(PAIR_COLUMNS)].to_csv(tmp, index=False)
    return target
