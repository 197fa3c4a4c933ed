"""Upload staging without HTTP: sniffing by content, cleanup on every path, garbage behind valid magic
bytes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from covidct.serve.uploads import UploadError, UploadLimits, sniff_kind, staged_upload
from tests.serve.conftest import dicom_bytes, png_bytes, zip_bytes

LIMITS = UploadLimits(max_upload_bytes=1 << 20, max_zip_members=10, max_zip_total_bytes=1 << 20)


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (png_bytes()[:16], "png"),
        (png_bytes(fmt="JPEG")[:16], "jpeg"),
        (png_bytes(fmt="TIFF")[:16], "tiff"),
        (dicom_bytes()[:132], "dicom"),
        (zip_bytes({"a": b"x"})[:16], "zip"),
        (b"GIF89a", None),
        (b"", None),
        (b"\0" * 128 + b"DICX", None),
    ],
)
def test_sniff_kind(head: bytes, kind: str | None) -> None:
    assert sniff_kind(head) == kind


def test_staged_upload_is_removed_after_success_and_after_errors(tmp_path: Path) -> None:
    with staged_upload(io.BytesIO(png_bytes()), "a.png", LIMITS, tmp_root=tmp_path) as staged:
        assert staged.kind == "png" and staged.path.is_file() and staged.path.parent.parent == tmp_path
    assert list(tmp_path.iterdir()) == []
    with (
        pytest.raises(RuntimeError),
        staged_upload(io.BytesIO(png_bytes()), "a.png", LIMITS, tmp_root=tmp_path),
    ):
        raise RuntimeError("the model crashed")  # a bug downstream still cleans up
    with pytest.raises(UploadError):
        with staged_upload(io.BytesIO(b"x" * (2 << 20)), "big.png", LIMITS, tmp_root=tmp_path):
            pass
    assert list(tmp_path.iterdir()) == []


def test_zip_members_get_safe_names_and_keep_theirs_for_display(tmp_path: Path) -> None:
    data = zip_bytes({"deep/dir/IM1": dicom_bytes(1), "IM0.dcm": dicom_bytes(0), "notes.txt": b"hi"})
    with staged_upload(io.BytesIO(data), "../../ct.zip", LIMITS, tmp_root=tmp_path) as staged:
        assert staged.filename == "ct.zip"  # a client path never reaches the disk or the answer
        assert sorted(p.name for p in staged.path.iterdir()) == ["00000.dcm", "00001.dcm"]
        assert staged.skipped == ["notes.txt"]
        assert staged.display(f"{staged.path / '00000.dcm'}: bad") == "ct.zip:deep/dir/IM1: bad"


@pytest.mark.parametrize(
    "magic",
    [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"II*\x00", b"MM\x00*", b"\0" * 128 + b"DICM", b"PK\x03\x04"],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_garbage_behind_valid_magic_is_a_4xx(client, magic: bytes, seed: int) -> None:
    """Never a 500 for user input: random bytes after every supported signature."""
    junk = np.random.default_rng(seed).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    res = client.post("/predict", files={"file": ("x", magic + junk, "application/octet-stream")})
    assert 400 <= res.status_code < 500, res.text
    assert res.json()["error"]
