"""Hostile input files, written at test time (never committed): non-finite pixels, malformed DICOM tags,
truncated files, unsafe or corrupted checkpoints. Shared by the reader, predictor and corpus tests."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

#: 16-character DS placeholders, replaced byte-for-byte after pydicom wrote a valid file (pydicom refuses to
#: write "abc" into a DS element, which is exactly what a hostile file holds).
_PLACEHOLDERS = {
    "RescaleSlope": "1.11111111111111",
    "RescaleIntercept": "-1024.0000000001",
    "ImagePositionPatient": "7.77777777777777",
    "SliceLocation": "6.66666666666666",
}


def write_dicom(
    path: Path,
    *,
    size: int = 32,
    z: float = 0.0,
    raw: dict[str, str] | None = None,
    float_pixels: np.ndarray | None = None,
    modality_lut: bool = False,
    pixels: bool = True,
) -> Path:
    """A CT slice (HU = stored - 1024, a body-like pattern); ``raw`` puts arbitrary text into numeric tags
    (``{"RescaleSlope": "abc"}``; for ImagePositionPatient it replaces the z value)."""
    from ct_dicom import ct_dataset
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    raw = raw or {}
    ds = ct_dataset(
        None,  # pixel tags below: float pixels, or text placeholders in the rescale tags
        z=_PLACEHOLDERS["ImagePositionPatient"] if "ImagePositionPatient" in raw else f"{z:.1f}",
        position=("-10.0", "-10.0"),
        location=_PLACEHOLDERS["SliceLocation"] if "SliceLocation" in raw else f"{z:.1f}",
        instance=int(z) + 1,
        slope=None,
        series_uid="1.2.826.0.1.3680043.8.498.99",
        patient_id="HOSTILE-1",
    )
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    if float_pixels is not None:
        ds.BitsAllocated = 32
        ds.FloatPixelData = np.asarray(float_pixels, dtype=np.float32).tobytes()
    else:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope = _PLACEHOLDERS["RescaleSlope"] if "RescaleSlope" in raw else "1"
        ds.RescaleIntercept = _PLACEHOLDERS["RescaleIntercept"] if "RescaleIntercept" in raw else "-1024"
        yy, xx = np.mgrid[:size, :size] / size
        body = ((xx - 0.5) ** 2 + (yy - 0.5) ** 2) < 0.2
        if pixels:
            ds.PixelData = (np.where(body, 1024 - 700, 24)).astype(np.uint16).tobytes()
    if modality_lut:
        ds.ModalityLUTSequence = Sequence([Dataset()])  # an item without LUTDescriptor / LUTData
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    for key, text in raw.items():
        old = _PLACEHOLDERS[key].encode()
        assert data.count(old) == 1 and len(text) <= len(old)
        data = data.replace(old, text.encode().ljust(len(old)))
    path.write_bytes(data)
    return path


def float_tiff(path: Path, bad: float = np.nan) -> Path:
    import tifffile

    image = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    image[5, 7] = bad
    tifffile.imwrite(path, image)
    return path


def nifti(path: Path, bad: float = np.inf) -> Path:
    import nibabel as nib

    volume = np.full((16, 16, 3), -500.0, dtype=np.float32)
    volume[4, 4, 1] = bad
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(path))
    return path


def truncated_dicom(path: Path) -> Path:
    """A CT slice cut before its pixel data."""
    write_dicom(path)
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"\xe0\x7f\x10\x00")])  # up to the (7FE0,0010) PixelData tag
    return path


class _Payload:
    """Pickles into a call of ``os.system``: what a weights-only load must refuse."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        import os

        return (os.system, ("echo pwned > /dev/null",))


def malicious_checkpoint(path: Path) -> Path:
    import torch

    torch.save({"format": "covidct-checkpoint", "state_dict": _Payload()}, path)
    return path


def pickle_file(path: Path) -> Path:
    path.write_bytes(pickle.dumps(_Payload(), protocol=2))
    return path


def flip_weight_bytes(checkpoint: Path, out: Path, n: int = 200, seed: int = 0) -> Path:
    """A copy of ``checkpoint`` with ``n`` random bytes flipped inside its largest tensor's storage (it still
    loads: the zip directory and the pickle are intact)."""
    import zipfile

    data = bytearray(checkpoint.read_bytes())
    with zipfile.ZipFile(checkpoint) as zf:
        info = max((i for i in zf.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    rng = np.random.default_rng(seed)
    for offset in rng.choice(info.file_size, size=min(n, info.file_size), replace=False):
        data[start + int(offset)] ^= 0xFF
    out.write_bytes(bytes(data))
    return out


def nan_checkpoint(
    path: Path, classes: tuple[str, ...] = ("COVID-19", "Healthy", "Pneumonia"), *, with_hash: bool = False
) -> Path:
    """A resnet10t checkpoint whose head weights are NaN (an old checkpoint, no weights hash, by default)."""
    import torch

    from covidct.models.checkpoint import CheckpointMeta, save_checkpoint
    from covidct.models.factory import create_model

    torch.manual_seed(0)
    model = create_model("resnet10t", len(classes), pretrained=False).eval()
    with torch.no_grad():
        model.get_classifier().weight.fill_(float("nan"))
    meta = CheckpointMeta(
        model_name="resnet10t",
        timm_name="resnet10t",
        classes=classes,
        image_size=32,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        cam_layer="layer4",
    )
    save_checkpoint(path, model, meta)
    if not with_hash:
        payload = torch.load(path, weights_only=True)
        payload.pop("weights_sha256", None)
        torch.save(payload, path)
    return path


def flip_onnx_weights(model: Path, out: Path, n: int = 200, seed: int = 0) -> Path:
    """A copy of an ONNX file with ``n`` bytes flipped inside its largest initializer (it still parses)."""
    import onnx

    proto = onnx.load(str(model))
    raw = max((t.raw_data for t in proto.graph.initializer), key=len)
    data = bytearray(model.read_bytes())
    start = bytes(data).index(raw)
    rng = np.random.default_rng(seed)
    for offset in rng.choice(len(raw), size=min(n, len(raw)), replace=False):
        data[start + int(offset)] ^= 0xFF
    out.write_bytes(bytes(data))
    return out
