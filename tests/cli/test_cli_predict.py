"""CLI: covidct predict / export / bench, and their one-line user errors (exit 2, no traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from covidct.cli.main import app

runner = CliRunner()
CLASSES = ("COVID-19", "Healthy", "Pneumonia")


def _checkpoint(path: Path) -> Path:
    import torch

    from covidct.models.checkpoint import CheckpointMeta, save_checkpoint
    from covidct.models.factory import create_model
    from covidct.models.normalization import model_normalization

    torch.manual_seed(0)
    model = create_model("resnet10t", len(CLASSES), pretrained=False).eval()
    mean, std = model_normalization(model)
    meta = CheckpointMeta(
        model_name="resnet10t", timm_name="resnet10t", classes=CLASSES, image_size=32, mean=mean, std=std
    )
    return save_checkpoint(path, model, meta)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("cli") / "tiny.pt")


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for patient, n in (("P1", 3), ("P2", 2)):
        (tmp_path / "in" / patient).mkdir(parents=True)
        for k in range(n):
            Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(
                tmp_path / "in" / patient / f"{k}.png"
            )
    return tmp_path / "in"


def _user_error(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert lines[0].startswith("error: "), result.output
    return result.output


def test_predict_csv_and_json(ckpt: Path, images: Path, tmp_path: Path) -> None:
    out = tmp_path / "preds.csv"
    result = runner.invoke(app, ["predict", str(ckpt), str(images), "--out", str(out), "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    slices, patients = pd.read_csv(out), pd.read_csv(tmp_path / "preds.patients.csv")
    assert len(slices) == 5 and {f"prob_{c}" for c in CLASSES} <= set(slices.columns)
    assert sorted(patients["n_slices"]) == [2, 3] and "predicted" in patients.columns
    assert "2 patient(s)/series" in result.output
    out_json = tmp_path / "preds.json"
    result = runner.invoke(app, ["predict", str(ckpt), str(images), "--out", str(out_json)])
    assert result.exit_code == 0, result.output
    data = json.loads(out_json.read_text())
    assert len(data["slices"]) == 5 and len(data["patients"]) == 2


def test_export_then_predict_with_onnx(ckpt: Path, images: Path, tmp_path: Path) -> None:
    onnx_path = tmp_path / "model.onnx"
    result = runner.invoke(app, ["export", str(ckpt), "--out", str(onnx_path)])
    assert result.exit_code == 0, result.output
    assert "max abs diff" in result.output and onnx_path.is_file()
    torch_out, onnx_out = tmp_path / "t.csv", tmp_path / "o.csv"
    assert runner.invoke(app, ["predict", str(ckpt), str(images), "-o", str(torch_out)]).exit_code == 0
    result = runner.invoke(app, ["predict", str(onnx_path), str(images), "-o", str(onnx_out)])
    assert result.exit_code == 0, result.output
    prob = [f"prob_{c}" for c in CLASSES]
    np.testing.assert_allclose(pd.read_csv(onnx_out)[prob], pd.read_csv(torch_out)[prob], atol=1e-4)


def test_predict_user_errors(ckpt: Path, images: Path, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00junk")
    assert "corrupt.pt" in _user_error(runner.invoke(app, ["predict", str(corrupt), str(images)]))
    assert "missing.png" in _user_error(
        runner.invoke(app, ["predict", str(ckpt), str(tmp_path / "missing.png")])
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    _user_error(runner.invoke(app, ["predict", str(ckpt), str(empty)]))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert "bad.png" in _user_error(runner.invoke(app, ["predict", str(ckpt), str(bad)]))
    assert ".csv or .json" in _user_error(
        runner.invoke(app, ["predict", str(ckpt), str(images), "--out", str(tmp_path / "p.txt")])
    )
    _user_error(runner.invoke(app, ["export", str(corrupt), "--out", str(tmp_path / "m.onnx")]))
    assert not (tmp_path / "m.onnx").exists()


def test_bench_writes_csv_and_markdown(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    result = runner.invoke(
        app,
        [
            "bench",
            "--models",
            "resnet10t",
            "--backends",
            "onnx",
            "--batch-sizes",
            "1,2",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--image-size",
            "32",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "bench.csv")
    assert table["batch_size"].tolist() == [1, 2] and (table["model_ms_median"] > 0).all()
    assert "| resnet10t | onnx | fp32 | 2 |" in (out / "bench.md").read_text()


def test_bench_user_errors() -> None:
    _user_error(runner.invoke(app, ["bench", "--models", "NoSuchNet", "--backends", "onnx"]))
    _user_error(runner.invoke(app, ["bench", "--backends", "tensorrt"]))
    _user_error(runner.invoke(app, ["bench", "--batch-sizes", "1,x"]))


def test_predict_explain_writes_cams(ckpt: Path, images: Path, tmp_path: Path) -> None:
    cams = tmp_path / "cams"
    result = runner.invoke(app, ["predict", str(ckpt), str(images), "--explain", "--explain-dir", str(cams)])
    assert result.exit_code == 0, result.output
    assert (cams / "index.json").is_file() and "Grad-CAM" in result.output
    onnx_path = tmp_path / "m.onnx"
    assert runner.invoke(app, ["export", str(ckpt), "--out", str(onnx_path), "--no-check"]).exit_code == 0
    assert "torch checkpoint" in _user_error(
        runner.invoke(app, ["predict", str(onnx_path), str(images), "--explain"])
    )
