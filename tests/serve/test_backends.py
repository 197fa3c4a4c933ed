"""The service on the OpenVINO backend: GET /model names runtime and precision; /predict works."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.serve.conftest import png_bytes

pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def openvino_client(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from covidct.inference.export import export_onnx
    from covidct.serve.app import create_app
    from covidct.serve.model import load_model

    onnx = export_onnx(checkpoint, tmp_path_factory.mktemp("ov") / "tiny.onnx").path
    loaded = load_model(onnx, threads=1, backend="openvino", precision="fp32")
    with TestClient(create_app(loaded.predictor, model_version=loaded.version)) as client:
        yield client


def test_model_endpoint_reports_backend_and_precision(openvino_client, loaded_model) -> None:  # type: ignore[no-untyped-def]
    info = openvino_client.get("/model").json()
    assert info["runtime"] == "openvino" and info["precision"] == "fp32" and info["explain"] is False
    assert info["name"] == "resnet10t" and info["input_size"] == 32
    response = openvino_client.post("/predict", files={"file": ("a.png", png_bytes(), "image/png")})
    assert response.status_code == 200, response.text
    assert abs(sum(response.json()["slices"][0]["probabilities"].values()) - 1) < 1e-5
    assert loaded_model.predictor.precision == "fp32"  # the torch service on CPU


def test_bad_backend_is_a_config_error(checkpoint: Path) -> None:
    from covidct.errors import ConfigError
    from covidct.serve.model import load_model

    with pytest.raises(ConfigError, match="bf16 runs with --backend openvino"):
        load_model(checkpoint, precision="bf16")
