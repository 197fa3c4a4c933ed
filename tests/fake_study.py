"""Write a fake study folder (per-job predictions tables, study.json, models.json): no model, no torch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

CLASSES = ("COVID-19", "Healthy", "Pneumonia")


def write_fake_study(
    root: Path,
    models: dict[str, float],
    *,
    folds: int = 3,
    repeats: int = 2,
    patients_per_class: int = 3,
    slices_per_patient: int = 2,
    skip: tuple[tuple[str, int, int], ...] = (),
    seed: int = 0,
    classes: tuple[str, ...] = CLASSES,
) -> Path:
    """``models`` maps a model name to its signal strength (higher = more accurate). Same patients in every
    fold for every model (paired). ``skip`` lists (model, repeat, fold) jobs left without predictions."""
    rng = np.random.default_rng(seed)
    for model, signal in models.items():
        for repeat in range(repeats):
            for fold in range(folds):
                if (model, repeat, fold) in skip:
                    continue
                rows = []
                for ci, cls in enumerate(classes):
                    for p in range(patients_per_class):
                        pid = f"{cls}-f{fold}p{p}"
                        for s in range(slices_per_patient):
                            logits = rng.normal(size=len(classes))
                            logits[ci] += signal
                            prob = np.exp(logits) / np.exp(logits).sum()
                            row = {"path": f"{pid}/{s}.png", "patient_id": pid, "label": cls}
                            row.update({f"prob_{c}": float(v) for c, v in zip(classes, prob, strict=True)})
                            row.update(fold=fold, repeat=repeat, model=model, run_id="fake")
                            rows.append(row)
                out = root / "models" / model / "folds" / f"r{repeat}_f{fold}" / "predictions.csv"
                out.parent.mkdir(parents=True, exist_ok=True)
                pd.DataFrame(rows).to_csv(out, index=False)
    (root / "study.json").write_text(
        json.dumps(
            {
                "data": "/data/fake",
                "models": list(models),
                "folds": folds,
                "repeats": repeats,
                "seed": 0,
                "train": {"epochs": 1, "image_size": 48, "pretrained": False},
            }
        )
    )
    info = {
        m: {
            "timm_name": m,
            "params": 1_000_000 * (i + 1),
            "image_size": 48,
            "latency_ms": 2.0 + 3 * i,
            "latency_threads": 1,
        }
        for i, m in enumerate(models)
    }
    (root / "models.json").write_text(json.dumps(info))
    return root
