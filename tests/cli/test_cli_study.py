"""``covidct compare``, ``report`` and ``demo`` through the CLI: options, user errors, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from covidct.cli.main import app

runner = CliRunner()
TINY = [
    "--models",
    "resnet10t",
    "--folds",
    "2",
    "--repeats",
    "1",
    "--epochs",
    "1",
    "--image-size",
    "32",
    "--batch-size",
    "8",
    "--no-pretrained",
    "--no-latency",
]


def test_compare_help_lists_training_and_cluster_options() -> None:
    result = runner.invoke(app, ["compare", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for option in (
        "--models",
        "--folds",
        "--repeats",
        "--out",
        "--epochs",
        "--batch-size",
        "--image-size",
        "--no-pretrained",
        "--weights-dir",
        "--seed",
        "--executor",
        "--ray-address",
        "--cpus-per-job",
        "--gpus-per-job",
        "--max-retries",
        "--config",
    ):
        assert option in result.output, option


@pytest.mark.parametrize(
    "args, message",
    [
        (["--executor", "dask"], "--executor must be one of"),
        (["--models", "resnet10t,NotANet"], "unknown model"),
        (["--folds", "1"], "folds must be >= 2"),
        (["--max-retries", "-1"], "--max-retries must be >= 0"),
        (["--ray-address", "auto"], "--ray-address needs --executor ray"),
    ],
)
def test_compare_user_errors(tmp_path: Path, phantoms, args: list[str], message: str) -> None:
    result = runner.invoke(
        app, ["compare", str(phantoms.images_dir), "--out", str(tmp_path / "s"), *TINY, *args]
    )
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_report_user_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "no such study folder" in result.output
    result = runner.invoke(app, ["report", str(tmp_path), "--reference", "nature"])
    assert result.exit_code == 2 and "--reference must be one of" in result.output


def test_compare_then_report(tmp_path: Path, phantoms) -> None:
    study = tmp_path / "study"
    result = runner.invoke(app, ["compare", str(phantoms.images_dir), "--out", str(study), *TINY])
    assert result.exit_code == 0, result.output
    assert "2 job(s): 2 run, 0 already done, 0 failed" in result.output
    result = runner.invoke(app, ["compare", str(phantoms.images_dir), "--out", str(study), *TINY])
    assert result.exit_code == 0 and "2 job(s): 0 run, 2 already done, 0 failed" in result.output
    # replay from the recorded config: same options, nothing to do
    result = runner.invoke(
        app, ["compare", str(phantoms.images_dir), "--out", str(study), "--config", str(study / "study.json")]
    )
    assert result.exit_code == 0 and "0 run, 2 already done" in result.output, result.output
    as_json = runner.invoke(
        app, ["compare", str(phantoms.images_dir), "--out", str(study), *TINY, "--format", "json"]
    )
    assert as_json.exit_code == 0, as_json.output
    rows = json.loads(as_json.stdout)  # stdout holds the records only; progress and notes go to stderr
    assert [r["model"] for r in rows] == ["resnet10t"] and 0.0 <= rows[0]["accuracy_mean"] <= 1.0
    assert "2 already done" in as_json.stderr
    html = tmp_path / "r.html"
    result = runner.invoke(app, ["report", str(study), "--out", str(html), "--reference", "paper"])
    assert result.exit_code == 0, result.output
    text = html.read_text(encoding="utf-8")
    assert 'data-model="resnet10t"' in text and 'id="reference"' in text and "http://" not in text
    assert "no published row for this model" in text  # resnet10t is not one of the paper's 20


def test_failed_jobs_exit_non_zero(tmp_path: Path, phantoms, monkeypatch: pytest.MonkeyPatch) -> None:
    import covidct.study.compare as compare_module

    class Failing(compare_module.StudyJobRunner):
        def __call__(self, job):  # noqa: ANN001, ANN204
            raise RuntimeError(f"disk full while running {job}")

    monkeypatch.setattr(compare_module, "StudyJobRunner", Failing)
    result = runner.invoke(
        app, ["compare", str(phantoms.images_dir), "--out", str(tmp_path / "s"), *TINY, "--max-retries", "0"]
    )
    assert result.exit_code == 1
    assert "FAILED resnet10t/r0_f0" in result.output and "disk full" in result.output
    assert "2 failed" in result.output


def test_cli_module_does_not_import_torch() -> None:
    code = "import sys, covidct.cli.study; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
