"""The hostile-input corpus (issue 11): every file is made here at run time. Each must give, through the
CLI, a clear one-line error (exit 2, no traceback, no class printed, no predictions written) and, through the
service, a 4xx JSON error with no class.

Bounded memory/CPU cases (bombs, ZIP streaming, time budgets) live in the service's own tests.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hostile_files import (
    flip_onnx_weights,
    flip_weight_bytes,
    float_tiff,
    malicious_checkpoint,
    nan_checkpoint,
    nifti,
    truncated_dicom,
    write_dicom,
)
from typer.testing import CliRunner

from covidct.cli.main import app as cli

CLASSES = ("COVID-19", "Healthy", "Pneumonia")
runner = CliRunner()


def _series(folder: Path, tag: str) -> Path:
    folder.mkdir()
    for k in range(3):
        write_dicom(folder / f"{k}.dcm", z=float(k), raw={tag: "abc"} if k == 1 else None)
    return folder


def _float_dicom(path: Path) -> Path:
    pixels = np.full((32, 32), -700.0, dtype=np.float32)
    pixels[10, 10] = np.nan
    return write_dicom(path, float_pixels=pixels)


#: name -> (make the input under a folder, words the error must contain)
INPUTS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "float TIFF with one NaN": (lambda d: float_tiff(d / "nan.tif"), "non-finite pixel values"),
    "NIfTI with Inf": (lambda d: nifti(d / "inf.nii.gz"), "non-finite voxel values"),
    "DICOM FloatPixelData with NaN": (lambda d: _float_dicom(d / "float.dcm"), "non-finite pixel values"),
    "RescaleIntercept nan": (
        lambda d: write_dicom(d / "icpt.dcm", raw={"RescaleIntercept": "nan"}),
        "RescaleIntercept is not a finite number",
    ),
    "RescaleSlope 1e309": (
        lambda d: write_dicom(d / "slope.dcm", raw={"RescaleSlope": "1e309"}),
        "RescaleSlope is not a finite number",
    ),
    "RescaleSlope text": (
        lambda d: write_dicom(d / "slope.dcm", raw={"RescaleSlope": "abc"}),
        "RescaleSlope is not a number",
    ),
    "empty ModalityLUTSequence": (
        lambda d: write_dicom(d / "lut.dcm", modality_lut=True),
        "ModalityLUTSequence",
    ),
    "truncated DICOM": (lambda d: truncated_dicom(d / "cut.dcm"), "truncated DICOM file"),
    "series with text ImagePositionPatient": (
        lambda d: _series(d / "ipp", "ImagePositionPatient"),
        "ImagePositionPatient is not a number",
    ),
    "series with text SliceLocation": (
        lambda d: _series(d / "loc", "SliceLocation"),
        "SliceLocation is not a number",
    ),
}


def _checkpoint(path: Path) -> Path:
    import torch

    from covidct.models.checkpoint import CheckpointMeta, save_checkpoint
    from covidct.models.factory import create_model

    torch.manual_seed(0)
    model = create_model("resnet10t", len(CLASSES), pretrained=False).eval()
    meta = CheckpointMeta(
        model_name="resnet10t",
        timm_name="resnet10t",
        classes=CLASSES,
        image_size=32,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        cam_layer="layer4",
    )
    return save_checkpoint(path, model, meta)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from covidct.inference.export import export_onnx

    d = tmp_path_factory.mktemp("models")
    good = _checkpoint(d / "good.pt")
    onnx = export_onnx(good, d / "good.onnx").path
    return {
        "good": good,
        "code-carrying pickle": malicious_checkpoint(d / "evil.pt"),
        "checkpoint with 200 flipped bytes": flip_weight_bytes(good, d / "flipped.pt"),
        "NaN weights, old checkpoint without a hash": nan_checkpoint(d / "nan.pt"),
        "ONNX with flipped weight bytes": flip_onnx_weights(onnx, d / "flipped.onnx"),
    }


MODELS = {
    "code-carrying pickle": "refused: not a safe torch checkpoint",
    "checkpoint with 200 flipped bytes": "checkpoint corrupted: weights hash mismatch",
    "NaN weights, old checkpoint without a hash": "non-finite probabilities",
    "ONNX with flipped weight bytes": "weights hash mismatch",
}


@pytest.fixture()
def good_png(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40), dtype=np.uint8)).save(path)
    return path


def _one_line_error(result, *words: str) -> str:  # type: ignore[no-untyped-def]
    out = result.output
    assert result.exit_code == 2, out
    assert "Traceback" not in out and not any(c in out for c in CLASSES), out  # no class printed
    assert [ln.startswith("error: ") for ln in out.splitlines()].count(True) == 1, out
    for word in words:
        assert word in " ".join(out.split()), out  # rich may wrap a long line
    return out


# ----------------------------------------------------------------------------------------------- CLI
@pytest.mark.parametrize("case", list(INPUTS))
def test_cli_predict_refuses_hostile_input(case: str, models: dict[str, Path], tmp_path: Path) -> None:
    make, words = INPUTS[case]
    target = make(tmp_path)
    preds = tmp_path / "preds.csv"
    result = runner.invoke(cli, ["predict", str(models["good"]), str(target), "--out", str(preds)])
    _one_line_error(result, words)
    assert not preds.exists()


@pytest.mark.parametrize("case", list(MODELS))
def test_cli_predict_refuses_hostile_model(
    case: str, models: dict[str, Path], good_png: Path, tmp_path: Path
) -> None:
    preds = tmp_path / "preds.csv"
    result = runner.invoke(cli, ["predict", str(models[case]), str(good_png), "--out", str(preds)])
    _one_line_error(result, MODELS[case])
    assert not preds.exists()


@pytest.mark.parametrize("case", [c for c in MODELS if c != "NaN weights, old checkpoint without a hash"])
def test_cli_serve_refuses_a_hostile_model_before_listening(
    case: str, models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    monkeypatch.setattr(
        uvicorn, "run", lambda *a, **k: pytest.fail("the service started with a hostile model")
    )
    _one_line_error(runner.invoke(cli, ["serve", str(models[case]), "--port", "0"]), MODELS[case])


def test_cli_data_scan_reports_each_hostile_file_and_keeps_going(tmp_path: Path) -> None:
    from PIL import Image

    data = tmp_path / "data"
    for cls in ("COVID-19", "Healthy"):
        (data / cls).mkdir(parents=True)
        Image.fromarray(np.full((32, 32), 80, dtype=np.uint8)).save(data / cls / "ok.png")
    makers = [m for name, (m, _) in INPUTS.items() if not name.startswith("series")]
    for i, make in enumerate(makers):
        folder = data / "Healthy" / f"p{i}"
        folder.mkdir()
        make(folder)
    manifest = tmp_path / "manifest.csv"
    result = runner.invoke(cli, ["data", "scan", str(data), "--out", str(manifest)])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert f"{len(makers)} skipped" in result.output and manifest.is_file()


# ----------------------------------------------------------------------------------------------- service
def _zip_folder(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, f.name)
    return buffer.getvalue()


def _client(model: Path, upload_dir: Path):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from covidct.serve.app import create_app
    from covidct.serve.model import load_model

    loaded = load_model(model, threads=1)
    app = create_app(loaded.predictor, model_version=loaded.version, tmp_dir=upload_dir)
    return TestClient(app, raise_server_exceptions=True)


def _no_class_4xx(res) -> str:  # type: ignore[no-untyped-def]
    assert 400 <= res.status_code < 500, (res.status_code, res.text)
    body = res.json()
    assert set(body) == {"error"} and body["error"], body
    assert not any(c in body["error"] for c in CLASSES)
    return body["error"]


@pytest.mark.parametrize("route", ["/predict", "/explain"])
def test_service_answers_4xx_without_a_class(route: str, models: dict[str, Path], tmp_path: Path) -> None:
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    with _client(models["good"], uploads) as client:
        for case, (make, words) in INPUTS.items():
            folder = tmp_path / case.replace(" ", "_")
            folder.mkdir()
            target = make(folder)
            data = _zip_folder(target) if target.is_dir() else target.read_bytes()
            res = client.post(route, files={"file": (target.name, data, "application/octet-stream")})
            error = _no_class_4xx(res)
            if case != "NIfTI with Inf":  # not an upload format: refused by content (415) before decoding
                assert words in error, (case, error)
    assert list(uploads.iterdir()) == []


def test_service_with_a_nan_model_answers_422(
    models: dict[str, Path], good_png: Path, tmp_path: Path
) -> None:
    with _client(models["NaN weights, old checkpoint without a hash"], tmp_path) as client:
        res = client.post("/predict", files={"file": ("good.png", good_png.read_bytes(), "image/png")})
    assert res.status_code == 422
    assert "non-finite probabilities" in _no_class_4xx(res)


def test_cli_explain_refuses_a_nan_model(models: dict[str, Path], good_png: Path, tmp_path: Path) -> None:
    out = tmp_path / "cams"
    result = runner.invoke(
        cli,
        [
            "explain",
            str(models["NaN weights, old checkpoint without a hash"]),
            str(good_png),
            "--out",
            str(out),
        ],
    )
    _one_line_error(result, "non-finite probabilities")
    assert not list(out.glob("*.png"))
