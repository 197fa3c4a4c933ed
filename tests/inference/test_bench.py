"""Benchmark plumbing (timings themselves are not asserted: no wall-clock thresholds in tests)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from covidct.errors import ConfigError, UnknownModelError
from covidct.inference.bench import COLUMNS, BenchConfig, generate_images, run_bench, to_markdown


def test_bench_in_process_all_backends(tmp_path: Path) -> None:
    images = generate_images(tmp_path, 2, size=48)
    cfg = BenchConfig(
        models=("resnet10t",),
        backends=("torch", "onnx", "openvino:fp32", "eager"),
        batch_sizes=(1, 2),
        repeats=2,
        warmup=0,
        image_size=32,
        threads=1,
        images=tuple(images),
        series=str(tmp_path),
    )
    result = run_bench(cfg, tmp_path / "out", isolate=False)
    table = result.table
    assert list(table.columns) == list(COLUMNS) and len(table) == 8
    assert table[["backend", "precision", "batch_size"]].apply(tuple, axis=1).tolist() == [
        ("torch", "fp32", 1),
        ("torch", "fp32", 2),
        ("onnx", "fp32", 1),
        ("onnx", "fp32", 2),
        ("openvino", "fp32", 1),
        ("openvino", "fp32", 2),
        ("eager", "fp32", 1),
        ("eager", "fp32", 2),
    ]
    timing = [c for c in COLUMNS if c.endswith(("_median", "_p90", "_img_s"))]
    assert (table[timing] > 0).all().all()
    assert (table["series_slices"] == 2).all()  # the whole folder, end-to-end
    assert (table["model_ms_p90"] >= table["model_ms_median"]).all()
    saved = pd.read_csv(tmp_path / "out" / "bench.csv")
    assert len(saved) == 8 and (tmp_path / "out" / "env.json").is_file()
    assert to_markdown(table).count("\n") == 9  # header + rule + 8 rows


@pytest.mark.parametrize(
    "kwargs",
    [
        {"backends": ("tensorrt",)},
        {"backends": ("onnx:bf16",)},
        {"backends": ("openvino:int3",)},
        {"batch_sizes": (0,)},
        {"repeats": 0},
        {"models": ()},
        {"device": "tpu"},
        {"image_size": 4},
    ],
)
def test_bench_config_validation(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        BenchConfig(**kwargs)


def test_unknown_model_fails_before_timing(tmp_path: Path) -> None:
    with pytest.raises(UnknownModelError):
        run_bench(BenchConfig(models=("NoSuchNet",)), tmp_path, isolate=False)
    assert not (tmp_path / "bench.csv").exists()
