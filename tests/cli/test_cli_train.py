"""covidct train / cv through the CLI: options reach the config, user errors are one line with exit 2."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from covidct.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def disc_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 classes x 4 patients x 3 slices of 32 px (a bright disc or none)."""
    root = tmp_path_factory.mktemp("cli_discs")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:32, :32]
    for ci, cls in enumerate(("COVID-19", "Healthy")):
        for p in range(4):
            (root / cls / f"p{ci}{p}").mkdir(parents=True)
            for k in range(3):
                img = rng.normal(60, 12, (32, 32)) + 140 * (ci == 0) * (
                    ((yy - 16) ** 2 + (xx - 16) ** 2) < 20
                )
                Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
                    root / cls / f"p{ci}{p}" / f"{k}.png"
                )
    return root


TINY = ["--epochs", "1", "--batch-size", "4", "--image-size", "32", "--no-pretrained", "--device", "cpu"]


def test_train_writes_best_checkpoint_and_replayable_config(disc_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "train",
            str(disc_data),
            "--model",
            "resnet10t",
            "--out",
            str(out),
            *TINY,
            "--seed",
            "3",
            "--no-augment",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (out / "best.pt").is_file() and (out / "train_log.csv").is_file()
    config = json.loads((out / "config.json").read_text())
    assert (
        config["train"]["seed"] == 3
        and config["train"]["augment"] == "none"
        and config["train"]["augmentation"] is None
        and config["model"] == "resnet10t"
    )
    assert config["train"]["pretrained"] is False and config["train"]["lr"] == 1e-4  # default kept
    # --config replays; a flag overrides the file
    again = runner.invoke(
        app, ["train", "--config", str(out / "config.json"), "--out", str(tmp_path / "r2"), "--epochs", "2"]
    )
    assert again.exit_code == 0, again.output
    replay = json.loads((tmp_path / "r2" / "config.json").read_text())
    assert replay["train"]["epochs"] == 2 and replay["train"]["seed"] == 3


def test_cv_cli_runs_and_reports(disc_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "cv"
    result = runner.invoke(
        app,
        [
            "cv",
            str(disc_data),
            "--model",
            "resnet10t",
            "--out",
            str(out),
            "--folds",
            "2",
            "--repeats",
            "1",
            *TINY,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "2 fold(s) trained" in result.output
    assert (out / "predictions.csv").is_file() and (out / "metrics.json").is_file()
    rerun = runner.invoke(
        app,
        [
            "cv",
            str(disc_data),
            "--model",
            "resnet10t",
            "--out",
            str(out),
            "--folds",
            "2",
            "--repeats",
            "1",
            *TINY,
        ],
    )
    assert rerun.exit_code == 0 and "0 fold(s) trained, 2 already done" in rerun.output
    args = ["cv", str(disc_data), "--model", "resnet10t", "--out", str(out), "--folds", "2", "--repeats", "1"]
    as_csv = runner.invoke(app, [*args, *TINY, "--format", "csv"])
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))  # stdout holds the records only
    assert {r["model"] for r in rows} == {"resnet10t"} and {r["level"] for r in rows} == {"slice", "patient"}
    assert "2 already done" in as_csv.stderr


def test_user_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    cases = [
        ["train", str(tmp_path / "missing"), "--model", "resnet10t", "--out", str(tmp_path / "o"), *TINY],
        ["cv", str(tmp_path), "--model", "resnet10t", "--out", str(tmp_path / "o"), "--folds", "1"],
        [
            "train",
            str(tmp_path),
            "--model",
            "resnet10t",
            "--out",
            str(tmp_path / "o"),
            "--class-weighting",
            "x",
        ],
        ["cv", str(tmp_path), "--model", "no_such_model_xyz", "--out", str(tmp_path / "o"), *TINY],
    ]
    for args in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output and "error:" in result.output


def test_weights_that_do_not_fit_are_one_line_errors(disc_data: Path, tmp_path: Path) -> None:
    """Issue 11: an empty or foreign --weights file must not abort or silently train from random weights."""
    import timm
    import torch

    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save(timm.create_model("resnet14t", pretrained=False).state_dict(), tmp_path / "other.pt")
    base = [
        "train",
        str(disc_data),
        "--model",
        "resnet10t",
        "--out",
        str(tmp_path / "o"),
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--image-size",
        "32",
        "--device",
        "cpu",
    ]
    for name, reason in (("empty.pt", "weights file is empty"), ("other.pt", "weights do not fit")):
        result = runner.invoke(app, [*base, "--weights", str(tmp_path / name)])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output and reason in result.output
        assert not (tmp_path / "o" / "best.pt").exists()


def test_train_reports_weights_source_and_feature_cache(disc_data: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("COVIDCT_FEATURE_CACHE", str(tmp_path / "features"))
    args = [
        "train",
        str(disc_data),
        "--model",
        "resnet10t",
        "--out",
        str(tmp_path / "o"),
        *TINY,
        "--freeze-backbone",
        "--backbone-lr-scale",
        "0.5",
        "--head-warmup",
        "1",
        "--no-precise-bn",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "weights: none (trained from scratch" in result.output
    assert "features: 0 from the cache, 24 computed" in result.output
    saved = json.loads((tmp_path / "o" / "config.json").read_text())
    assert saved["train"]["backbone_lr_scale"] == 0.5 and saved["train"]["head_warmup"] == 1
    env = json.loads((tmp_path / "o" / "env.json").read_text())
    assert saved["train"]["recalibrate_bn"] is False and env["weights_source"]["source"] == "none"
    again = runner.invoke(app, [*args[:5], str(tmp_path / "o2"), *args[6:]])
    assert "features: 24 from the cache, 0 computed" in again.output


@pytest.mark.parametrize(
    ("command", "target"),
    [("cv", "covidct.training.cv.cross_validate"), ("compare", "covidct.study.compare.compare")],
)
def test_augment_preset_and_rotation_reach_cv_and_compare(
    command: str, target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train, cv and compare share the option names; the API call gets the preset (issue 10)."""
    seen: list = []

    class Stop(Exception):
        pass

    def capture(cfg, **_kwargs):
        seen.append(cfg)
        raise Stop

    module, name = target.rsplit(".", 1)
    monkeypatch.setattr(__import__(module, fromlist=[name]), name, capture)
    args = [command, str(tmp_path), "--out", str(tmp_path / "o"), "--augment", "light", "--rotation", "30"]
    args += ["--model", "resnet10t"] if command == "cv" else ["--models", "resnet10t"]
    result = runner.invoke(app, args)
    assert isinstance(result.exception, Stop), result.output
    assert (seen[0].train.augment, seen[0].train.rotation) == ("light", 30.0)
    bad = runner.invoke(app, [command, str(tmp_path), "--out", str(tmp_path / "o"), "--augment", "heavy"])
    assert bad.exit_code == 2 and "augment must be one of paper, light, none" in bad.output


def test_train_records_the_resolved_paper_augmentation(disc_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(disc_data), "--model", "resnet10t", "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    train = json.loads((out / "config.json").read_text())["train"]
    assert train["augment"] == "paper" and train["augmentation"] == {
        "rotation": 360.0,
        "horizontal_flip": True,
        "vertical_flip": False,
        "zoom": 0.15,
        "shift": 0.15,
        "shear": 0.15,
    }
