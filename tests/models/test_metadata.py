"""One model-metadata record: checkpoints written before the renovation still load, keys are unchanged, the
lung window comes from data/window.py, and the module imports no torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from covidct.data.window import WINDOW_PRESETS
from covidct.models.checkpoint import load_checkpoint, weights_sha256
from covidct.models.factory import create_model
from covidct.models.metadata import ModelMeta

#: The ``meta`` dict of a checkpoint as covidct 0.2.0 (before the renovation) wrote it.
META_0_2 = {
    "model_name": "resnet10t",
    "timm_name": "resnet10t",
    "classes": ["COVID-19", "Healthy", "Pneumonia"],
    "image_size": 32,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "window": {"name": "lung", "width": 1500.0, "level": -600.0},
    "cam_layer": "layer4",
    "dropout": 0.0,
    "preprocess": {},
    "config": {"epochs": 1},
    "covidct_version": "0.2.0",
    "format_version": 1,
    "created": "2026-11-30T12:00:00+00:00",
}


def _old_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    state = create_model("resnet10t", 3, pretrained=False).state_dict()
    payload = {
        "format": "covidct-checkpoint",
        "format_version": 1,
        "meta": META_0_2,
        "state_dict": state,
        "weights_sha256": weights_sha256(state),
        "extra": {"epoch": 1},
    }
    torch.save(payload, path)
    return path


def test_a_checkpoint_in_the_0_2_format_loads(tmp_path: Path) -> None:
    from covidct.inference import load_predictor

    path = _old_checkpoint(tmp_path / "old.pt")
    loaded = load_checkpoint(path)
    assert loaded.meta.to_dict() == META_0_2  # every key and value survives, none added
    assert loaded.meta.classes == ("COVID-19", "Healthy", "Pneumonia") and loaded.extra == {"epoch": 1}
    predictor = load_predictor(path)
    assert predictor.meta == loaded.meta and predictor.meta.cam_layer == "layer4"
    assert predictor.predict([torch.rand(40, 40).numpy()]).slices["predicted"].iloc[0] in loaded.meta.classes


def test_serialised_keys_are_the_checkpoint_keys() -> None:
    meta = ModelMeta.from_dict(META_0_2)
    assert list(meta.to_dict()) == list(META_0_2)
    assert ModelMeta.from_dict({**META_0_2, "unknown_key": 1}) == meta  # newer keys are ignored


def test_default_window_is_the_lung_preset() -> None:
    meta = ModelMeta(
        model_name="m", timm_name="m", classes=("a", "b"), image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3
    )
    width, level = WINDOW_PRESETS["lung"]
    assert meta.window == {"name": "lung", "width": width, "level": level}
    assert meta.window_spec == f"{width:g},{level:g}"


def test_metadata_imports_no_torch() -> None:
    code = "import sys, covidct.models.metadata, covidct.models.registry; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
