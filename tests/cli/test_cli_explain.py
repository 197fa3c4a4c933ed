"""covidct explain / activations through the CLI: outputs, printed scores, user errors as exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from covidct.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from covidct.models.checkpoint import CheckpointMeta, save_checkpoint
    from covidct.models.factory import create_model
    from covidct.models.normalization import model_normalization

    torch.manual_seed(0)
    model = create_model("resnet10t", 3, pretrained=False)
    mean, std = model_normalization(model)
    meta = CheckpointMeta(
        model_name="resnet10t",
        timm_name="resnet10t",
        classes=("COVID-19", "Healthy", "Pneumonia"),
        image_size=64,
        mean=mean,
        std=std,
    )
    return save_checkpoint(tmp_path_factory.mktemp("cli_ckpt") / "m.pt", model, meta)


def test_explain_with_masks_prints_scores(checkpoint: Path, phantoms, tmp_path: Path) -> None:
    out = tmp_path / "out"
    inputs = [str(phantoms.images_dir / "COVID-19" / "p001"), str(phantoms.images_dir / "Healthy" / "p001")]
    result = runner.invoke(
        app,
        [
            "explain",
            str(checkpoint),
            *inputs,
            "--out",
            str(out),
            "--masks",
            str(phantoms.masks_dir),
            "--batch-size",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "pointing game:" in result.output and "random baseline" in result.output
    assert "energy inside mask:" in result.output
    assert "4 without" in result.output  # the Healthy slices have empty masks
    assert (out / "index.json").is_file() and (out / "index.csv").is_file()
    assert len(list(out.glob("*.png"))) == 8


def test_explain_audit_prints_the_table(checkpoint: Path, phantoms, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "explain",
            str(checkpoint),
            str(phantoms.images_dir / "COVID-19" / "p001"),
            "--out",
            str(out),
            "--lungs",
            str(phantoms.images_dir.parent / "lungs"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "layer2 (8x8 map at 64 px" in result.output  # the default layer, and why
    assert "shortcut audit" in result.output and "random map" in result.output and "all" in result.output
    assert (out / "audit.csv").is_file() and "audit.csv" in result.output


def test_explain_without_masks_prints_faithfulness(checkpoint: Path, phantoms, tmp_path: Path) -> None:
    image = str(phantoms.images_dir / "Pneumonia" / "p002" / "2.png")
    result = runner.invoke(
        app,
        [
            "explain",
            str(checkpoint),
            image,
            "--out",
            str(tmp_path / "o"),
            "--method",
            "hirescam",
            "--target",
            "Pneumonia",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "faithfulness:" in result.output and "hirescam @ layer2" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layer", "layer9"], "layer4"),
        (["--method", "magic"], "gradcam"),
        (["--target", "Flu"], "Pneumonia"),
    ],
)
def test_explain_user_errors(
    checkpoint: Path, phantoms, tmp_path: Path, args: list[str], message: str
) -> None:
    image = str(phantoms.images_dir / "Healthy" / "p001" / "1.png")
    result = runner.invoke(app, ["explain", str(checkpoint), image, "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_explain_missing_checkpoint(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["explain", str(tmp_path / "nope.pt"), str(tmp_path), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "nope.pt" in result.output


def test_activations(checkpoint: Path, phantoms, tmp_path: Path) -> None:
    image = str(phantoms.images_dir / "COVID-19" / "p001" / "1.png")
    result = runner.invoke(
        app, ["activations", str(checkpoint), image, "--out", str(tmp_path / "act"), "--top", "4"]
    )
    assert result.exit_code == 0, result.output
    assert "layer4" in result.output
    assert (tmp_path / "act" / "overview.png").is_file()
    assert len(list((tmp_path / "act").glob("stage*.png"))) == 5
