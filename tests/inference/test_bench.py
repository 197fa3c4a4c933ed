"""Benchmark plumbing (timings themselves are not asserted: no wall-clock thresholds in tests)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from covidct.errors import ConfigError, UnknownModelError
from covidct.inference.bench import COLUMNS, BenchConfig, generate_images, run_bench, to_markdown


def test_bench_in_process_all_backends(tmp_path: Path) -> None:
    images = generate_images(tmp_path, 2, size=48)
    cfg = BenchConfig(models=("resnet10t",), backends=("torch", "onnx", "eager"), batch_sizes=(1, 2), repeats=2,
                      warmup=0, image_size=32, threads=1, images=tuple(images))
    result = run_bench(cfg, tmp_path / "out", isolate=False)
    table = result.table
    assert list(table.columns) == list(COLUMNS) and len(table) == 6
    assert table[["backend", "batch_size"]].apply(tuple, axis=1).tolist() == [
        ("torch", 1), ("torch", 2), ("onnx", 1), ("onnx", 2), ("eager", 1), ("eager", 2)]
    timing = [c for c in COLUMNS if c.endswith(("_median", "_p90", "_img_s"))]
    assert (table[timing] > 0).all().all()
    assert (table["model_ms_p90"] >= table["model_ms_median"]).all()
    saved = pd.read_csv(tmp_path / "out" / "bench.csv")
    assert len(saved) == 6 and (tmp_path / "out" / "env.json").is_file()
    assert to_markdown(table).count("\n") == 7  # header + rule + 6 rows


@pytest.mark.parametrize("kwargs", [
    {"backends": ("tensorrt",)}, {"batch_sizes": (0,)}, {"repeats": 0}, {"models": ()}, {"device": "tpu"},
    {"image_size": 4},
])
def test_bench_config_validation(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        BenchConfig(**kwargs)


def test_unknown_model_fails_before_timing(tmp_path: Path) -> None:
    with pytest.raises(UnknownModelError):
        run_bench(BenchConfig(models=("NoSuchNet",)), tmp_path, isolate=False)
    assert not (tmp_path / "bench.csv").exists()
