"""ONNX export: metadata, dynamic batch, parity with PyTorch, failures; representative backbones (all 20:
slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from covidct.errors import CheckpointError, ConfigError
from covidct.inference import export as export_mod
from covidct.inference.export import export_onnx
from covidct.inference.onnx_meta import read_onnx_metadata
from covidct.models.registry import list_models

CLASSES = ["COVID-19", "Healthy", "Pneumonia"]


def test_metadata_and_dynamic_batch(tiny_onnx: Path, tiny_checkpoint: Path) -> None:
    import onnx
    import onnxruntime as ort
    import torch

    from covidct.models.checkpoint import load_checkpoint

    meta = read_onnx_metadata(tiny_onnx)
    assert meta["classes"] == CLASSES and meta["input_size"] == 32 and meta["model_name"] == "resnet10t"
    assert len(meta["mean"]) == 3 and meta["window"]["width"] == 1500.0 and meta["covidct_version"]
    props = {p.key: p.value for p in onnx.load(str(tiny_onnx)).metadata_props}
    assert json.loads(props["classes"]) == CLASSES and props["input_size"] == "32"
    session = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    got = session.run(None, {"input": x})[0]
    with torch.inference_mode():
        expected = load_checkpoint(tiny_checkpoint).model(torch.from_numpy(x)).numpy()
    assert got.shape == (3, 3)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_export_reports_parity(tiny_checkpoint: Path, tmp_path: Path) -> None:
    result = export_onnx(tiny_checkpoint, tmp_path / "m.onnx", check_batch=3)
    assert result.path.is_file() and result.max_abs_diff is not None
    assert 0.0 <= result.max_abs_diff < 1e-4
    unchecked = export_onnx(tiny_checkpoint, tmp_path / "u.onnx", check=False)
    assert unchecked.max_abs_diff is None and unchecked.path.is_file()


def test_parity_failure_is_an_error_and_writes_nothing(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export_mod, "parity_check", lambda *a, **k: (0.5, 2.0))
    out = tmp_path / "m.onnx"
    with pytest.raises(CheckpointError, match="does not match PyTorch"):
        export_onnx(tiny_checkpoint, out)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_export_input_errors(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=".onnx"):
        export_onnx(tiny_checkpoint, tmp_path / "m.pt")
    corrupt = tmp_path / "c.pt"
    corrupt.write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="c.pt"):
        export_onnx(corrupt, tmp_path / "m.onnx")


# name -> smallest convenient input size (InceptionV3 needs >= 75 px)
REPRESENTATIVE = {
    "EfficientNetB0": 64,
    "DenseNet121": 64,
    "ResNet50V2": 64,
    "InceptionV3": 75,
    "Xception": 64,
    "VGG16": 64,
}


def _export_roundtrip(name: str, size: int, tmp_path: Path, factory) -> None:  # type: ignore[no-untyped-def]
    ckpt = factory(tmp_path / f"{name}.pt", name, size)
    result = export_onnx(ckpt, tmp_path / f"{name}.onnx", check_batch=2)
    assert result.max_abs_diff is not None and result.max_abs_logit is not None
    assert result.max_abs_diff <= 1e-3 * max(1.0, result.max_abs_logit), result
    assert read_onnx_metadata(result.path)["model_name"] == name


@pytest.mark.parametrize("name", sorted(REPRESENTATIVE))
def test_export_representative_backbones(name: str, tmp_path: Path, checkpoint_factory) -> None:  # type: ignore[no-untyped-def]
    _export_roundtrip(name, REPRESENTATIVE[name], tmp_path, checkpoint_factory)


@pytest.mark.slow
@pytest.mark.parametrize("name", [s.name for s in list_models() if s.name not in REPRESENTATIVE])
def test_export_all_registry_backbones(name: str, tmp_path: Path, checkpoint_factory) -> None:  # type: ignore[no-untyped-def]
    _export_roundtrip(name, 75, tmp_path, checkpoint_factory)
