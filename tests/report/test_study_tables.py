"""A study's files (CSV/Markdown tables, summary.json, figures) written from fake per-job predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from fake_study import write_fake_study

from covidct.report.study_tables import save_study_outputs


def test_save_outputs(fake_study: Path) -> None:
    save_study_outputs(fake_study)
    for name in (
        "per_fold_metrics.csv",
        "per_class.csv",
        "multiclass.csv",
        "model_table.csv",
        "wilcoxon.csv",
        "study.md",
        "summary.json",
        "figures/bars_accuracy.png",
        "figures/accuracy_vs_latency.png",
        "figures/confusion_VGG16.png",
        "figures/bars_f1_class0.png",
    ):
        assert (fake_study / name).is_file(), name
    per_class = pd.read_csv(fake_study / "per_class.csv")
    assert set(per_class["metric"]) == {"f1", "accuracy", "sensitivity", "specificity", "precision"}
    md = (fake_study / "study.md").read_text()
    assert "Wilcoxon" in md and "EfficientNetB5 (best)" in md and "± " in md
    summary = json.loads((fake_study / "summary.json").read_text())
    assert set(summary["models"]) == {"EfficientNetB5", "resnet10t", "VGG16"}
    assert np.isfinite(summary["models"]["VGG16"]["overall"]["accuracy"]["mean"])


def test_unmeasured_latency(tmp_path: Path) -> None:
    study = write_fake_study(tmp_path / "s", {"a": 2.0, "b": 1.0})
    info = json.loads((study / "models.json").read_text())
    for entry in info.values():
        entry["latency_ms"] = None  # compare --no-latency
    (study / "models.json").write_text(json.dumps(info))
    tables = save_study_outputs(study)
    assert tables.model_info["latency_ms"].isna().all()
    assert not (study / "figures" / "accuracy_vs_latency.png").exists()
    assert "n/a" in (study / "study.md").read_text()
