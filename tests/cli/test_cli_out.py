"""An unwritable --out is a one-line error before any work (was a traceback after the work, in 5 commands)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from covidct.cli.main import app

runner = CliRunner()


def _user_error(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert lines[0].startswith("error: --out"), result.output
    return result.output


def _commands(tmp: Path, out: str) -> dict[str, list[str]]:
    """Each command with inputs that do not exist: the --out check must come first to be what is reported."""
    model, data = str(tmp / "no-model.pt"), str(tmp / "no-data")
    return {
        "scan": ["data", "scan", data, "--out", out],
        "predict": ["predict", model, data, "--out", out],
        "explain": ["explain", model, data, "--out", out],
        "export": ["export", model, "--out", out],
        "train": ["train", data, "--model", "resnet10t", "--out", out],
        "cv": ["cv", data, "--model", "resnet10t", "--out", out],
    }


FILE_OUTPUTS = {"scan": "m.csv", "predict": "p.csv", "export": "m.onnx"}


@pytest.mark.parametrize("command", ["scan", "predict", "explain", "export", "train", "cv"])
def test_a_file_in_the_way(tmp_path: Path, command: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    out = blocker / "sub" / FILE_OUTPUTS.get(command, "run")
    text = _user_error(runner.invoke(app, _commands(tmp_path, str(out))[command]))
    assert "is a file, not a folder" in text


@pytest.mark.parametrize("command", ["scan", "predict", "explain", "export", "train"])
def test_proc_is_refused(tmp_path: Path, command: str) -> None:
    out = Path("/proc") / "covidct-out" / FILE_OUTPUTS.get(command, "run")
    text = _user_error(runner.invoke(app, _commands(tmp_path, str(out))[command]))
    assert "cannot write there" in text and not out.parent.exists()


def test_a_folder_given_for_a_file_and_a_file_for_a_folder(tmp_path: Path) -> None:
    (tmp_path / "preds.csv").mkdir()
    assert "is a folder" in _user_error(
        runner.invoke(app, _commands(tmp_path, str(tmp_path / "preds.csv"))["scan"])
    )
    (tmp_path / "run").write_text("x")
    assert "is a file" in _user_error(runner.invoke(app, _commands(tmp_path, str(tmp_path / "run"))["train"]))


def test_missing_parents_are_fine_and_nothing_is_created(tmp_path: Path) -> None:
    from covidct.cli._common import check_out

    check_out(tmp_path / "a" / "b" / "run", folder=True)
    check_out(tmp_path / "c" / "preds.csv", folder=False)
    assert list(tmp_path.iterdir()) == []  # the command creates them when it writes; no probe file left


def test_image_size_100000_is_a_config_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "train",
            str(tmp_path),
            "--model",
            "resnet10t",
            "--out",
            str(tmp_path / "run"),
            "--image-size",
            "100000",
        ],
    )
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "image_size must be between 16 and 4096 px, got 100000" in result.output
