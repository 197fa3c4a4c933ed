"""`covidct metrics RUN`: recomputes from saved predictions; user errors are one line with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from evaluation_tables import make_predictions
from typer.testing import CliRunner

from covidct.cli.main import app
from covidct.evaluation.predictions import write_predictions

runner = CliRunner()


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    df = make_predictions(repeats=1, folds=2)
    for fold, part in df.groupby("fold"):
        write_predictions(part, run / "folds" / f"r0_f{fold}" / "predictions.csv")
    return run


def _one_line_error(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_metrics_recomputes_and_prints(run_dir: Path) -> None:
    result = runner.invoke(app, ["metrics", str(run_dir)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Specificity" in result.output and "COVID-19" in result.output
    assert "slice level" in result.output and "patient level" in result.output
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["n_folds"] == 2 and (run_dir / "metrics.md").is_file() and (run_dir / "roc.png").is_file()


def test_metrics_level_slice_only(run_dir: Path) -> None:
    result = runner.invoke(app, ["metrics", str(run_dir), "--level", "slice"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "slice level" in result.output and "patient level" not in result.output


def test_missing_run_folder(tmp_path: Path) -> None:
    line = _one_line_error(runner.invoke(app, ["metrics", str(tmp_path / "nope")]))
    assert line.startswith("error:") and "no such run folder" in line


def test_run_without_predictions(tmp_path: Path) -> None:
    line = _one_line_error(runner.invoke(app, ["metrics", str(tmp_path)]))
    assert "no predictions found" in line


def test_corrupt_predictions_name_file_and_row(run_dir: Path) -> None:
    path = run_dir / "folds" / "r0_f1" / "predictions.csv"
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace(",COVID-19,", ",Flu,", 1)
    assert ",Flu," in lines[3]
    path.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["metrics", str(run_dir)], terminal_width=400)
    line = _one_line_error(result)
    assert "r0_f1" in line and "row 3 (line 4)" in line and "'Flu'" in line


def test_bad_level(run_dir: Path) -> None:
    line = _one_line_error(runner.invoke(app, ["metrics", str(run_dir), "--level", "voxel"]))
    assert "--level" in line


def test_metrics_help() -> None:
    result = runner.invoke(app, ["metrics", "--help"])
    assert result.exit_code == 0 and "--level" in result.output
