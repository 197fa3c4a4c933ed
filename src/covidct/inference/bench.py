"""Inference speed benchmark: models x backends x batch sizes, model-only and end-to-end (issue #5).

Backends: ``torch`` (covidct's default path: malloc tuning, channels-last, inference mode), ``onnx``
(onnxruntime, all graph optimisations, intra-op threads = physical cores), ``openvino`` (the ONNX export
compiled by OpenVINO; ``openvino:fp32`` / ``openvino:bf16`` / ``openvino`` = auto) and ``eager`` (the
baseline: a plain timm model, default layout and allocator, ``torch.no_grad``). Weights are random
(``pretrained=False``): speed does not depend on them.

Each (model, backend) runs in a fresh Python process, so allocator settings, thread pools and caches of one
case cannot help or hurt another (malloc tuning is process-wide). Per batch size ``B`` it records, per image:

- model-only: latency of ``B`` preprocessed images through the network, divided by ``B`` (median, p90);
- end-to-end: files on disk -> probabilities for ``B`` files, sequentially (decode, resize, normalise,
  network, softmax), divided by ``B`` (median, p90);
- stream throughput: images/s predicting ``repeats x B`` files with the predictor's prefetching pipeline
  (a thread pool decoding and resizing slices ahead of the network);
- series throughput (with ``series``): slices/s predicting a whole DICOM series folder end-to-end through
  ``Predictor.predict`` (planning + ordering, parallel decode, network), comparable with model-only img/s.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from covidct.data.pipeline import physical_cores
from covidct.data.preprocess import check_image_size
from covidct.data.readers import load_slice
from covidct.errors import ConfigError, CovidCTError
from covidct.inference.backends import PRECISIONS
from covidct.inference.predictor import Predictor
from covidct.models.metadata import ModelMeta
from covidct.models.normalization import model_normalization
from covidct.models.registry import get_spec
from covidct.utils import atomic_path, environment_record, write_json_atomic, write_text_atomic

BACKENDS = ("torch", "onnx", "openvino", "eager")  # a case may name a precision: "openvino:bf16"
CLASSES = ("COVID-19", "Healthy", "Pneumonia")
COLUMNS = (
    "model",
    "backend",
    "precision",
    "batch_size",
    "image_size",
    "device",
    "threads",
    "model_ms_median",
    "model_ms_p90",
    "model_img_s",
    "e2e_ms_median",
    "e2e_ms_p90",
    "e2e_img_s",
    "stream_img_s",
    "series_slices",
    "series_img_s",
)


def split_backend(spec: str) -> tuple[str, str]:
    """``"openvino:bf16"`` -> ``("openvino", "bf16")``; no precision -> ``"auto"``."""
    backend, _, precision = spec.partition(":")
    return backend, precision or "auto"


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """What to benchmark. ``image_size=None`` uses each model's registry input size."""

    models: tuple[str, ...] = ("EfficientNetB0", "EfficientNetB5")
    backends: tuple[str, ...] = ("torch", "onnx")
    batch_sizes: tuple[int, ...] = (1, 8)
    device: str = "cpu"
    repeats: int = 10
    warmup: int = 2
    image_size: int | None = None
    threads: int | None = None
    images: tuple[str, ...] = ()  # files for end-to-end timing; default: generated 512x512 PNGs
    series: str | None = None  # a DICOM series folder (or any input) timed whole, end-to-end, slices/s

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("give at least one model")
        unknown = [b for b in self.backends if split_backend(b)[0] not in BACKENDS]
        if unknown or not self.backends:
            raise ConfigError(f"unknown backend(s) {unknown}: use {', '.join(BACKENDS)} (openvino:fp32|bf16)")
        bad = [
            b
            for b in self.backends
            if split_backend(b)[1] not in PRECISIONS
            or (split_backend(b)[1] == "bf16" and split_backend(b)[0] != "openvino")
        ]
        if bad:
            raise ConfigError(f"bad precision in {bad}: bf16 runs with openvino (e.g. openvino:bf16)")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ConfigError(f"batch sizes must be >= 1, got {self.batch_sizes}")
        if self.repeats < 1 or self.warmup < 0:
            raise ConfigError(f"repeats must be >= 1 and warmup >= 0, got {self.repeats}, {self.warmup}")
        if self.image_size is not None:
            check_image_size(self.image_size, "image size")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"unknown device {self.device!r}: use cpu or cuda")


