"""Bounded memory and CPU under hostile uploads (issue 11): DICOM and ZIP bombs are refused from headers and
while streaming, requests have a time budget, abandoned requests stop, /explain renders at display size, and
upload folders of killed services are removed at start. Every hostile file is made here, small,
at run time."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import anyio
import numpy as np
import pytest
from PIL import Image

from covidct.serve import uploads
from covidct.serve.app import Budget, _watch_disconnect, create_app
from covidct.serve.images import DISPLAY_MAX, colorize, overlay
from covidct.serve.uploads import UploadError, UploadLimits, cleanup_stale_uploads, extract_dicom_zip
from tests.serve.conftest import dicom_bytes, png_bytes, zip_bytes

WIDE = UploadLimits(
    max_upload_bytes=8 << 20, max_zip_members=50, max_zip_total_bytes=1 << 30, max_pixels=32 << 20
)


def _post(client, data: bytes, name: str, route: str = "/predict", **params):
    return client.post(route, files={"file": (name, data, "application/octet-stream")}, params=params)


def _error(res, status: int) -> str:
    assert res.status_code == status, res.text
    body = res.json()
    assert set(body) == {"error"} and body["error"]
    assert "Traceback" not in body["error"] and "covidct-upload" not in body["error"]
    return body["error"]


def hostile_dicom(
    *,
    rows: int = 32,
    cols: int = 32,
    frames: int = 1,
    deflated: bool = False,
    pixel_bytes: int | None = None,
    trailing: int = 0,
) -> bytes:
    """A CT file announcing ``frames x rows x cols`` 16-bit pixels, storing ``pixel_bytes`` of them
    (default: all), then ``trailing`` zero bytes of padding."""
    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(0, size=rows)))
    ds.Rows, ds.Columns = rows, cols
    if frames > 1:
        ds.NumberOfFrames = frames
    n = rows * cols * frames * 2 if pixel_bytes is None else pixel_bytes
    ds.PixelData = bytes(n)
    if trailing:
        ds.add_new(0xFFFCFFFC, "OB", bytes(trailing))  # DataSetTrailingPadding
    if deflated:
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture()
def wide_client(loaded_model, upload_dir: Path):
    """Limits wide enough that only the new bounds (pixels per request, member length, budget) can refuse."""
    from fastapi.testclient import TestClient

    app = create_app(loaded_model.predictor, tmp_dir=upload_dir, limits=WIDE, max_cams=2)
    with TestClient(app) as test_client:
        yield test_client
    assert list(upload_dir.iterdir()) == [], "temporary upload files were left behind"


# ------------------------------------------------------------------------------------------- DICOM bombs
def test_deflated_multiframe_bomb_is_refused_from_its_header(wide_client) -> None:
    """400 frames of 512 x 512 (105 Mpx) announced by a 1 KB deflated file: 413 before inflating or
    decoding."""
    data = hostile_dicom(rows=512, cols=512, frames=400, deflated=True, pixel_bytes=64)
    assert len(data) < 4096
    message = _error(_post(wide_client, data, "bomb.dcm"), 413)
    assert message.startswith("bomb.dcm") and "too many pixels" in message


def test_deflated_stream_longer_than_announced_is_refused(wide_client) -> None:
    """A 32 x 32 header, then 8 MiB of padding that only shows when inflated (file: a few KB)."""
    data = hostile_dicom(deflated=True, trailing=8 << 20)
    assert len(data) < 64 * 1024
    assert "inflates beyond" in _error(_post(wide_client, data, "long.dcm"), 413)


def test_multiframe_within_the_budget_still_works(wide_client) -> None:
    res = _post(wide_client, hostile_dicom(rows=32, cols=32, frames=3, deflated=True), "ok.dcm")
    assert res.status_code == 200, res.text
    assert res.json()["kind"] == "series" and len(res.json()["slices"]) == 3


# ------------------------------------------------------------------------------------------- ZIP bombs
class _CountReads:
    """Counts the bytes inflated out of ZIP members."""

    def __init__(self, monkeypatch) -> None:
        self.total = 0
        original = zipfile.ZipExtFile.read

        def read(zef, n=-1):
            data = original(zef, n)
            self.total += len(data)
            return data

        monkeypatch.setattr(zipfile.ZipExtFile, "read", read)


def _big_zip(tmp_path: Path, name: str, head: bytes, size: int) -> Path:
    """A ZIP whose one member is ``head`` followed by zeros up to ``size`` bytes, written in chunks (tiny)."""
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open(name, "w", force_zip64=True) as member:
            member.write(head)
            zeros = bytes(1 << 20)
            for _ in range((size - len(head)) // len(zeros)):
                member.write(zeros)
    return path


def test_member_longer_than_its_header_stops_at_the_header_bound(tmp_path: Path, monkeypatch) -> None:
    """A 32 x 32 DICOM header followed by 64 MiB: streaming stops about 1 MiB in, not after 64 MiB on disk."""
    archive = _big_zip(tmp_path, "a.dcm", dicom_bytes(0), 64 << 20)
    assert archive.stat().st_size < 1 << 20
    counter = _CountReads(monkeypatch)
    (tmp_path / "out").mkdir()
    with pytest.raises(UploadError, match="longer than its DICOM header announces") as err:
        extract_dicom_zip(archive, tmp_path / "out", WIDE, name="bomb.zip")
    assert err.value.status_code == 413
    assert counter.total < 4 << 20


def test_total_limit_is_counted_while_streaming(tmp_path: Path, monkeypatch) -> None:
    """The 900 MiB-member case, scaled: 24 MiB in one member against an 8 MiB request limit."""
    archive = _big_zip(tmp_path, "a.dcm", b"\0" * 128 + b"DICM", 24 << 20)
    counter = _CountReads(monkeypatch)
    (tmp_path / "out").mkdir()
    limits = UploadLimits(max_zip_total_bytes=8 << 20)
    with pytest.raises(UploadError, match="expands beyond"):
        extract_dicom_zip(archive, tmp_path / "out", limits, name="bomb.zip")
    assert counter.total <= (8 << 20) + (2 << 20)


def test_non_dicom_member_is_classified_from_its_first_bytes(tmp_path: Path, monkeypatch) -> None:
    """16 MiB of something else next to one slice: skipped after its first 64 KiB, never written or parsed."""
    archive = tmp_path / "mixed.zip"
    archive.write_bytes(zip_bytes({"0.dcm": dicom_bytes(0), "notes.bin": bytes(16 << 20)}))
    counter = _CountReads(monkeypatch)
    (tmp_path / "out").mkdir()
    members = extract_dicom_zip(archive, tmp_path / "out", WIDE, name="mixed.zip")
    assert members.skipped == ["notes.bin"] and list(members.kept.values()) == ["0.dcm"]
    assert counter.total < 1 << 20
    assert members.pixels == 32 * 32


def test_decoded_pixels_per_request_are_capped(loaded_model, upload_dir: Path) -> None:
    from fastapi.testclient import TestClient

    limits = UploadLimits(max_zip_total_bytes=1 << 20, max_pixels=1 << 20, max_request_pixels=3 * 32 * 32)
    app = create_app(loaded_model.predictor, tmp_dir=upload_dir, limits=limits)
    with TestClient(app) as client:
        ok = zip_bytes({f"{k}.dcm": dicom_bytes(k) for k in range(3)})
        assert client.post("/predict", files={"file": ("ok.zip", ok)}).status_code == 200
        big = zip_bytes({f"{k}.dcm": dicom_bytes(k) for k in range(4)})
        assert "too many pixels" in _error(_post(client, big, "big.zip"), 413)
    assert list(upload_dir.iterdir()) == []


# ------------------------------------------------------------------------------------------- time budget
def test_request_over_its_time_budget_is_a_408(loaded_model, upload_dir: Path) -> None:
    from fastapi.testclient import TestClient

    app = create_app(loaded_model.predictor, tmp_dir=upload_dir, request_timeout_s=1e-9)
    with TestClient(app) as client:
        data = zip_bytes({f"{k}.dcm": dicom_bytes(k) for k in range(2)})
        assert "time budget" in _error(_post(client, data, "ct.zip"), 408)
        assert client.get("/model").json()["limits"]["request_timeout_s"] == 1e-9
    assert list(upload_dir.iterdir()) == []


def test_a_request_queued_behind_a_heavy_one_gets_a_408_at_its_deadline(
    loaded_model, upload_dir: Path, monkeypatch
) -> None:
    """The budget bounds the wait for a worker too: a series ZIP queued behind a running one (one heavy
    worker) is answered 408 at its deadline, not whenever the worker frees up (the hostile run's 180 s)."""
    import threading

    from fastapi.testclient import TestClient

    from covidct.serve import app as app_module

    running, release = threading.Event(), threading.Event()
    process = app_module._process

    def blocking_process(*args, **kwargs):
        if not running.is_set():
            running.set()
            release.wait(30)
        return process(*args, **kwargs)

    monkeypatch.setattr(app_module, "_process", blocking_process)
    app = create_app(loaded_model.predictor, tmp_dir=upload_dir, request_timeout_s=0.5, heavy_workers=1)
    data = zip_bytes({f"{k}.dcm": dicom_bytes(k) for k in range(2)})
    with TestClient(app) as client:
        first = threading.Thread(target=lambda: _post(client, data, "first.zip"))
        first.start()
        try:
            assert running.wait(30)
            message = _error(_post(client, data, "second.zip"), 408)
        finally:
            release.set()
            first.join(30)
    assert "waited for a worker" in message and "0.5 s" in message
    assert list(upload_dir.iterdir()) == []


def test_work_of_a_gone_client_stops_at_the_next_step(tmp_path: Path) -> None:
    budget = Budget(60.0)
    archive = tmp_path / "ct.zip"
    archive.write_bytes(zip_bytes({f"{k}.dcm": dicom_bytes(k) for k in range(3)}))
    (tmp_path / "out").mkdir()
    budget.cancelled.set()
    with pytest.raises(UploadError, match="went away"):
        extract_dicom_zip(archive, tmp_path / "out", WIDE, check=budget.check)
    assert list((tmp_path / "out").iterdir()) == []


def test_disconnect_watcher_cancels_the_budget(monkeypatch) -> None:
    from covidct.serve import app as app_module

    monkeypatch.setattr(app_module, "DISCONNECT_POLL_S", 0.0)

    class GoneRequest:
        calls = 0

        async def is_disconnected(self) -> bool:
            self.calls += 1
            return self.calls >= 3

    budget = Budget(60.0)
    anyio.run(_watch_disconnect, GoneRequest(), budget)
    assert budget.cancelled.is_set()


# ------------------------------------------------------------------------------------------- explain
def test_explain_of_a_large_16bit_png_renders_at_display_size(loaded_model, upload_dir: Path) -> None:
    from fastapi.testclient import TestClient

    image = (np.indices((2000, 3000)).sum(axis=0) % 4096).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    limits = UploadLimits(max_upload_bytes=16 << 20, max_pixels=8 << 20)
    app = create_app(loaded_model.predictor, tmp_dir=upload_dir, limits=limits)
    with TestClient(app) as client:
        res = _post(client, buffer.getvalue(), "big.png", "/explain")
    assert res.status_code == 200, res.text
    body = res.json()
    assert (body["slices"][0]["height"], body["slices"][0]["width"]) == (2000, 3000)  # predicted at full size
    for key in ("image_png", "heatmap_png", "overlay_png"):
        shown = Image.open(io.BytesIO(base64.b64decode(body["cams"][0][key])))
        assert shown.size == (DISPLAY_MAX, round(2000 * DISPLAY_MAX / 3000)), key
    assert list(upload_dir.iterdir()) == []


def test_heatmap_colours_and_overlay_stay_uint8_and_float32() -> None:
    cam = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    heat = colorize(cam)
    assert heat.dtype == np.uint8 and heat.shape == (64, 64, 4)
    assert tuple(heat[0, 0, :3]) == (0, 0, 128) and tuple(heat[-1, -1, :3]) == (128, 0, 0)  # jet ends
    assert overlay(cam, heat).dtype == np.uint8


# ------------------------------------------------------------------------------------------- stale folders
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_upload_folders_of_killed_services_are_removed_at_start(tmp_path: Path, loaded_model) -> None:
    dead = tmp_path / f"covidct-upload-{_dead_pid()}-abc"
    live = tmp_path / f"covidct-upload-{os.getpid()}-xyz"  # this process: a concurrently running service
    old_style_recent = tmp_path / "covidct-upload-k2j4h5"  # no pid (older version): kept unless old
    old_style_old = tmp_path / "covidct-upload-q9w8e7"
    other = tmp_path / "not-ours"
    for folder in (dead, live, old_style_recent, old_style_old, other):
        folder.mkdir()
        (folder / "00000.dcm").write_bytes(b"x")
    week_ago = time.time() - 7 * 86400
    os.utime(old_style_old, (week_ago, week_ago))
    create_app(loaded_model.predictor, tmp_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (live, old_style_recent, other)
    )
    assert cleanup_stale_uploads(tmp_path) == []


def test_upload_folders_carry_the_pid(tmp_path: Path) -> None:
    staged = uploads.stage_upload(io.BytesIO(png_bytes()), "a.png", WIDE, tmp_root=tmp_path)
    try:
        assert staged.root is not None and staged.root.name.startswith(f"covidct-upload-{os.getpid()}-")
    finally:
        staged.cleanup()
    assert list(tmp_path.iterdir()) == []


def test_hostile_benchmark_payloads_are_what_they_claim(tmp_path: Path) -> None:
    """benchmarks/serve_hostile.py writes its bombs by hand (fast): they must be valid ZIP / DICOM files."""
    import importlib.util

    from covidct.data.readers import load_series

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "serve_hostile.py"
    spec = importlib.util.spec_from_file_location("covidct_bench_serve_hostile", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    data = bench.zip_with_member("a.dcm", b"head", 9 << 20, {"x.txt": b"abc"})
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        assert [(i.filename, i.file_size) for i in zf.infolist()] == [("x.txt", 3), ("a.dcm", 9 << 20)]
    assert len(data) < 64 * 1024
    dicom = tmp_path / "d.dcm"
    dicom.write_bytes(bench.deflated_dicom(64, 2, 64 * 64 * 2 * 2))
    assert load_series(dicom).images.shape == (2, 64, 64)


def test_series_run_as_heavy_requests_and_single_slices_as_light(wide_client) -> None:
    """A ZIP series takes the model a few slices at a time, behind light requests; a slice at once."""
    served = wide_client.app.state.served
    seen = []
    original = served.predict

    def spy(images, sources, *, urgent=True, check=lambda: None):
        seen.append((len(images), urgent))
        return original(images, sources, urgent=urgent, check=check)

    served.predict = spy
    assert _post(wide_client, png_bytes(), "a.png").status_code == 200
    series = zip_bytes({f"{k}.dcm": dicom_bytes(k) for k in range(5)})
    res = _post(wide_client, series, "ct.zip")
    assert res.status_code == 200 and len(res.json()["slices"]) == 5
    assert seen == [(1, True), (5, False)]
