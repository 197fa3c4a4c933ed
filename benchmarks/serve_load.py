"""Load on the web service over loopback: N concurrent POST /predict requests, throughput and latency.

    .venv/bin/python benchmarks/serve_load.py [MODEL.pt|MODEL.onnx] [--requests 32] [--concurrency 8]
        [--model EfficientNetB0 --image-size 224] [--slice-size 512] [--route predict]

Without MODEL, a random-weight checkpoint of ``--model`` is written to a temporary folder (speed does not
depend on the weights). The upload is a synthetic 512 x 512 8-bit PNG slice. The server is uvicorn on
127.0.0.1 (a free port, never another address) in this process. Baseline in the same run: the same slices
through the same Predictor in-process, one at a time, so the ratio is the cost of HTTP + multipart + staging +
decoding. Numbers for docs/serve.md."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LoadResult:
    requests: int
    concurrency: int
    seconds: float
    statuses: dict[int, int]
    latencies_ms: list[float]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def summary(self) -> str:
        lat = sorted(self.latencies_ms)
        p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))]
        return (
            f"{self.requests} requests, {self.concurrency} at a time: {self.throughput:.2f} req/s, "
            f"latency p50 {statistics.median(lat):.0f} ms, p95 {p95:.0f} ms, statuses {self.statuses}"
        )


@contextlib.contextmanager
def running_server(app: Any, *, start_timeout_s: float = 30.0) -> Iterator[str]:
    """``app`` under uvicorn on 127.0.0.1 (OS-chosen free port) in a thread; yields the base URL."""
    import httpx
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:  # bounded poll of /health
            try:
                if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{url}/health did not answer within {start_timeout_s:g} s")
            time.sleep(0.05)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def fire(
    url: str,
    payload: bytes,
    *,
    route: str = "/predict",
    requests: int = 32,
    concurrency: int = 8,
    filename: str = "slice.png",
    timeout_s: float = 120.0,
) -> LoadResult:
    """``requests`` uploads of ``payload``, ``concurrency`` at a time (one httpx client per worker thread)."""
    import httpx

    local = threading.local()

    def one(_: int) -> tuple[int, float]:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(timeout=timeout_s)
        start = time.perf_counter()
        try:
            files = {"file": (filename, payload, "application/octet-stream")}
            status = client.post(url + route, files=files).status_code
        except httpx.HTTPError:
            status = 0  # no answer at all
        return status, (time.perf_counter() - start) * 1e3

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency, thread_name_prefix="load") as pool:
        results = list(pool.map(one, range(requests)))
    seconds = time.perf_counter() - start
    statuses: dict[int, int] = {}
    for status, _ in results:
        statuses[status] = statuses.get(status, 0) + 1
    return LoadResult(requests, concurrency, seconds, statuses, [ms for _, ms in results])


def phantom_png(size: int = 512, seed: int = 0) -> bytes:
    """A chest-like 8-bit slice: body ellipse, two dark lungs, noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    body = ((xx - 0.5) ** 2 / 0.2 + (yy - 0.5) ** 2 / 0.15) < 1
    lungs = (((xx - 0.32) ** 2 + (yy - 0.5) ** 2) < 0.03) | (((xx - 0.68) ** 2 + (yy - 0.5) ** 2) < 0.03)
    image = 0.1 + 0.6 * body - 0.5 * lungs + 0.03 * rng.standard_normal((size, size))
    buffer = io.BytesIO()
    Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def random_checkpoint(model: str, image_size: int, out: Path) -> Path:
    from covidct.models.checkpoint import CheckpointMeta, save_checkpoint
    from covidct.models.factory import create_model
    from covidct.models.registry import get_spec

    spec = get_spec(model)
    net = create_model(model, 3, pretrained=False)
    meta = CheckpointMeta(
        model_name=spec.name,
        timm_name=spec.timm_name,
        classes=("COVID-19", "Healthy", "Pneumonia"),
        image_size=image_size,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        cam_layer=spec.cam_layer,
    )
    return save_checkpoint(out / "model.pt", net, meta)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "model_path", nargs="?", help="a .pt checkpoint or .onnx model (default: random weights)"
    )
    parser.add_argument(
        "--model", default="EfficientNetB0", help="architecture for the random-weight checkpoint"
    )
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--slice-size", type=int, default=512)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers-threads", type=int, default=2)
    parser.add_argument("--route", default="/predict", choices=("/predict", "/explain"))
    args = parser.parse_args(argv)

    from PIL import Image

    from covidct.serve.app import create_app
    from covidct.serve.model import load_model

    with tempfile.TemporaryDirectory(prefix="covidct-serve-load-") as tmp:
        path = Path(args.model_path) if args.model_path else None
        path = path or random_checkpoint(args.model, args.image_size, Path(tmp))
        loaded = load_model(path)
        payload = phantom_png(args.slice_size)
        app = create_app(loaded.predictor, model_version=loaded.version, worker_threads=args.workers_threads)

        # baseline: the same predictor in-process, one slice at a time, after a warm-up (oneDNN primitives);
        # in a worker thread like the server's (OpenMP thread settings are per thread)
        image = np.asarray(Image.open(io.BytesIO(payload)), dtype=np.float32) / 255.0

        def direct_run() -> float:
            for _ in range(5):
                loaded.predictor.predict([image])
            start = time.perf_counter()
            for _ in range(args.requests):
                loaded.predictor.predict([image])
            return args.requests / (time.perf_counter() - start)

        with ThreadPoolExecutor(1) as pool:
            direct = pool.submit(direct_run).result()

        with running_server(app) as url:
            fire(url, payload, route=args.route, requests=8, concurrency=2)  # warm-up
            result = fire(
                url, payload, route=args.route, requests=args.requests, concurrency=args.concurrency
            )
    model = loaded.predictor.meta
    print(
        f"model: {model.model_name} @ {model.image_size}px ({loaded.predictor.backend}); "
        f"upload: {args.slice_size}x{args.slice_size} PNG ({len(payload)} bytes); route {args.route}"
    )
    print(f"server over 127.0.0.1: {result.summary()}")
    print(f"baseline, Predictor.predict in-process, sequential: {direct:.2f} slices/s")
    print(f"server / in-process throughput: {result.throughput / direct:.2f}")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"load average during the run: {load} on {os.cpu_count()} CPUs")
    bad = sum(n for status, n in result.statuses.items() if status != 200)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
