"""Paired comparison of models on identical (repeat, fold) splits: is the best model really better?

Input is the tidy table of :func:`covidct.evaluation.summary.per_fold_metrics` for several models evaluated on
the same folds (issue 6: every model sees the same splits). The best model (highest mean) is compared with
each other model by a Wilcoxon signed-rank test on the paired per-fold differences (``scipy.stats.wilcoxon``);
p-values are Holm-corrected over the comparisons. Caveat: folds of repeated k-fold CV share training data, so
the pairs are not independent and the test is somewhat optimistic; treat small p-values as evidence, not
proof.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.stats import wilcoxon

STATS_COLUMNS: tuple[str, ...] = (
    "model",
    "mean",
    "std",
    "diff_vs_best",
    "p_value",
    "p_holm",
    "n_pairs",
    "significant",
    "is_best",
)


def paired_table(
    per_fold: pd.DataFrame, metric: str = "accuracy", *, level: str = "slice", cls: str = "__all__"
) -> pd.DataFrame:
    """One row per (repeat, fold), one column per model, values of ``metric`` (NaN where missing)."""
    rows = per_fold[
        (per_fold["metric"] == metric) & (per_fold["level"] == level) & (per_fold["class"] == cls)
    ]
    if rows.empty:
        raise ValueError(f"no per-fold values for metric={metric!r}, level={level!r}, class={cls!r}")
    return rows.pivot_table(
        index=["repeat", "fold"], columns="model", values="value", aggfunc="mean", dropna=False
    )


def holm_correction(p_values: ArrayLike) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (NaN inputs stay NaN and do not count as tests)."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, np.nan)
    valid = np.flatnonzero(np.isfinite(p))
    m = valid.size
    running = 0.0
    for rank, i in enumerate(valid[np.argsort(p[valid], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def paired_wilcoxon(a: Sequence[float], b: Sequence[float]) -> tuple[float, int]:
    """Two-sided Wilcoxon signed-rank p-value of paired samples and the number of complete pairs.

    Pairs with a NaN are dropped. Fewer than 2 pairs: NaN. All differences zero: 1.0 (no evidence of a
    difference). Zero differences are split between ranks (``zero_method="zsplit"``).
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = int(x.size)
    if n < 2:
        return float("nan"), n
    diff = x - y
    if np.allclose(diff, 0.0, atol=1e-12):
        return 1.0, n
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # small-sample / ties notices
        warnings.simplefilter("ignore", UserWarning)
        result = wilcoxon(x, y, zero_method="zsplit", alternative="two-sided")
    p = float(result.pvalue)
    return (p if np.isfinite(p) else 1.0), n


def wilcoxon_vs_best(
    per_fold: pd.DataFrame,
    metric: str = "accuracy",
    *,
    level: str = "slice",
    cls: str = "__all__",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Compare the best model (highest mean ``metric``) with every other on the shared (repeat, fold) pairs.

    Returns a DataFrame sorted by mean (best first) with columns ``model, mean, std (ddof=1), diff_vs_best
    (model mean - best mean over the shared pairs), p_value, p_holm (Holm-corrected over the comparisons),
    n_pairs, significant (p_holm < alpha), is_best``. The best model's own row has NaN p-values.
    """
    wide = paired_table(per_fold, metric, level=level, cls=cls)
    means = wide.mean(axis=0, skipna=True)
    stds = wide.std(axis=0, ddof=1, skipna=True).fillna(0.0)
    # best first; ties broken by model name so the result does not depend on column order
    order = sorted(means.index, key=lambda m: (not np.isfinite(means[m]), -np.nan_to_num(means[m]), str(m)))
    best = order[0]
    records = []
    for model in order:
        if model == best:
            records.append((model, means[model], stds[model], 0.0, np.nan, int(wide[best].notna().sum())))
            continue
        pair = wide[[best, model]].dropna()
        p, n = paired_wilcoxon(pair[model].to_numpy(), pair[best].to_numpy())
        diff = float(pair[model].mean() - pair[best].mean()) if n else np.nan
        records.append((model, means[model], stds[model], diff, p, n))
    out = pd.DataFrame(records, columns=["model", "mean", "std", "diff_vs_best", "p_value", "n_pairs"])
    out["p_holm"] = holm_correction(out["p_value"].to_numpy())
    out["significant"] = (out["p_holm"] < alpha).fillna(False).astype(bool)
    out["is_best"] = out["model"] == best
    out["model"] = out["model"].astype(str)
    return out[list(STATS_COLUMNS)].reset_index(drop=True)
