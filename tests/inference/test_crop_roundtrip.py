"""A checkpoint trained with ``--crop lungs`` predicts with the crop: torch, ONNX, CLI and CAMs (issue 14)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from covidct.cli.main import app

runner = CliRunner()
TINY = ["--epochs", "1", "--batch-size", "8", "--image-size", "32", "--no-pretrained", "--device", "cpu"]


@pytest.fixture(scope="module")
def cropped_run(phantoms, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("crop_run")
    args = ["train", str(phantoms.images_dir), "-m", "resnet10t", "-o", str(out), *TINY, "--no-augment"]
    result = runner.invoke(app, [*args, "--crop", "lungs", "--standardize", "lungs"])
    assert result.exit_code == 0, result.output
    return out


def _images(phantoms, n: int = 6) -> list[Path]:  # type: ignore[no-untyped-def]
    return sorted(phantoms.images_dir.rglob("*.png"))[:n]


@pytest.mark.slow  # trains a tiny model once (module fixture), ~15-70 s on 2 shared cores
def test_checkpoint_records_and_predictor_repeats_the_crop(cropped_run: Path, phantoms) -> None:  # type: ignore[no-untyped-def]
    from covidct.data.preprocess import Preprocess
    from covidct.data.readers import load_slice
    from covidct.inference.torch_backend import TorchPredictor
    from covidct.models.checkpoint import load_checkpoint

    loaded = load_checkpoint(cropped_run / "best.pt")
    assert loaded.meta.preprocess == {"crop": "lungs", "standardize": "lungs", "crop_margin": 0.05}
    predictor = TorchPredictor.load(cropped_run / "best.pt", device="cpu")
    assert predictor.preprocess == Preprocess.from_meta(loaded.meta)
    paths = _images(phantoms)
    result = predictor.predict(paths)
    assert result.slices["lungs_found"].all()
    images = [load_slice(p) for p in paths]
    cropped = predictor.predict_proba(predictor.preprocess.batch(images))
    plain = predictor.predict_proba(
        Preprocess(image_size=32, mean=loaded.meta.mean, std=loaded.meta.std).batch(images)
    )
    np.testing.assert_allclose(result.probabilities, cropped, atol=1e-5)
    assert not np.allclose(cropped, plain, atol=1e-4)  # the crop changes what the network sees


@pytest.mark.slow  # trains a tiny model once (module fixture), ~15-70 s on 2 shared cores
def test_onnx_export_carries_the_crop(cropped_run: Path, phantoms, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from covidct.inference.export import export_onnx
    from covidct.inference.load import load_predictor
    from covidct.inference.onnx_meta import read_onnx_metadata
    from covidct.inference.torch_backend import TorchPredictor

    onnx = export_onnx(cropped_run / "best.pt", tmp_path / "m.onnx").path
    assert read_onnx_metadata(onnx)["preprocess"]["crop"] == "lungs"
    torch_pred = TorchPredictor.load(cropped_run / "best.pt", device="cpu")
    onnx_pred = load_predictor(onnx)
    assert onnx_pred.preprocess == torch_pred.preprocess
    paths = _images(phantoms, 3)
    np.testing.assert_allclose(
        onnx_pred.predict(paths).probabilities, torch_pred.predict(paths).probabilities, atol=1e-4
    )


@pytest.mark.slow  # trains a tiny model once (module fixture), ~15-70 s on 2 shared cores
def test_cli_predict_reports_the_lung_preprocessing(cropped_run: Path, phantoms, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    out = tmp_path / "preds.csv"
    result = runner.invoke(
        app, ["predict", str(cropped_run / "best.pt"), *map(str, _images(phantoms, 2)), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "crop lungs, standardize lungs): 0 of 2 slice(s) without lungs found" in result.output
    assert pd.read_csv(out)["lungs_found"].tolist() == [True, True]


@pytest.mark.slow  # trains a tiny model once (module fixture), ~15-70 s on 2 shared cores
def test_cams_sit_in_the_crop_box(cropped_run: Path, phantoms) -> None:  # type: ignore[no-untyped-def]
    from covidct.data.preprocess import Preprocess
    from covidct.data.readers import load_slice
    from covidct.explain.cam import compute_cams
    from covidct.models.checkpoint import load_checkpoint

    loaded = load_checkpoint(cropped_run / "best.pt")
    prep = Preprocess.from_meta(loaded.meta)
    image = load_slice(_images(phantoms, 1)[0])
    cams = compute_cams(loaded.model, "layer2", [image], classes=loaded.meta.classes, preprocess=prep)
    r0, r1, c0, c1 = prep.box(image)
    cam = cams.maps[0][0]
    assert cam.shape == image.shape and cam[r0:r1, c0:c1].max() > 0
    outside = np.ones(image.shape, dtype=bool)
    outside[r0:r1, c0:c1] = False
    assert outside.any() and not cam[outside].any()


def test_cli_rejects_an_unknown_crop(phantoms, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    args = ["train", str(phantoms.images_dir), "-m", "resnet10t", "-o", str(tmp_path / "r"), *TINY]
    result = runner.invoke(app, [*args, "--crop", "body"])
    assert result.exit_code == 2 and "crop must be one of none, lungs" in result.output
