"""Output that survives a pipe: tables never cut a name off a terminal; --format csv|json is parseable."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from covidct.cli.main import app

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "evaluation"))
from evaluation_tables import make_predictions  # noqa: E402

from covidct.evaluation.predictions import write_predictions  # noqa: E402

runner = CliRunner()
LONG_MODEL = "tf_efficientnet_b5.ns_jft_in1k_with_a_long_name"


def test_models_table_keeps_every_name_in_a_narrow_pipe() -> None:
    from covidct.models.registry import list_models

    # CliRunner's stdout is not a terminal: what `covidct models | cat` sees, here with a 40-column hint
    result = runner.invoke(app, ["models", "--no-params"], env={"COLUMNS": "40"}, terminal_width=40)
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    for spec in list_models():
        assert spec.name in result.stdout and spec.timm_name in result.stdout


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_models_machine_formats(fmt: str) -> None:
    from covidct.models.registry import list_models

    result = runner.invoke(app, ["models", "--no-params", "--format", fmt])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout))) if fmt == "csv" else json.loads(result.stdout)
    assert [r["model"] for r in rows] == [s.name for s in list_models()]
    assert {r["timm_name"] for r in rows} == {s.timm_name for s in list_models()}
    assert "Any timm model name" not in result.stdout and "Any timm model name" in result.stderr


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    df = make_predictions(repeats=1, folds=2, model=LONG_MODEL)
    for fold, part in df.groupby("fold"):
        write_predictions(part, run / "folds" / f"r0_f{fold}" / "predictions.csv")
    return run


def test_summary_table_keeps_the_model_name(run_dir: Path) -> None:
    result = runner.invoke(app, ["metrics", str(run_dir)], env={"COLUMNS": "60"}, terminal_width=60)
    assert result.exit_code == 0, result.output
    assert LONG_MODEL in result.stdout and "COVID-19" in result.stdout and "…" not in result.stdout


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_summary_machine_formats(run_dir: Path, fmt: str) -> None:
    result = runner.invoke(app, ["metrics", str(run_dir), "--format", fmt, "--level", "slice"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    rows = list(csv.DictReader(io.StringIO(text))) if fmt == "csv" else json.loads(text)
    assert list(rows[0]) == ["model", "level", "class", "metric", "mean", "std", "ci_low", "ci_high"]
    assert {r["model"] for r in rows} == {LONG_MODEL} and {r["level"] for r in rows} == {"slice"}
    accuracy = [r for r in rows if r["class"] == "__all__" and r["metric"] == "accuracy"]
    assert len(accuracy) == 1 and 0.0 <= float(accuracy[0]["mean"]) <= 1.0
    assert {r["class"] for r in rows} >= {"COVID-19", "__all__"}
    assert "wrote" not in text and "wrote" in result.stderr  # messages go to stderr


def _checkpoint(path: Path, classes: tuple[str, ...]) -> Path:
    import torch

    from covidct.models.checkpoint import CheckpointMeta, save_checkpoint
    from covidct.models.factory import create_model
    from covidct.models.normalization import model_normalization

    torch.manual_seed(0)
    model = create_model("resnet10t", len(classes), pretrained=False).eval()
    mean, std = model_normalization(model)
    meta = CheckpointMeta(
        model_name="resnet10t", timm_name="resnet10t", classes=classes, image_size=32, mean=mean, std=std
    )
    return save_checkpoint(path, model, meta)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "phantoms"
    sizes = ["--patients-per-class", "2", "--slices-per-patient", "2", "--size", "40"]
    result = runner.invoke(app, ["data", "synth", str(out), *sizes])
    assert result.exit_code == 0, result.output
    return out


def test_a_synth_folder_is_scanned_as_its_images(synth_root: Path) -> None:
    from covidct.data.manifest import scan_dataset

    scan = scan_dataset(synth_root)
    assert set(scan.classes) == {"COVID-19", "Healthy", "Pneumonia"}  # not "images" vs "lungs" vs "masks"
    assert Path(scan.root) == synth_root / "images" and len(scan.samples) == 12
    assert any("covidct data synth" in note for note in scan.warnings)
    result = runner.invoke(app, ["data", "scan", str(synth_root)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "12 images" in result.stdout and "classes COVID-19, Healthy, Pneumonia;" in result.stdout


def test_a_folder_named_images_alone_is_still_a_class(tmp_path: Path) -> None:
    from covidct.data.manifest import synth_images_folder

    for name in ("images", "other"):
        (tmp_path / name).mkdir()
    assert synth_images_folder(tmp_path) is None  # only images/ beside masks/ or lungs/ is recognised


def test_evaluate_on_a_synth_folder_prints_json(synth_root: Path, tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path / "m.pt", ("COVID-19", "Healthy", "Pneumonia"))
    out = tmp_path / "eval"
    args = ["evaluate", str(ckpt), str(synth_root), "--out", str(out), "--format", "json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {r["level"] for r in rows} == {"slice", "patient"}
    assert {r["class"] for r in rows} == {"COVID-19", "Healthy", "Pneumonia", "__all__"}
    assert "12 slices" in result.stderr and (out / "metrics.json").is_file()


def test_every_help_is_torch_free() -> None:
    code = """
import sys
import typer
from typer.testing import CliRunner
from covidct.cli.main import app

def paths(command, prefix=()):
    out = [prefix]
    for name, sub in (getattr(command, "commands", None) or {}).items():
        out.extend(paths(sub, prefix + (name,)))
    return out

runner = CliRunner()
for path in paths(typer.main.get_command(app)):
    assert runner.invoke(app, [*path, "--help"]).exit_code == 0, path
    assert "torch" not in sys.modules, path
print(len(paths(typer.main.get_command(app))))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 15


def test_image_folder_fixture_sanity(tmp_path: Path) -> None:
    # the layout check looks at folders only: a stray file beside images/ and masks/ does not block it
    from covidct.data.manifest import synth_images_folder

    for name in ("images", "masks"):
        (tmp_path / name).mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "README.png")
    assert synth_images_folder(tmp_path) == tmp_path / "images"
