"""Hostile load on the web service: bombs among normal requests; service RSS and normal-request p95 vs idle.

    .venv/bin/python benchmarks/serve_hostile.py [MODEL.pt] [--model EfficientNetB0 --image-size 224]
        [--idle-requests 40] [--bomb-rounds 2] [--max-seconds 240]

The service runs in a child process (so its RSS is its own) under uvicorn on 127.0.0.1 only (an OS-chosen free
port); it is stopped at the end, whatever happens. Without MODEL, a random-weight checkpoint of ``--model`` is
written to a temporary folder (memory and speed do not depend on the weights).

1. idle: ``--idle-requests`` normal requests (512 x 512 PNG and DICOM slices, alternating,
   /predict), 2 at a time.
2. hostile: the same normal stream, 2 at a time, while two other clients send ``--bomb-rounds`` rounds of: a
   deflated DICOM of 4 frames of 8000 x 8000 (~0.5 MB, inflates to 488 MiB), a deflated 512 x 512 DICOM whose
   stream inflates to 488 MiB of padding, a 1 MB ZIP with one 900 MiB member, a ZIP whose 400 MiB member has a
   512 x 512 DICOM header (the member bound applies, not the 512 MiB archive bound), a ZIP with a 400 MiB
   non-DICOM member next to a slice, /explain on an 8000 x 8000 16-bit PNG (124 KB), and a legitimate
   128-slice 512 x 512 DICOM series ZIP.

RSS of the service is sampled every 50 ms (psutil if installed, else /proc/PID/status). Printed: idle and
hostile p50/p95 of the normal requests and their ratio, the statuses per kind, the service RSS after warm-up
(model loaded) and its peak, against the bound (warm-up RSS + 1 GiB). Everything stops after
``--max-seconds``.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MiB = 1 << 20
GiB = 1 << 30


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------------------------- payloads
def _ct_dataset(
    size: int, frames: int = 1, z: float = 0.0, series: str = "1.2.826.0.1.3680043.8.498.7"
) -> object:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.SeriesInstanceUID = "CT", "P1", series
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0.0, 0.0, z], [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.Rows = ds.Columns = size
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    return ds


def _phantom(size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    body = ((xx - 0.5) ** 2 / 0.2 + (yy - 0.5) ** 2 / 0.15) < 1
    lungs = (((xx - 0.32) ** 2 + (yy - 0.5) ** 2) < 0.03) | (((xx - 0.68) ** 2 + (yy - 0.5) ** 2) < 0.03)
    return np.clip(0.1 + 0.6 * body - 0.5 * lungs + 0.03 * rng.standard_normal((size, size)), 0, 1)


def png_slice(size: int = 512) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray((_phantom(size) * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def dicom_slice(size: int = 512, z: float = 0.0, seed: int = 0) -> bytes:
    ds = _ct_dataset(size, z=z)
    ds.PixelData = (_phantom(size, seed) * 1500).astype(np.int16).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def deflated_dicom(size: int, frames: int, pixel_bytes: int) -> bytes:
    """A deflated-transfer-syntax DICOM announcing ``frames x size x size`` 16-bit pixels whose dataset
    inflates to its header plus ``pixel_bytes`` zero bytes of pixel data (see
    :func:`deflate_zeros`: small and fast)."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    ds = _ct_dataset(size, frames)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    meta = DicomBytesIO()
    meta.is_little_endian, meta.is_implicit_VR = True, False
    write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    element = b"\xe0\x7f\x10\x00OW\x00\x00" + pixel_bytes.to_bytes(4, "little")  # (7FE0,0010) OW, length
    data, _ = deflate_zeros(body.getvalue() + element, pixel_bytes)
    return b"\0" * 128 + b"DICM" + meta.getvalue() + data


def deflate_zeros(head: bytes, zeros: int) -> tuple[bytes, int]:
    """Raw deflate of ``head`` + ``zeros`` zero bytes, and the CRC-32 of that data. After a full flush the
    encoder starts afresh, so one compressed 8 MiB block of zeros is repeated instead of
    compressing gigabytes."""
    block = bytes(8 * MiB)
    z = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [z.compress(head), z.flush(zlib.Z_FULL_FLUSH)]
    packed = z.compress(block) + z.flush(zlib.Z_FULL_FLUSH)
    n = zeros // len(block)
    crc = zlib.crc32(head)
    for _ in range(n):
        parts.append(packed)
        crc = zlib.crc32(block, crc)
    rest = bytes(zeros - n * len(block))
    parts += [z.compress(rest), z.flush()]
    return b"".join(parts), zlib.crc32(rest, crc)


