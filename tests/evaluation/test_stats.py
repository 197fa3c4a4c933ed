"""Paired Wilcoxon of the best model against the rest, on a constructed per-fold table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from evaluation_tables import make_predictions
from scipy.stats import wilcoxon

from covidct.evaluation.stats import holm_correction, paired_table, paired_wilcoxon, wilcoxon_vs_best
from covidct.evaluation.summary import per_fold_metrics


def _per_fold(values: dict[str, list[tuple[int, int, float]]]) -> pd.DataFrame:
    rows = [
        (model, repeat, fold, "slice", "__all__", "accuracy", value)
        for model, items in values.items()
        for repeat, fold, value in items
    ]
    return pd.DataFrame(rows, columns=["model", "repeat", "fold", "level", "class", "metric", "value"])


PAIRS = [(r, f) for r in range(2) for f in range(5)]
BASE = np.linspace(0.80, 0.89, len(PAIRS))


def test_constructed_example() -> None:
    table = _per_fold(
        {
            "A": [(r, f, b + 0.05) for (r, f), b in zip(PAIRS, BASE, strict=False)],  # best
            "B": [(r, f, b) for (r, f), b in zip(PAIRS, BASE, strict=False)],  # worse on every fold
            "C": [(r, f, b + 0.05) for (r, f), b in zip(PAIRS, BASE, strict=False)],  # identical to A: ties
            "D": [(0, 0, 0.99)],  # one shared pair only
        }
    )
    result = wilcoxon_vs_best(table).set_index("model")
    # the best is the highest mean, even over a single fold: D (0.99)
    assert result.index[0] == "D" and bool(result.loc["D", "is_best"])
    # every other model shares one pair with D: fewer than 2 pairs -> NaN, never significant
    for model in "ABC":
        assert result.loc[model, "n_pairs"] == 1 and math.isnan(result.loc[model, "p_value"])
    assert not result["significant"].any()

    without_d = wilcoxon_vs_best(table[table["model"] != "D"]).set_index("model")
    assert list(without_d.index) == ["A", "C", "B"]  # tie on the mean broken by name
    assert without_d.loc["A", "is_best"] and math.isnan(without_d.loc["A", "p_value"])
    assert without_d.loc["C", "p_value"] == 1.0 and without_d.loc["C", "diff_vs_best"] == pytest.approx(0.0)
    # all 10 differences have the same sign: exact two-sided p = 2 / 2**10
    assert without_d.loc["B", "p_value"] == pytest.approx(2 / 2**10)
    assert without_d.loc["B", "p_holm"] == pytest.approx(2 * 2 / 2**10)
    assert without_d.loc["B", "diff_vs_best"] == pytest.approx(-0.05)
    assert without_d.loc["B", "n_pairs"] == 10
    assert bool(without_d.loc["B", "significant"]) and not bool(without_d.loc["C", "significant"])
    assert without_d.loc["B", "std"] == pytest.approx(np.std(BASE, ddof=1))


def test_paired_wilcoxon_matches_scipy_and_drops_nan() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=12), rng.normal(size=12)
    p, n = paired_wilcoxon(a, b)
    assert n == 12 and p == pytest.approx(wilcoxon(a, b).pvalue)
    a[3] = np.nan
    assert paired_wilcoxon(a, b)[1] == 11
    assert math.isnan(paired_wilcoxon([0.5], [0.4])[0])


def test_holm_correction() -> None:
    adjusted = holm_correction([0.01, 0.04, 0.03, float("nan")])
    np.testing.assert_allclose(adjusted[:3], [0.03, 0.06, 0.06])
    assert math.isnan(adjusted[3])


def test_on_real_per_fold_output() -> None:
    df = pd.concat(
        [
            make_predictions(model="strong", signal=3.0, seed=1),
            make_predictions(model="weak", signal=0.2, seed=2),
        ],
        ignore_index=True,
    )
    pf = per_fold_metrics(df)
    assert paired_table(pf, "macro_f1").shape == (6, 2)
    result = wilcoxon_vs_best(pf, "macro_f1", level="patient")
    assert result["model"].tolist() == ["strong", "weak"]
    assert result.loc[1, "n_pairs"] == 6 and result.loc[1, "diff_vs_best"] < 0
    with pytest.raises(ValueError, match="no per-fold values"):
        wilcoxon_vs_best(pf, "no_such_metric")
