"""OpenVINO backend, precision selection and its record, bf16 parity and the refusal of `auto` -> bf16."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("openvino")

from covidct.errors import ConfigError, CovidCTWarning  # noqa: E402
from covidct.inference import openvino_backend  # noqa: E402
from covidct.inference.load import load_predictor  # noqa: E402
from covidct.inference.onnx_backend import OnnxPredictor  # noqa: E402
from covidct.inference.openvino_backend import OpenVinoPredictor  # noqa: E402
from covidct.inference.parity import parity_metrics, run_parity  # noqa: E402
from covidct.inference.parity_record import ParityReport, load_parity_record, parity_record_path  # noqa: E402

CLASSES = ("COVID-19", "Healthy", "Pneumonia")


@pytest.fixture()
def bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend the CPU reports BF16 (the check itself is OpenVINO's; bf16 still compiles without it)."""
    monkeypatch.setattr(openvino_backend, "cpu_capabilities", lambda: ("FP32", "INT8", "BF16"))


@pytest.fixture()
def no_bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openvino_backend, "cpu_capabilities", lambda: ("FP32", "INT8"))


@pytest.fixture()
def model_copy(tiny_onnx: Path, tmp_path: Path) -> Path:
    """A private copy (parity records are written beside the model)."""
    return Path(shutil.copy(tiny_onnx, tmp_path / "model.onnx"))


def test_openvino_matches_onnxruntime_and_records_backend(
    tiny_onnx: Path, arrays: list[np.ndarray], tmp_path: Path, no_bf16_cpu: None
) -> None:
    ov = load_predictor(tiny_onnx, backend="openvino", batch_size=2)
    assert isinstance(ov, OpenVinoPredictor) and ov.precision == "fp32"  # auto without BF16
    result = ov.predict(arrays)
    reference = OnnxPredictor(tiny_onnx).predict(arrays)
    np.testing.assert_allclose(result.probabilities, reference.probabilities, atol=1e-4)
    assert set(result.slices["backend"]) == {"openvino"} and set(result.slices["precision"]) == {"fp32"}
    assert set(result.groups["backend"]) == {"openvino"} and set(reference.slices["backend"]) == {"onnx"}
    out = tmp_path / "p.json"
    result.save(out)
    saved = json.loads(out.read_text())
    assert saved["backend"] == "openvino" and saved["precision"] == "fp32"
    result.save(tmp_path / "p.csv")
    assert pd.read_csv(tmp_path / "p.patients.csv")["precision"].tolist() == ["fp32"] * len(arrays)


def test_openvino_from_a_checkpoint_and_backend_errors(tiny_checkpoint: Path, tiny_onnx: Path) -> None:
    predictor = load_predictor(tiny_checkpoint, backend="openvino", precision="fp32")
    assert predictor.backend == "openvino" and predictor.meta.classes == CLASSES
    with pytest.raises(ConfigError, match="bf16 runs with --backend openvino"):
        load_predictor(tiny_onnx, precision="bf16")
    with pytest.raises(ConfigError, match="unknown precision"):
        load_predictor(tiny_onnx, backend="openvino", precision="int4")
    with pytest.raises(ConfigError, match="CPU"):
        load_predictor(tiny_onnx, backend="openvino", device="cuda")


def test_auto_is_bf16_where_the_cpu_has_it(tiny_onnx: Path, arrays: list[np.ndarray], bf16_cpu: None) -> None:
    predictor = load_predictor(tiny_onnx, backend="openvino")
    assert predictor.precision == "bf16" and predictor.precision_note == ""
    assert str(predictor.compiled.get_property("INFERENCE_PRECISION_HINT")) in ("bf16", "<Type: 'bfloat16'>")
    probs = predictor.predict(arrays).probabilities
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)