def zip_with_member(name: str, head: bytes, size: int, extra: dict[str, bytes] | None = None) -> bytes:
    """A ZIP (written by hand: deflate, no ZIP64) holding ``extra`` members and ``name`` = ``head``
    followed by zeros up to ``size`` bytes."""
    import struct

    members = []
    for other, data in (extra or {}).items():
        z = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        members.append((other, z.compress(data) + z.flush(), zlib.crc32(data), len(data)))
    packed, crc = deflate_zeros(head, size - len(head))
    members.append((name, packed, crc, size))
    out, central = io.BytesIO(), io.BytesIO()
    for member, data, crc, length in members:
        offset = out.tell()
        encoded = member.encode()
        fields = (20, 0, 8, 0, 0x21, crc, len(data), length, len(encoded))
        out.write(struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", *fields, 0) + encoded + data)
        central.write(
            struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, *fields, 0, 0, 0, 0, 0, offset) + encoded
        )
    start, directory = out.tell(), central.getvalue()
    out.write(directory)
    out.write(
        struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(members), len(members), len(directory), start, 0)
    )
    return out.getvalue()


def series_zip(n: int, size: int = 512) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for k in range(n):
            zf.writestr(f"IM{k:04d}.dcm", dicom_slice(size, z=float(k), seed=k % 4))
    return buffer.getvalue()


