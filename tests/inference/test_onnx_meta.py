"""ONNX metadata as covidct 0.2.0 wrote it still describes the model (one ModelMeta for every backend)."""

from __future__ import annotations

import json

import pytest

from covidct.errors import CheckpointError
from covidct.inference.onnx_meta import onnx_metadata, record_meta
from covidct.models.metadata import ModelMeta

#: ``metadata_props["covidct_meta"]`` of an ONNX export by covidct 0.2.0.
RECORD_0_2 = {
    "model_name": "resnet10t",
    "classes": ["COVID-19", "Healthy", "Pneumonia"],
    "input_size": 32,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "window": {"name": "lung", "width": 1500.0, "level": -600.0},
    "covidct_version": "0.2.0",
    "preprocess": {},
    "timm_name": "resnet10t",
    "exporter": "torchscript",
}


def test_a_0_2_record_gives_the_model_meta() -> None:
    meta = record_meta(RECORD_0_2, "m.onnx")
    assert isinstance(meta, ModelMeta)
    assert (meta.model_name, meta.timm_name, meta.image_size) == ("resnet10t", "resnet10t", 32)
    assert meta.classes == ("COVID-19", "Healthy", "Pneumonia") and meta.window_spec == "1500,-600"
    assert meta.cam_layer == "" and meta.created == ""  # ONNX files record neither


def test_written_keys_are_unchanged() -> None:
    props = onnx_metadata(record_meta(RECORD_0_2, "m.onnx"), exporter="torchscript")
    assert json.loads(props["covidct_meta"]) == RECORD_0_2
    assert set(props) == {*RECORD_0_2, "covidct_meta"}


def test_incomplete_record_is_a_checkpoint_error() -> None:
    with pytest.raises(CheckpointError, match="m.onnx: incomplete covidct metadata"):
        record_meta({k: v for k, v in RECORD_0_2.items() if k != "classes"}, "m.onnx")