def test_parity_metrics_known_values() -> None:
    ref = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    cand = np.array([[0.85, 0.15], [0.25, 0.75], [0.45, 0.55], [0.3, 0.7]])
    labels = np.array([0, 1, 0, 1])
    m = parity_metrics(ref, cand, labels)
    assert m["n_slices"] == 4 and m["agreement"] == pytest.approx(0.75)
    assert m["max_abs_diff"] == pytest.approx(0.15)
    assert m["auc_fp32"] == pytest.approx(1.0) and m["auc_candidate"] == pytest.approx(1.0)
    assert parity_metrics(ref, cand)["auc_fp32"] is None


def _disagree_in_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model made to disagree: in bf16 its logits come out with the classes rotated."""
    real = OpenVinoPredictor.logits

    def logits(self: OpenVinoPredictor, pixels: np.ndarray) -> np.ndarray:
        out = real(self, pixels)
        return np.roll(out, 1, axis=1) if self.precision == "bf16" else out

    monkeypatch.setattr(OpenVinoPredictor, "logits", logits)


def _labelled_csv(png_patients: Path, tmp_path: Path) -> Path:
    paths = sorted(str(p) for p in png_patients.rglob("*.png"))
    labels = [CLASSES[i % 3] for i in range(len(paths))]
    out = tmp_path / "heldout.csv"
    pd.DataFrame({"path": paths, "label": labels}).to_csv(out, index=False)
    return out


def test_auto_refuses_bf16_for_a_model_that_disagrees(
    model_copy: Path, png_patients: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bf16_cpu: None
) -> None:
    _disagree_in_bf16(monkeypatch)
    report = run_parity(model_copy, _labelled_csv(png_patients, tmp_path), precision="bf16", threads=1)
    assert report.n_slices == 5 and report.agreement < 0.995 and not report.passed
    assert report.max_abs_diff > 0.01 and report.auc_fp32 is not None and report.auc_diff is not None
    assert parity_record_path(model_copy).is_file()
    assert load_parity_record(model_copy) == report
    with pytest.warns(CovidCTWarning, match="bf16 refused"):
        predictor = load_predictor(model_copy, backend="openvino")
    assert predictor.precision == "fp32" and "agreement" in predictor.precision_note
    assert set(predictor.predict(png_patients).slices["precision"]) == {"fp32"}
    assert (
        load_predictor(model_copy, backend="openvino", precision="bf16").precision == "bf16"
    )  # explicit: kept


def test_auto_keeps_bf16_when_parity_passes_and_ignores_stale_records(
    model_copy: Path, png_patients: Path, bf16_cpu: None
) -> None:
    report = run_parity(model_copy, png_patients, precision="bf16", threads=1)  # unlabelled folder: no AUC
    assert report.passed and report.agreement == 1.0 and report.auc_fp32 is None
    with warnings.catch_warnings():
        warnings.simplefilter("error", CovidCTWarning)
        assert load_predictor(model_copy, backend="openvino").precision == "bf16"
    failing = ParityReport(**{**report.__dict__, "agreement": 0.5})
    assert load_predictor(model_copy, backend="openvino", parity=failing).precision == "fp32"
    record = json.loads(parity_record_path(model_copy).read_text())
    parity_record_path(model_copy).write_text(
        json.dumps({**record, "agreement": 0.5, "model_sha256": "0" * 64})
    )
    with pytest.warns(CovidCTWarning, match="another version"):
        assert load_parity_record(model_copy) is None


def test_bench_parity_cli(model_copy: Path, png_patients: Path, tmp_path: Path, no_bf16_cpu: None) -> None:
    from typer.testing import CliRunner

    from covidct.cli.main import app

    result = CliRunner().invoke(
        app,
        [
            "bench",
            "--parity",
            str(_labelled_csv(png_patients, tmp_path)),
            "--model",
            str(model_copy),
            "--threads",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "top-1 agreement: 100.00%" in result.output and "ROC AUC: fp32" in result.output
    assert "allowed" in result.output and parity_record_path(model_copy).is_file()
    bad = CliRunner().invoke(app, ["bench", "--parity", str(png_patients)])
    assert bad.exit_code == 2 and "go together" in bad.output