def huge_png(side: int = 8000) -> bytes:
    from PIL import Image

    image = np.zeros((side, side), dtype=np.uint16)
    image[side // 4 : 3 * side // 4, side // 4 : 3 * side // 4] = 3000  # a 16-bit image that is not flat
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def bombs() -> list[tuple[str, str, str, bytes]]:
    """(kind, route, file name, payload) of every hostile upload."""
    slice_head = dicom_slice(512)[: -(512 * 512 * 2)]  # header + pixel element header of a 512 x 512 slice
    return [
        ("deflated 4 x 8000^2 DICOM", "/predict", "bomb.dcm", deflated_dicom(8000, 4, 4 * 8000 * 8000 * 2)),
        (
            "deflated 512^2 DICOM, 488 MiB inside",
            "/predict",
            "liar.dcm",
            deflated_dicom(512, 1, 4 * 8000 * 8000 * 2),
        ),
        ("ZIP, one 900 MiB member", "/predict", "bomb.zip", zip_with_member("a.dcm", slice_head, 900 * MiB)),
        (
            "ZIP, 400 MiB member with a 512^2 header",
            "/predict",
            "long.zip",
            zip_with_member("a.dcm", slice_head, 400 * MiB),
        ),
        (
            "ZIP, 400 MiB non-DICOM member + 1 slice",
            "/predict",
            "junk.zip",
            zip_with_member("junk.bin", b"", 400 * MiB, {"0.dcm": dicom_slice(512)}),
        ),
        ("explain 8000^2 16-bit PNG", "/explain", "huge.png", huge_png(8000)),
        ("series ZIP, 128 x 512^2 (legitimate)", "/predict", "series.zip", series_zip(128)),
    ]


# --------------------------------------------------------------------------------------------- the service
def child(model: str, port_file: str, threads: int) -> None:
    """Run in the child process: the service on 127.0.0.1, port written to ``port_file``."""
    import uvicorn

    from covidct.serve.app import create_app
    from covidct.serve.model import load_model, preload_explain

    loaded = load_model(model, threads=threads)
    app = create_app(loaded.predictor, model_version=loaded.version)
    preload_explain()  # as ``covidct serve`` does
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    Path(port_file).write_text(str(sock.getsockname()[1]))
    uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off")).run(sockets=[sock])


def rss_bytes(pid: int) -> int:
    try:
        import psutil

        return int(psutil.Process(pid).memory_info().rss)
    except ImportError:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    return 0


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every_s: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s = pid, every_s
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.samples.append((time.monotonic(), rss_bytes(self.pid)))
            except OSError:
                return
            self.stop.wait(self.every_s)

    def peak(self, since: float = 0.0) -> int:
        return max((rss for t, rss in self.samples if t >= since), default=0)


# --------------------------------------------------------------------------------------------- load
def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def post(client, url: str, route: str, name: str, payload: bytes) -> tuple[int, float]:
    import httpx

    start = time.perf_counter()
    try:
        status = client.post(
            url + route, files={"file": (name, payload, "application/octet-stream")}
        ).status_code
    except httpx.HTTPError:
        status = 0
    return status, (time.perf_counter() - start) * 1e3


def normal_stream(
    url: str,
    normals: list[tuple[str, bytes]],
    n: int | None,
    until: Callable[[], bool],
    out: list[tuple[int, float]],
    deadline: float,
) -> None:
    """Normal /predict requests back to back: ``n`` of them, or until ``until()``."""
    import httpx

    with httpx.Client(timeout=120.0) as client:
        k = 0
        while (n is None or k < n) and not until() and time.monotonic() < deadline:
            name, payload = normals[k % len(normals)]
            out.append(post(client, url, "/predict", name, payload))
            k += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_path", nargs="?", help="a .pt checkpoint (default: random weights)")
    parser.add_argument(
        "--model", default="EfficientNetB0", help="architecture for the random-weight checkpoint"
    )
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--idle-requests", type=int, default=40)
    parser.add_argument("--bomb-rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads in the service")
    parser.add_argument("--max-seconds", type=float, default=240.0)
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "PORT_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1], args.threads)
        return 0

    import httpx

    t_start = time.monotonic()
    deadline = t_start + args.max_seconds
    tmp = Path(tempfile.mkdtemp(prefix="covidct-hostile-"))
    model_path = args.model_path
    if model_path is None:
        sys.path.insert(0, str(HERE))
        from serve_load import random_checkpoint

        model_path = str(random_checkpoint(args.model, args.image_size, tmp))
    say("building payloads ...")
    normals = [("slice.png", png_slice(512)), ("slice.dcm", dicom_slice(512))]
    hostile = bombs()
    for kind, _, _, payload in hostile:
        say(f"  {kind}: {len(payload) / 1024:.0f} KiB")

    port_file = tmp / "port"
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, __file__, "--threads", str(args.threads), "--child", model_path, str(port_file)],
        env=env,
    )
    sampler = RssSampler(proc.pid)
    try:
        while not port_file.exists() or not port_file.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the service did not start")
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port_file.read_text()}"
        while True:  # bounded poll of /health
            try:
                if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{url}/health did not answer")
            time.sleep(0.1)
        sampler.start()
        with httpx.Client(timeout=60.0) as client:  # warm-up
            for name, payload in normals * 3:
                post(client, url, "/predict", name, payload)
        rss_model = rss_bytes(proc.pid)

        idle: list[tuple[int, float]] = []
        threads = [
            threading.Thread(
                target=normal_stream,
                args=(url, normals, args.idle_requests // 2, lambda: False, idle, deadline),
            )
            for _ in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        t_hostile = time.monotonic()

        done = threading.Event()
        loaded: list[tuple[int, float]] = []
        bomb_results: dict[str, list[tuple[int, float]]] = {kind: [] for kind, _, _, _ in hostile}
        jobs = [b for _ in range(args.bomb_rounds) for b in hostile]
        lock = threading.Lock()

        def bomber() -> None:
            with httpx.Client(timeout=180.0) as client:
                while time.monotonic() < deadline:
                    with lock:
                        if not jobs:
                            return
                        kind, route, name, payload = jobs.pop(0)
                    bomb_results[kind].append(post(client, url, route, name, payload))

        bombers = [threading.Thread(target=bomber) for _ in range(2)]
        normal = [
            threading.Thread(target=normal_stream, args=(url, normals, None, done.is_set, loaded, deadline))
            for _ in range(2)
        ]
        for t in bombers + normal:
            t.start()
        for t in bombers:
            t.join()
        done.set()
        for t in normal:
            t.join()
        t_end = time.monotonic()
    finally:
        sampler.stop.set()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        for path in tmp.iterdir():
            path.unlink()
        tmp.rmdir()

    idle_ms = [ms for status, ms in idle if status == 200]
    load_ms = [ms for status, ms in loaded if status == 200]
    peak = sampler.peak(t_hostile)
    bound = rss_model + GiB
    say(
        f"\nload average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
        f"hostile phase {t_end - t_hostile:.0f} s"
    )
    for kind, results in bomb_results.items():
        statuses = sorted({s for s, _ in results})
        worst = max((ms for _, ms in results), default=0.0)
        say(f"  {kind:<42} statuses {statuses}, slowest {worst / 1e3:.1f} s")
    bad = [s for s, _ in idle + loaded if s != 200]
    say(
        f"normal requests: idle {len(idle)} (non-200: {sum(s != 200 for s, _ in idle)}), "
        f"under hostile load {len(loaded)} (non-200: {len(bad) - sum(s != 200 for s, _ in idle)})"
    )
    say(f"normal p50 idle {statistics.median(idle_ms):.0f} ms, hostile {statistics.median(load_ms):.0f} ms")
    ratio = p95(load_ms) / p95(idle_ms)
    say(
        f"normal p95 idle {p95(idle_ms):.0f} ms, hostile {p95(load_ms):.0f} ms: "
        f"ratio {ratio:.2f} (target <= 2)"
    )
    say(
        f"service RSS after warm-up (model loaded) {rss_model / MiB:.0f} MiB, peak under hostile load "
        f"{peak / MiB:.0f} MiB (+{(peak - rss_model) / MiB:.0f} MiB; "
        f"bound model + 1 GiB = {bound / MiB:.0f} MiB): "
        f"{'within' if peak <= bound else 'OVER'} the bound"
    )
    return 0 if peak <= bound else 1


if __name__ == "__main__":
    raise SystemExit(main())
