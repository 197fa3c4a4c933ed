"""Fixtures for the web service: a tiny random-weight checkpoint, its app, phantom uploads (PNG, DICOM,
ZIP)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CLASSES = ("COVID-19", "Healthy", "Pneumonia")


def phantom(size: int = 48, seed: int = 0) -> np.ndarray:
    """A chest-like slice: dark lungs in a bright body, a bright blob; uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    body = ((xx - 0.5) ** 2 / 0.2 + (yy - 0.5) ** 2 / 0.15) < 1
    lungs = (((xx - 0.32) ** 2 + (yy - 0.5) ** 2) < 0.03) | (((xx - 0.68) ** 2 + (yy - 0.5) ** 2) < 0.03)
    blob = ((xx - 0.3 - 0.05 * seed % 0.2) ** 2 + (yy - 0.45) ** 2) < 0.004
    image = 0.1 + 0.6 * body - 0.5 * lungs + 0.5 * blob + 0.03 * rng.standard_normal((size, size))
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def png_bytes(array: np.ndarray | None = None, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(phantom() if array is None else array).save(buffer, format=fmt)
    return buffer.getvalue()


def dicom_bytes(
    k: int = 0, *, size: int = 32, series_uid: str = "1.2.826.0.1.3680043.8.498.1", preamble: bool = True
) -> bytes:
    """A CT slice written by pydicom (HU = stored - 1024), position z = k mm."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.SeriesInstanceUID = "CT", "P001", series_uid
    ds.InstanceNumber = k + 1
    ds.ImagePositionPatient = [0.0, 0.0, float(k)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.Rows, ds.Columns = size, size
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    hu = phantom(size, seed=k).astype(np.int16) * 6 - 1000  # roughly -1000..500 HU
    ds.PixelData = (hu + 1024).astype(np.int16).tobytes()
    buffer = io.BytesIO()
    if preamble:
        ds.save_as(buffer, enforce_file_format=True)
    else:  # an ACR-NEMA style bare dataset: no preamble, no 'DICM', no file meta
        ds.preamble, ds.file_meta = None, FileMetaDataset()
        ds.save_as(buffer, implicit_vr=True, little_endian=True, enforce_file_format=False)
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes], *, symlinks: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if name in symlinks:
                info.external_attr = 0o120777 << 16
            zf.writestr(info, data)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """resnet10t, random weights, 32 px input, 3 classes."""
    import torch

    from covidct.models.checkpoint import CheckpointMeta, save_checkpoint
    from covidct.models.factory import create_model

    torch.manual_seed(0)
    model = create_model("resnet10t", len(CLASSES), pretrained=False)
    meta = CheckpointMeta(
        model_name="resnet10t",
        timm_name="resnet10t",
        classes=CLASSES,
        image_size=32,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        cam_layer="layer4",
    )
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", model, meta)


@pytest.fixture(scope="session")
def loaded_model(checkpoint: Path):
    from covidct.serve.model import load_model

    return load_model(checkpoint, threads=1)


@pytest.fixture()
def upload_dir(tmp_path: Path) -> Path:
    path = tmp_path / "uploads"
    path.mkdir()
    return path


@pytest.fixture()
def client(loaded_model, upload_dir: Path):
    """A TestClient on an app whose temporary upload folders live in ``upload_dir`` (checked empty after)."""
    from fastapi.testclient import TestClient

    from covidct.serve.app import create_app
    from covidct.serve.uploads import UploadLimits

    limits = UploadLimits(
        max_upload_bytes=2 * 1024 * 1024,
        max_zip_members=20,
        max_zip_total_bytes=1024 * 1024,
        max_pixels=1024 * 1024,
    )
    app = create_app(
        loaded_model.predictor,
        model_version=loaded_model.version,
        tmp_dir=upload_dir,
        limits=limits,
        max_cams=4,
    )
    with TestClient(app, raise_server_exceptions=True) as test_client:
        yield test_client
    assert list(upload_dir.iterdir()) == [], "temporary upload files were left behind"


def load_benchmark():
    """``benchmarks/serve_load.py`` as a module: its server and load helpers are exercised by the tests
    too."""
    import importlib.util
    import sys

    name = "covidct_bench_serve_load"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[2] / "benchmarks" / "serve_load.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses resolve their module through sys.modules
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture()
def live_server(loaded_model, upload_dir: Path):
    """The app under uvicorn on 127.0.0.1 (a free port picked by the OS), in a thread; yields its base URL.

    Startup is a bounded poll of /health (see ``running_server``)."""
    from covidct.serve.app import create_app

    app = create_app(
        loaded_model.predictor,
        model_version=loaded_model.version,
        tmp_dir=upload_dir,
        worker_threads=4,
        max_cams=4,
    )
    with load_benchmark().running_server(app) as url:
        yield url
    assert list(upload_dir.iterdir()) == [], "temporary upload files were left behind"
