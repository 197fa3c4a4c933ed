"""No class from non-finite probabilities, whatever the backend; ONNX exports verify their weights hash."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hostile_files import flip_onnx_weights, nan_checkpoint

from covidct.errors import CheckpointError, DataError
from covidct.inference.load import load_predictor
from covidct.inference.predictor import Predictor
from covidct.models.metadata import ModelMeta

CLASSES = ("COVID-19", "Healthy", "Pneumonia")


class _Fixed(Predictor):
    """A backend whose logits are given: the guard lives in the base class, for every backend."""

    backend = "fixed"

    def __init__(self, logits: np.ndarray) -> None:
        super().__init__(
            ModelMeta(
                model_name="fixed-model",
                timm_name="",
                classes=CLASSES,
                image_size=16,
                mean=(0.5,) * 3,
                std=(0.5,) * 3,
            ),
            batch_size=4,
        )
        self._logits = logits

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        return self._logits[: len(pixels)]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_logits_never_become_a_class(bad: float) -> None:
    logits = np.array([[1.0, 0.0, 0.0], [0.0, bad, 0.0]])
    images = [np.full((20, 20), 0.5, dtype=np.float32)] * 2
    if bad == -np.inf:  # -inf logit is a probability of exactly 0: finite, fine
        assert _Fixed(logits).predict(images).slices["predicted"].tolist() == ["COVID-19", "COVID-19"]
        return
    with pytest.raises(DataError, match=r"array\[1\]: model 'fixed-model' gave non-finite probabilities"):
        _Fixed(logits).predict(images)


def test_nan_weight_checkpoint_names_file_and_model(tmp_path: Path) -> None:
    from PIL import Image

    image = tmp_path / "slice.png"
    Image.fromarray(np.full((32, 32), 90, dtype=np.uint8)).save(image)
    predictor = load_predictor(nan_checkpoint(tmp_path / "nan.pt"))
    with pytest.raises(DataError, match=r"slice\.png: model 'resnet10t' gave non-finite probabilities"):
        predictor.predict(image)


def test_onnx_export_records_and_verifies_the_weights_hash(tiny_onnx: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    from covidct.inference.onnx_meta import WEIGHTS_HASH_KEY, read_onnx_metadata

    props = ort.InferenceSession(str(tiny_onnx)).get_modelmeta().custom_metadata_map
    assert len(props[WEIGHTS_HASH_KEY]) == 64 and read_onnx_metadata(tiny_onnx)["classes"] == list(CLASSES)
    load_predictor(tiny_onnx)  # intact: loads
    bad = flip_onnx_weights(tiny_onnx, tmp_path / "flipped.onnx")
    with pytest.raises(CheckpointError, match=r"flipped\.onnx: model corrupted: weights hash mismatch"):
        load_predictor(bad)
