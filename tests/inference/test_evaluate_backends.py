"""covidct evaluate --backend/--precision (issue 15): the backend that ran is recorded in the predictions
table, and slices are decoded by predict's ordered decoding pool."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from covidct.errors import ConfigError
from covidct.evaluation.predictions import read_predictions
from covidct.inference import evaluate as evaluate_mod
from covidct.inference.evaluate import EvaluateConfig, evaluate
from tests.inference.conftest import CLASSES

runner = CliRunner()


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Class folders with three 8-bit PNG slices each, plus one unreadable file."""
    from PIL import Image

    root = tmp_path_factory.mktemp("labelled")
    rng = np.random.default_rng(0)
    for c in CLASSES:
        (root / c).mkdir()
        for k in range(3):
            Image.fromarray(rng.integers(0, 256, (40, 44), dtype=np.uint8)).save(root / c / f"{k}.png")
    (root / CLASSES[0] / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


def _run(checkpoint: Path, data: Path, out: Path, **options: str) -> evaluate_mod.EvaluateResult:
    return evaluate(EvaluateConfig(model=str(checkpoint), data=str(data), out=str(out), **options))


def test_backend_and_precision_are_recorded(tiny_checkpoint: Path, labelled: Path, tmp_path: Path) -> None:
    torch_run = _run(tiny_checkpoint, labelled, tmp_path / "torch")
    onnx_run = _run(tiny_checkpoint, labelled, tmp_path / "onnx", backend="onnx", precision="fp32")
    a, b = read_predictions(torch_run.predictions), read_predictions(onnx_run.predictions)
    assert (torch_run.backend, torch_run.precision) == ("torch", "fp32")
    assert set(a["backend"]) == {"torch"} and set(a["precision"]) == {"fp32"}
    assert set(b["backend"]) == {"onnx"} and set(b["precision"]) == {"fp32"} and len(b) == 9
    np.testing.assert_allclose(a["prob_COVID-19"], b["prob_COVID-19"], atol=1e-4)
    config = json.loads((tmp_path / "onnx" / "config.json").read_text())
    assert config["backend"] == "onnx" and config["ran_with"] == {"backend": "onnx", "precision": "fp32"}


def test_openvino_backend(tiny_checkpoint: Path, labelled: Path, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    result = _run(tiny_checkpoint, labelled, tmp_path / "ov", backend="openvino", precision="fp32")
    table = read_predictions(result.predictions)
    assert set(table["backend"]) == {"openvino"} and set(table["precision"]) == {"fp32"}


def test_impossible_combinations_are_config_errors(tiny_checkpoint: Path, labelled: Path) -> None:
    with pytest.raises(ConfigError, match="bf16 runs with --backend openvino"):
        EvaluateConfig(model=str(tiny_checkpoint), data=str(labelled), out="x", precision="bf16")
    with pytest.raises(ConfigError, match="unknown backend"):
        EvaluateConfig(model=str(tiny_checkpoint), data=str(labelled), out="x", backend="tensorrt")


def test_slices_are_decoded_by_the_ordered_pool(
    tiny_checkpoint: Path, labelled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    real = evaluate_mod.load_slice

    def load_slice(path: str, **kwargs: str) -> np.ndarray:
        threads.append(threading.current_thread().name)
        return real(path, **kwargs)

    monkeypatch.setattr(evaluate_mod, "load_slice", load_slice)
    result = _run(tiny_checkpoint, labelled, tmp_path / "pool")
    assert len(threads) == 9 and all(name.startswith("covidct-decode") for name in threads), threads
    table = read_predictions(result.predictions)
    manifest = pd.read_csv(tmp_path / "pool" / "manifest.csv")
    readable = manifest.loc[manifest["readable"].astype(bool), "path"].tolist()
    assert table["path"].tolist() == readable  # the pool keeps the scan's order
    assert [Path(p).name for p, _ in result.skipped] == ["broken.png"]


def test_cli_evaluate_backend_option(tiny_checkpoint: Path, labelled: Path, tmp_path: Path) -> None:
    from covidct.cli.main import app

    out = tmp_path / "cli"
    args = ["evaluate", str(tiny_checkpoint), str(labelled), "--out", str(out)]
    result = runner.invoke(app, [*args, "--backend", "onnx", "--precision", "fp32"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "(onnx fp32): 9 slices" in result.output
    assert set(read_predictions(out / "predictions.csv")["backend"]) == {"onnx"}
    refused = runner.invoke(app, [*args, "--precision", "bf16"])
    assert refused.exit_code == 2 and "bf16 runs with --backend openvino" in refused.output
    assert "Traceback" not in refused.output
