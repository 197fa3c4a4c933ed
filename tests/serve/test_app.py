"""Every route of the service, on a tiny random-weight resnet10t checkpoint."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from tests.serve.conftest import CLASSES, dicom_bytes, png_bytes, zip_bytes


def _png_of(b64: str) -> Image.Image:
    raw = base64.b64decode(b64)
    assert raw.startswith(b"\x89PNG")
    return Image.open(io.BytesIO(raw))


def test_health(client) -> None:
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["model"] == "resnet10t" and len(body["version"]) == 12


def test_model_info(client) -> None:
    info = client.get("/model").json()
    assert info["classes"] == list(CLASSES)
    assert info["input_size"] == 32 and info["backbone"] == "resnet10t" and info["runtime"] == "torch"
    assert info["window"]["width"] == 1500 and info["window"]["level"] == -600
    assert info["explain"] is True and info["cam_layer"] == "layer1"  # layer4 is 1x1 at 32 px, layer1 8x8
    assert info["limits"]["max_upload_bytes"] == 2 * 1024 * 1024


def test_openapi_and_docs(client) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/predict", "/explain", "/health", "/model"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert "file" in spec["components"]["schemas"]["Body_predict_predict_post"]["properties"]
    assert client.get("/docs").status_code == 200


def test_index_page_and_assets(client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="file-input"' in page.text and "/static/app.js" in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    assert "http://" not in page.text and "https://" not in page.text  # no CDN: the page works offline


def test_predict_png(client) -> None:
    res = client.post("/predict", files={"file": ("slice.png", png_bytes(), "image/png")})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["kind"] == "image" and body["series"] is None and body["filename"] == "slice.png"
    assert set(body["probabilities"]) == set(CLASSES)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert body["predicted"] == max(body["probabilities"], key=body["probabilities"].get)
    assert body["model"] == {
        "name": "resnet10t",
        "backbone": "resnet10t",
        "version": body["model"]["version"],
    }
    assert len(body["slices"]) == 1 and body["slices"][0]["source"] == "slice.png"
    assert body["slices"][0]["thumbnail_png"] is None
    assert body["timing"]["total_ms"] >= body["timing"]["inference_ms"] >= 0


def test_predict_matches_the_predictor(client, loaded_model) -> None:
    """The service adds no inference of its own: same numbers as Predictor.predict on the same pixels."""
    image = np.asarray(Image.open(io.BytesIO(png_bytes())), dtype=np.float32) / 255.0
    expected = loaded_model.predictor.predict([image]).probabilities[0]
    body = client.post("/predict", files={"file": ("a.png", png_bytes(), "image/png")}).json()
    got = np.array([body["probabilities"][c] for c in CLASSES])
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_predict_jpeg_and_tiff(client, fmt: str) -> None:
    res = client.post("/predict", files={"file": ("scan", png_bytes(fmt=fmt), "application/octet-stream")})
    assert res.status_code == 200, res.text
    assert res.json()["kind"] == "image"


def test_predict_dicom_without_suffix(client) -> None:
    """Content decides, not the name: a DICOM called 'IM0001' (and one called .png) still reads as DICOM."""
    for name in ("IM0001", "wrong.png"):
        res = client.post("/predict", files={"file": (name, dicom_bytes(), "application/dicom")})
        assert res.status_code == 200, res.text
        assert res.json()["slices"][0]["height"] == 32


def test_predict_dicom_series_zip(client) -> None:
    members = {f"series/IM{k:03d}": dicom_bytes(k) for k in (3, 0, 2, 1)}
    members["series/readme.txt"] = b"not dicom"
    files = {"file": ("ct.zip", zip_bytes(members), "application/zip")}
    res = client.post("/predict?thumbnails=true", files=files)
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["kind"] == "series" and body["series"]["n_slices"] == 4
    # ordered by ImagePositionPatient, not by name in the archive; names are the client's, never server paths
    assert [s["source"] for s in body["slices"]] == [f"ct.zip:series/IM{k:03d}" for k in range(4)]
    assert body["skipped"] == ["series/readme.txt"]
    slice_probs = np.array([[s["probabilities"][c] for c in CLASSES] for s in body["slices"]])
    np.testing.assert_allclose(
        [body["series"]["probabilities"][c] for c in CLASSES], slice_probs.mean(axis=0), atol=1e-5
    )
    assert body["probabilities"] == body["series"]["probabilities"]
    assert all(_png_of(s["thumbnail_png"]).size == (32, 32) for s in body["slices"])


def test_explain_png(client) -> None:
    res = client.post("/explain", files={"file": ("slice.png", png_bytes(), "image/png")})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["method"] == "gradcam" and len(body["cams"]) == 1
    cam = body["cams"][0]
    assert cam["index"] == 0 and cam["target"] == body["predicted"]
    assert _png_of(cam["image_png"]).size == (48, 48)
    heat = _png_of(cam["heatmap_png"])
    assert heat.size == (48, 48) and heat.mode == "RGBA"
    assert _png_of(cam["overlay_png"]).mode == "RGB"
    assert body["timing"]["explain_ms"] is not None


def test_explain_target_class(client) -> None:
    res = client.post("/explain?target=Pneumonia", files={"file": ("s.png", png_bytes(), "image/png")})
    assert res.status_code == 200 and res.json()["cams"][0]["target"] == "Pneumonia"
    bad = client.post("/explain?target=Flu", files={"file": ("s.png", png_bytes(), "image/png")})
    assert bad.status_code == 400 and "Flu" in bad.json()["error"]


def test_explain_series_is_bounded_to_the_most_suspicious(client) -> None:
    members = {f"{k}.dcm": dicom_bytes(k) for k in range(6)}
    files = {"file": ("ct.zip", zip_bytes(members), "application/zip")}
    res = client.post("/explain?max_slices=2", files=files)
    assert res.status_code == 200, res.text
    body = res.json()
    assert len(body["cams"]) == 2
    healthy = [1 - s["probabilities"]["Healthy"] for s in body["slices"]]
    assert [c["index"] for c in body["cams"]] == list(np.argsort(-np.array(healthy), kind="stable")[:2])
    too_many = client.post("/explain?max_slices=99", files=files)
    assert too_many.status_code == 400 and "max_slices" in too_many.json()["error"]


def test_concurrent_requests_share_one_model(client) -> None:
    """Threads hitting /predict and /explain together get the same answers as one at a time."""
    from concurrent.futures import ThreadPoolExecutor

    data = png_bytes()
    first = client.post("/predict", files={"file": ("a.png", data, "image/png")}).json()["probabilities"]

    def call(i: int) -> dict:
        route = "/explain" if i % 2 else "/predict"
        res = client.post(route, files={"file": ("a.png", data, "image/png")})
        assert res.status_code == 200, res.text
        return res.json()["probabilities"]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(call, range(8)))
    for probs in results:
        assert probs == pytest.approx(first, abs=1e-5)


@pytest.fixture(scope="module")
def onnx_client(checkpoint, tmp_path_factory):
    from fastapi.testclient import TestClient

    from covidct.inference.export import export_onnx
    from covidct.serve.app import create_app
    from covidct.serve.model import load_model

    path = export_onnx(checkpoint, tmp_path_factory.mktemp("onnx") / "tiny.onnx").path
    loaded = load_model(path, threads=1)
    assert (
        loaded.predictor.meta.cam_layer == "" and loaded.predictor.meta.timm_name == "resnet10t"
    )  # from the ONNX file
    with TestClient(create_app(loaded.predictor, model_version=loaded.version)) as test_client:
        yield test_client


def test_onnx_model_predicts_but_does_not_explain(onnx_client, client) -> None:
    info = onnx_client.get("/model").json()
    assert info["runtime"] == "onnx" and info["explain"] is False and info["backbone"] == "resnet10t"
    files = {"file": ("s.png", png_bytes(), "image/png")}
    onnx_probs = onnx_client.post("/predict", files=files).json()["probabilities"]
    torch_probs = client.post("/predict", files=files).json()["probabilities"]
    assert onnx_probs == pytest.approx(torch_probs, abs=1e-4)
    res = onnx_client.post("/explain", files=files)
    assert res.status_code == 409 and "torch checkpoint" in res.json()["error"]


@pytest.mark.real_data
def test_real_png_and_jpeg_lossless_dicom_series(client, shared_data) -> None:
    png = shared_data / "sarscov2-ct" / "COVID" / "Covid (1).png"
    res = client.post("/explain", files={"file": (png.name, png.read_bytes(), "image/png")})
    assert res.status_code == 200, res.text
    assert res.json()["cams"][0]["target"] in CLASSES
    files = sorted((shared_data / "covid-ct-md" / "COVID-19" / "P001").glob("*.dcm"))[:4]
    data = zip_bytes({f"P001/{f.name}": f.read_bytes() for f in files})
    res = client.post("/predict", files={"file": ("P001.zip", data, "application/zip")})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["kind"] == "series" and body["series"]["n_slices"] == 4
    assert {s["source"] for s in body["slices"]} == {f"P001.zip:P001/{f.name}" for f in files}
