"""``covidct serve``: help, user errors as one line (exit 2), and the app it would run (uvicorn stubbed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from covidct.cli.main import app

runner = CliRunner()


def test_help_lists_the_options() -> None:
    result = runner.invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--max-upload-mb", "--workers-threads"):
        assert option in result.output


def test_missing_model_is_a_user_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["serve", str(tmp_path / "nope.pt")])
    assert result.exit_code == 2
    assert "error:" in result.output and "nope.pt" in result.output and "Traceback" not in result.output


def test_corrupt_model_is_a_user_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    result = runner.invoke(app, ["serve", str(bad)])
    assert result.exit_code == 2 and "bad.pt" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("args", [["--port", "70000"], ["--max-upload-mb", "0"], ["--workers-threads", "0"]])
def test_bad_options(tmp_path: Path, args: list[str]) -> None:
    result = runner.invoke(app, ["serve", str(tmp_path / "m.pt"), *args])
    assert result.exit_code == 2 and "error:" in result.output


def test_serve_runs_uvicorn_on_the_loaded_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    import uvicorn
    from fastapi.testclient import TestClient

    from covidct.models.checkpoint import CheckpointMeta, save_checkpoint
    from covidct.models.factory import create_model

    torch.manual_seed(0)
    meta = CheckpointMeta(
        model_name="resnet10t",
        timm_name="resnet10t",
        classes=("COVID-19", "Healthy"),
        image_size=32,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
    )
    ckpt = save_checkpoint(tmp_path / "m.pt", create_model("resnet10t", 2, pretrained=False), meta)
    calls: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.update(app=app, **kw))
    result = runner.invoke(app, ["serve", str(ckpt), "--port", "8123", "--max-upload-mb", "1"])
    assert result.exit_code == 0, result.output
    assert calls["host"] == "127.0.0.1" and calls["port"] == 8123
    with TestClient(calls["app"]) as client:
        info = client.get("/model").json()
        assert (
            info["classes"] == ["COVID-19", "Healthy"] and info["limits"]["max_upload_bytes"] == 1024 * 1024
        )
        too_big = client.post("/predict", files={"file": ("a.png", b"\x89PNG\r\n\x1a\n" + b"\0" * (2 << 20))})
        assert too_big.status_code == 413
