"""covidct data scan | summary | synth | lungs through the CLI: outputs, manifest, user errors -> exit 2."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from covidct.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli_synth")
    result = runner.invoke(
        app,
        [
            "data",
            "synth",
            str(out),
            "--patients-per-class",
            "2",
            "--slices-per-patient",
            "2",
            "--size",
            "48",
            "--seed",
            "5",
        ],
    )
    assert result.exit_code == 0, result.output
    return out


def test_synth_writes_images_and_masks(synth_dir: Path) -> None:
    images = sorted((synth_dir / "images").rglob("*.png"))
    masks = sorted((synth_dir / "masks").rglob("*.png"))
    lungs = sorted((synth_dir / "lungs").rglob("*.png"))
    assert len(images) == len(masks) == len(lungs) == 12
    assert Image.open(images[0]).size == (48, 48)


def test_lungs_writes_a_mask_per_slice(synth_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "lungs"
    result = runner.invoke(app, ["data", "lungs", str(synth_dir / "images" / "Healthy"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote 4 lung mask(s) (intensity)" in result.output and "lung fraction per slice" in result.output
    rows = list(csv.DictReader((out / "lungs.csv").open()))
    assert [r["mask"] for r in rows][:2] == ["p001/1.png", "p001/2.png"]
    truth = np.asarray(Image.open(synth_dir / "lungs" / "Healthy" / "p001" / "1.png")) > 127
    mask = np.asarray(Image.open(out / "p001" / "1.png")) > 127
    assert (mask & truth).sum() / (mask | truth).sum() > 0.8


@pytest.mark.parametrize("command", ["scan", "summary", "synth", "lungs"])
def test_help(command: str) -> None:
    result = runner.invoke(app, ["data", command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_scan_writes_manifest(synth_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "manifest.csv"
    result = runner.invoke(app, ["data", "scan", str(synth_dir / "images"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "12 images" in result.output and "class_patient" in result.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 12 and {r["label"] for r in rows} == {"COVID-19", "Healthy", "Pneumonia"}
    assert all(r["readable"] == "true" and r["patient_id"] for r in rows)


def test_summary_and_aliases_and_no_patient_warning(tmp_path: Path) -> None:
    for folder, value in [("Sick", 1), ("Sick", 2), ("Normal", 3)]:
        (tmp_path / "ds" / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((5, 7), value, dtype=np.uint8)).save(
            tmp_path / "ds" / folder / f"{value}.png"
        )
    (tmp_path / "ds" / "Normal" / "broken.png").write_text("x")
    result = runner.invoke(app, ["data", "summary", str(tmp_path / "ds"), "--alias", "Sick=COVID-19"])
    assert result.exit_code == 0, result.output
    assert "COVID-19" in result.output and "Sick" not in result.output.split("(class_folders)")[-1]
    assert "height 5-5 px, width 7-7 px" in result.output
    assert "broken.png" in result.output and "slice-level" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["data", "scan", "/nonexistent/data"], "not found"),
        (["data", "scan", ".", "--alias", "novalue"], "KEY=VALUE"),
        (["data", "synth", "OUT", "--size", "4"], "size"),
        (["data", "lungs", "/nonexistent/x.png", "--out", "OUT"], "no readable images"),
    ],
)
def test_user_errors_exit_2_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    args = [str(tmp_path / "o") if a == "OUT" else a for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