@dataclass(frozen=True)
class BenchResult:
    """One row per (model, backend, batch size)."""

    table: pd.DataFrame
    config: BenchConfig
    files: list[Path] = field(default_factory=list)

    def markdown(self) -> str:
        return to_markdown(self.table)


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def _time(fn: Callable[[], Any], repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def generate_images(folder: Path, n: int, size: int = 512, seed: int = 0) -> list[str]:
    """``n`` 512 x 512 8-bit PNG 'slices' (smooth body + noise) for end-to-end timing."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    body = (xx**2 / 0.16 + yy**2 / 0.1 < 1).astype(np.float32) * 0.6
    paths = []
    for i in range(n):
        img = np.clip(body + rng.normal(0, 0.05, body.shape), 0, 1)
        path = folder / f"slice_{i:03d}.png"
        Image.fromarray((img * 255).astype(np.uint8)).save(path)
        paths.append(str(path))
    return paths


def _build(
    model_name: str,
    backend: str,
    image_size: int,
    device: str,
    threads: int | None,
    workdir: Path,
    precision: str = "auto",
) -> Any:
    """A predictor-like object with ``logits``, ``predict_slices``, ``preprocess`` for one case."""
    import torch  # each case runs in its own process: only the torch cases pay for importing it

    from covidct.models.factory import create_model

    if threads:
        torch.set_num_threads(threads)
    spec = get_spec(model_name)
    model = create_model(spec.name, len(CLASSES), pretrained=False).eval()
    mean, std = model_normalization(model)
    meta = ModelMeta(
        model_name=spec.name,
        timm_name=spec.timm_name,
        classes=CLASSES,
        image_size=image_size,
        mean=mean,
        std=std,
    )
    if backend == "torch":
        from covidct.inference.torch_backend import TorchPredictor

        return TorchPredictor(model, meta, device=device, threads=threads)
    if backend in ("onnx", "openvino"):
        from covidct.inference.export import export_module, write_metadata

        path = workdir / f"{spec.name}.onnx"
        export_module(model, path, image_size=image_size)
        write_metadata(path, meta)
        del model
        if backend == "openvino":
            from covidct.inference.openvino_backend import OpenVinoPredictor

            return OpenVinoPredictor(path, threads=threads, device=device, precision=precision)
        from covidct.inference.onnx_backend import OnnxPredictor

        return OnnxPredictor(path, threads=threads, device=device)

    class EagerPredictor(Predictor):  # the baseline: default layout and allocator, no prefetching
        backend = "eager"

        def __init__(self) -> None:
            super().__init__(meta, prefetch=False)
            self.device = torch.device(device)
            self.model = model.to(self.device)

        def logits(self, pixels: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return self.model(torch.from_numpy(pixels).to(self.device)).cpu().numpy()

    return EagerPredictor()


def measure_case(
    model_name: str,
    backend: str,
    *,
    batch_sizes: Sequence[int],
    image_size: int | None,
    device: str,
    threads: int | None,
    repeats: int,
    warmup: int,
    images: Sequence[str],
    series: str | None = None,
) -> list[dict[str, Any]]:
    """Time one (model, backend[:precision]) in this process; one row per batch size."""
    size = image_size or get_spec(model_name).input_size
    rows = []
    with tempfile.TemporaryDirectory(prefix="covidct-bench-") as tmp:
        workdir = Path(tmp)
        need = max(batch_sizes) * max(repeats, 2)
        files = list(images) or generate_images(workdir, min(need, 64))
        backend_name, precision = split_backend(backend)
        predictor = _build(model_name, backend_name, size, device, threads, workdir, precision)
        rng = np.random.default_rng(0)
        for bs in batch_sizes:
            pixels = rng.standard_normal((bs, 3, size, size)).astype(np.float32)
            model_t = _time(partial(predictor.logits, pixels), repeats, warmup)
            picks = [files[i % len(files)] for i in range(bs)]

            def end_to_end(picks: list[str] = picks) -> np.ndarray:
                batch = predictor.preprocess.batch([load_slice(p) for p in picks])
                return predictor.predict_proba(batch)

            e2e_t = _time(end_to_end, repeats, min(warmup, 1))
            stream = [
                (files[i % len(files)], partial(load_slice, files[i % len(files)]), "bench")
                for i in range(bs * repeats)
            ]
            start = time.perf_counter()
            predictor.predict_slices(stream, batch_size=bs)
            stream_s = time.perf_counter() - start
            series_n, series_rate = 0, float("nan")
            if series:  # the whole series, folder on disk -> probabilities, through predict()'s pipeline
                start = time.perf_counter()
                series_n = len(predictor.predict(series, batch_size=bs).slices)
                series_rate = series_n / (time.perf_counter() - start)
            rows.append(
                {
                    "model": model_name,
                    "backend": backend_name,
                    "precision": predictor.precision,
                    "batch_size": bs,
                    "image_size": size,
                    "device": device,
                    "threads": threads or physical_cores(),
                    "model_ms_median": 1e3 * statistics.median(model_t) / bs,
                    "model_ms_p90": 1e3 * _percentile(model_t, 90) / bs,
                    "model_img_s": bs / statistics.median(model_t),
                    "e2e_ms_median": 1e3 * statistics.median(e2e_t) / bs,
                    "e2e_ms_p90": 1e3 * _percentile(e2e_t, 90) / bs,
                    "e2e_img_s": bs / statistics.median(e2e_t),
                    "stream_img_s": len(stream) / stream_s,
                    "series_slices": series_n,
                    "series_img_s": series_rate,
                }
            )
    return rows


def _run_isolated(case: dict[str, Any]) -> list[dict[str, Any]]:
    """Run :func:`measure_case` in a fresh interpreter (see the module docstring)."""
    proc = subprocess.run(
        [sys.executable, "-m", "covidct.inference.bench", json.dumps(case)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{") or ln.startswith("[")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        if proc.returncode == 2:  # a user error inside the case (e.g. unknown model)
            raise CovidCTError(tail[0].removeprefix("error: "))
        raise RuntimeError(f"benchmark case {case['model_name']}/{case['backend']} failed: {tail[0]}")
    return json.loads(lines[-1])


def run_bench(
    cfg: BenchConfig,
    out: str | os.PathLike[str] | None = None,
    *,
    isolate: bool = True,
    on_case: Callable[[str, str], None] | None = None,
) -> BenchResult:
    """Benchmark every (model, backend); write ``bench.csv``, ``bench.md`` and ``env.json`` into ``out``."""
    for name in cfg.models:
        get_spec(name)  # unknown names fail before any timing
    rows: list[dict[str, Any]] = []
    for name in cfg.models:
        for backend in cfg.backends:
            if on_case is not None:
                on_case(name, backend)
            case: dict[str, Any] = dict(
                model_name=name,
                backend=backend,
                batch_sizes=list(cfg.batch_sizes),
                image_size=cfg.image_size,
                device=cfg.device,
                threads=cfg.threads,
                repeats=cfg.repeats,
                warmup=cfg.warmup,
                images=list(cfg.images),
                series=cfg.series,
            )
            rows.extend(_run_isolated(case) if isolate else measure_case(**case))
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    files: list[Path] = []
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / "bench.csv") as tmp:
            table.to_csv(tmp, index=False, float_format="%.4g")
        write_text_atomic(folder / "bench.md", to_markdown(table) + "\n")
        write_json_atomic(folder / "env.json", environment_record(config=asdict(cfg)))
        files = [folder / "bench.csv", folder / "bench.md", folder / "env.json"]
    return BenchResult(table=table, config=cfg, files=files)


def to_markdown(table: pd.DataFrame) -> str:
    """A Markdown table (ms per image, images per second)."""
    head = (
        "model",
        "backend",
        "precision",
        "batch",
        "size",
        "model ms/img (median / p90)",
        "model img/s",
        "end-to-end ms/img (median / p90)",
        "end-to-end img/s",
        "stream img/s",
        "series slices/s",
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    records: Iterable[Any] = table.itertuples(index=False)  # pandas-stubs type the fields loosely
    for r in records:
        lines.append(
            f"| {r.model} | {r.backend} | {r.precision} | {r.batch_size} | {r.image_size} | "
            f"{r.model_ms_median:.1f} / "
            f"{r.model_ms_p90:.1f} | {r.model_img_s:.1f} | {r.e2e_ms_median:.1f} / {r.e2e_ms_p90:.1f} | "
            f"{r.e2e_img_s:.1f} | {r.stream_img_s:.1f} | "
            + (f"{r.series_img_s:.1f} ({r.series_slices}) |" if r.series_slices else "- |")
        )
    return "\n".join(lines)


if __name__ == "__main__":  # one isolated case: python -m covidct.inference.bench '{"model_name": ...}'
    try:
        result = measure_case(**json.loads(sys.argv[1]))
    except CovidCTError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(2)
    sys.stdout.write(json.dumps(result) + "\n")
