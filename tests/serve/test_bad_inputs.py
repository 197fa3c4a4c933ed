"""Every bad upload gets a clear 4xx JSON ``{"error": ...}``, never a 500, and leaves no temporary file.

The ``client`` fixture asserts after each test that its upload folder is empty again.
"""

from __future__ import annotations

import io
import zipfile

import pytest

from tests.serve.conftest import dicom_bytes, png_bytes, zip_bytes


def _post(client, data: bytes, name: str = "upload", route: str = "/predict"):
    return client.post(route, files={"file": (name, data, "application/octet-stream")})


def _error(res, status: int) -> str:
    assert res.status_code == status, res.text
    body = res.json()
    assert set(body) == {"error"} and body["error"]
    assert "/tmp" not in body["error"] and "covidct-upload" not in body["error"]  # no server paths leak
    return body["error"]


@pytest.mark.parametrize("route", ["/predict", "/explain"])
def test_empty_upload(client, route: str) -> None:
    assert "empty" in _error(_post(client, b"", "a.png", route), 400)


def test_missing_file_field(client) -> None:
    assert "file" in _error(client.post("/predict", files={"other": ("a.png", png_bytes())}), 400)
    assert "file" in _error(client.post("/predict", data={"file": "not a file"}), 400)
    assert "file" in _error(client.post("/predict"), 400)


@pytest.mark.parametrize("data", [b"hello world, I am text", b"%PDF-1.7\n" + b"x" * 300, b"\x00" * 64])
def test_not_an_image(client, data: bytes) -> None:
    assert "not a supported file" in _error(_post(client, data, "scan.png"), 415)


def test_name_alone_does_not_make_an_image(client) -> None:
    assert "checked by content" in _error(_post(client, b"GIF89a" + b"\x00" * 100, "slice.dcm"), 415)


@pytest.mark.parametrize("kind", ["png", "jpeg", "tiff", "dicom"])
def test_corrupt_image(client, kind: str) -> None:
    good = {
        "png": png_bytes(),
        "jpeg": png_bytes(fmt="JPEG"),
        "tiff": png_bytes(fmt="TIFF"),
        "dicom": dicom_bytes(),
    }[kind]
    truncated = good[: max(140, len(good) // 3)]
    message = _error(_post(client, truncated, f"bad.{kind}"), 422)
    assert message.startswith(f"bad.{kind}")  # DataError messages start with the (client's) file name


def test_dicom_without_preamble_is_recognised_then_refused_by_the_reader(client) -> None:
    """No 'DICM' marker: sniffed as DICOM (pydicom parses it, so not a 415), but covidct's reader only takes
    standard DICOM files, so a clear 422 that names the file."""
    data = dicom_bytes(preamble=False)
    assert data[128:132] != b"DICM"
    message = _error(_post(client, data, "IM0001"), 422)
    assert message.startswith("IM0001") and "DICM" in message


def test_too_large_by_content_length(client) -> None:
    big = b"\x89PNG\r\n\x1a\n" + b"\x00" * (3 * 1024 * 1024)
    assert "too large" in _error(_post(client, big, "big.png"), 413)


def test_too_large_streamed_without_content_length(client) -> None:
    """A chunked body (no Content-Length) is cut off while it streams in."""
    boundary = "covidctboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()

    def body():
        yield head + b"\x89PNG\r\n\x1a\n"
        for _ in range(48):
            yield b"\x00" * (64 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    res = client.post("/predict", content=body(), headers=headers)
    assert "too large" in _error(res, 413)


def test_too_many_pixels(client) -> None:
    """A small file announcing a huge image (decompression bomb) is refused before decoding."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (2048, 1024)).save(buffer, format="PNG")  # 2 Mpx of zeros: a few KB
    assert "too large" in _error(_post(client, buffer.getvalue(), "bomb.png"), 413)


@pytest.mark.parametrize(
    "name", ["../evil.dcm", "a/../../evil.dcm", "/etc/evil.dcm", "C:/evil.dcm", "..\\evil.dcm"]
)
def test_zip_slip(client, name: str) -> None:
    data = zip_bytes({"ok.dcm": dicom_bytes(0), name: dicom_bytes(1)})
    assert "refused" in _error(_post(client, data, "ct.zip"), 400)


def test_zip_symlink(client) -> None:
    data = zip_bytes({"ok.dcm": dicom_bytes(0), "link.dcm": b"/etc/passwd"}, symlinks=("link.dcm",))
    assert "symbolic link" in _error(_post(client, data, "ct.zip"), 400)


def test_zip_bomb_total_size(client) -> None:
    """Highly compressible members beyond the (test) 1 MiB expansion limit."""
    data = zip_bytes({f"{k}.dcm": b"\x00" * (400 * 1024) for k in range(4)})
    assert len(data) < 64 * 1024
    assert "expands beyond" in _error(_post(client, data, "bomb.zip"), 413)


def test_zip_bomb_lying_header(client) -> None:
    """A member whose header claims a small size but inflates to more is stopped while inflating."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.dcm", b"\x00" * (2 * 1024 * 1024))
    raw = bytearray(buffer.getvalue())
    # patch the uncompressed size (4 bytes) in the local header (offset 22) and the central directory entry
    small = (1000).to_bytes(4, "little")
    raw[22:26] = small
    central = raw.rfind(b"PK\x01\x02")
    raw[central + 24 : central + 28] = small
    # zipfile reads no more than the declared size, then the CRC check fails
    assert "corrupt ZIP" in _error(_post(client, bytes(raw), "liar.zip"), 400)


def test_zip_too_many_members(client) -> None:
    data = zip_bytes({f"{k}.txt": b"x" for k in range(25)})
    assert "members" in _error(_post(client, data, "many.zip"), 413)


def test_zip_without_dicom(client) -> None:
    assert "no DICOM" in _error(_post(client, zip_bytes({"a.txt": b"hello"}), "a.zip"), 415)


def test_zip_corrupt_and_empty(client) -> None:
    good = zip_bytes({"0.dcm": dicom_bytes(0), "1.dcm": dicom_bytes(1)})
    assert "ZIP" in _error(_post(client, good[: len(good) // 2], "cut.zip"), 400)
    empty = io.BytesIO()
    zipfile.ZipFile(empty, "w").close()
    assert "empty ZIP" in _error(_post(client, empty.getvalue(), "empty.zip"), 400)


def test_zip_encrypted_member(client) -> None:
    data = bytearray(zip_bytes({"0.dcm": dicom_bytes(0)}))
    data[6] |= 0x1  # general purpose flag: encrypted (local header)
    central = data.rfind(b"PK\x01\x02")
    data[central + 8] |= 0x1
    assert "encrypt" in _error(_post(client, bytes(data), "locked.zip"), 400)


def test_zip_of_two_series(client) -> None:
    data = zip_bytes(
        {"a.dcm": dicom_bytes(0, series_uid="1.2.3.1"), "b.dcm": dicom_bytes(1, series_uid="1.2.3.2")}
    )
    assert "series" in _error(_post(client, data, "two.zip"), 422)


def test_zip_slices_of_different_sizes(client) -> None:
    data = zip_bytes({"a.dcm": dicom_bytes(0), "b.dcm": dicom_bytes(1, size=16)})
    message = _error(_post(client, data, "mixed.zip"), 422)
    assert message.startswith("mixed.zip") and "different sizes" in message


def test_unknown_route_and_method_are_json(client) -> None:
    assert _error(client.get("/nope"), 404)
    assert _error(client.get("/predict"), 405)
