"""report.figures: PNGs are written (atomically) from arrays/tables, without pyplot state or torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from evaluation_tables import CLASSES, make_predictions
from PIL import Image

from covidct.evaluation.summary import summarize_by_model
from covidct.report.figures import (
    pareto_front,
    plot_accuracy_vs_latency,
    plot_confusion_matrix,
    plot_metric_bars,
    plot_roc,
)


def _is_png(path: Path) -> tuple[int, int]:
    assert path.is_file()
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


@pytest.mark.parametrize("normalize", [False, True])
def test_confusion_matrix_png(tmp_path: Path, normalize: bool) -> None:
    out = plot_confusion_matrix(
        np.array([[5, 1, 0], [2, 6, 1], [0, 0, 0]]), CLASSES, tmp_path / "cm.png", normalize=normalize
    )
    width, height = _is_png(out)
    assert width > 100 and height > 100
    assert [p.name for p in tmp_path.iterdir()] == ["cm.png"]  # no temp file left behind
    with pytest.raises(ValueError):
        plot_confusion_matrix(np.zeros((2, 2)), CLASSES, tmp_path / "bad.png")


def test_roc_skips_classes_without_both_outcomes(tmp_path: Path) -> None:
    df = make_predictions(repeats=1, folds=1)
    _is_png(plot_roc(df, tmp_path / "roc.png"))
    _is_png(plot_roc(df[df["label"] == "Healthy"], tmp_path / "roc_one_class.png"))


def test_metric_bars_and_latency(tmp_path: Path) -> None:
    df = pd.concat([make_predictions(model="a"), make_predictions(model="b", signal=0.5, seed=3)])
    summaries = summarize_by_model(df)
    _is_png(plot_metric_bars(summaries, "accuracy", tmp_path / "bars.png"))
    _is_png(
        plot_metric_bars(summaries, "specificity", tmp_path / "bars_cls.png", cls="COVID-19", level="patient")
    )
    table = pd.DataFrame(
        {
            "model": ["a", "b", "c"],
            "latency_ms": [5.0, 50.0, 20.0],
            "accuracy": [0.90, 0.95, 0.85],
            "accuracy_std": [0.01, 0.02, 0.03],
        }
    )
    _is_png(plot_accuracy_vs_latency(table, tmp_path / "lat.png"))
    with pytest.raises(ValueError, match="latency_ms"):
        plot_accuracy_vs_latency(table.drop(columns="latency_ms"), tmp_path / "x.png")


def test_pareto_front() -> None:
    # c is slower than a and less accurate: dominated
    assert pareto_front([5.0, 50.0, 20.0], [0.90, 0.95, 0.85]).tolist() == [0, 1]


def test_no_pyplot_and_no_torch_in_evaluation() -> None:
    code = (
        "import sys, covidct.evaluation.summary, covidct.evaluation.stats, covidct.report.figures;"
        "bad = [m for m in ('torch', 'matplotlib.pyplot') if m in sys.modules];"
        "sys.exit(str(bad) if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
