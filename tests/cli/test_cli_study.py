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


def test_demo_help_takes_its_defaults_from_demo_config() -> None:
    from covidct.study.demo_config import DemoConfig

    cfg = DemoConfig()
    result = runner.invoke(app, ["demo", "--help"], terminal_width=240)
    assert result.exit_code == 0
    text = " ".join(result.output.replace("│", " ").split())
    for expected in (
        f"Epochs per from-scratch job (default: {cfg.epochs}; fine-tuning: {cfg.pretrained_epochs})",
        f"Input size in px (default: {cfg.image_size})",
        f"Folds (default: {cfg.folds})",
        f"(default: {','.join(cfg.models)})",
        f"(default: {','.join(cfg.pretrained_models)}; none for none)",
    ):
        assert expected in text, expected


def test_compare_training_flags_override_model_train_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import covidct.study.compare as compare_module
    from covidct.config import config_to_dict
    from covidct.study.config import StudyConfig
    from covidct.training.config import TrainConfig

    recorded = StudyConfig(
        data=str(tmp_path),
        out=str(tmp_path / "s"),
        models=("resnet10t", "EfficientNetLite0"),
        train=TrainConfig(pretrained=False, lr=2e-3),
        model_train=(("EfficientNetLite0", TrainConfig(pretrained=True, lr=1e-3)),),
    )
    path = tmp_path / "study.json"
    path.write_text(json.dumps(config_to_dict(recorded)))
    seen: list[StudyConfig] = []

    class Stop(Exception):
        pass

    def fake_compare(cfg: StudyConfig, **kw: object) -> None:
        seen.append(cfg)
        raise Stop

    monkeypatch.setattr(compare_module, "compare", fake_compare)
    args = ["compare", str(tmp_path), "--out", str(tmp_path / "s"), "--config", str(path)]
    assert isinstance(runner.invoke(app, args).exception, Stop)
    assert seen[-1].model_train == recorded.model_train  # replayed as recorded
    assert isinstance(runner.invoke(app, [*args, "--epochs", "2"]).exception, Stop)
    lite0 = seen[-1].train_for("EfficientNetLite0")
    assert (lite0.epochs, lite0.pretrained, lite0.lr) == (2, True, 1e-3)
    assert seen[-1].train_for("resnet10t").epochs == 2
