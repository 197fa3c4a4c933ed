"""Bootstrap CIs: the vectorised cluster bootstrap against a per-resample sklearn loop, on a synthetic table.

Run: ``PYTHONPATH=src python benchmarks/bootstrap.py [--rows 2500] [--boot 1000] [--naive-boot 100]``.
The loop's time is measured on ``--naive-boot`` resamples and scaled to ``--boot``; prints both and the ratio.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from covidct.evaluation.bootstrap import bootstrap_intervals
from covidct.evaluation.metrics import multiclass_scores, one_vs_rest_scores, predicted_labels


def _table(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, str]]:
    rng = np.random.default_rng(seed)
    classes = ("COVID-19", "non-COVID")
    y = rng.integers(0, 2, size=rows)
    logits = rng.normal(size=(rows, 2))
    logits[np.arange(rows), y] += 1.2
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    units = np.arange(rows).astype(str)  # slices as units, as on sarscov2-ct
    return np.asarray(classes, dtype=object)[y], prob, units, classes


def naive(y: np.ndarray, prob: np.ndarray, units: np.ndarray, classes, n_boot: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    codes, inverse = np.unique(units, return_inverse=True)
    rows_of = [np.flatnonzero(inverse == u) for u in range(len(codes))]
    for _ in range(n_boot):
        pick = np.concatenate([rows_of[u] for u in rng.integers(0, len(codes), size=len(codes))])
        yy, pp = y[pick], prob[pick]
        one_vs_rest_scores(yy, predicted_labels(pp, classes), classes)
        multiclass_scores(yy, pp, classes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2500)
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument("--naive-boot", type=int, default=100)
    args = parser.parse_args()
    y, prob, units, classes = _table(args.rows)
    start = time.perf_counter()
    naive(y, prob, units, classes, args.naive_boot)
    loop = (time.perf_counter() - start) * args.boot / args.naive_boot
    start = time.perf_counter()
    bootstrap_intervals(y, prob, classes, units, n_boot=args.boot)
    ours = time.perf_counter() - start
    print(f"{args.rows} rows, {args.boot} resamples")  # noqa: T201
    print(f"baseline (sklearn per resample, scaled from {args.naive_boot}): {loop:.2f} s")  # noqa: T201
    print(f"ours (vectorised): {ours:.2f} s")  # noqa: T201
    print(f"speed-up: {loop / ours:.1f}x")  # noqa: T201


if __name__ == "__main__":
    main()
