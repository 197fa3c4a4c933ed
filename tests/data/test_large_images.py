"""Huge uploads decode and resize without full-size copies (issue 11: a 64-Mpixel 16-bit PNG cost +787 MiB in
/explain): strip-wise conversion gives the whole-image result, box reduction before PIL stays faithful."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covidct.data import preprocess
from covidct.data.preprocess import box_reduce, resize_slice
from covidct.data.readers import load_slice, pil


def _save(tmp_path: Path, array: np.ndarray, name: str = "big.png", mode: str | None = None) -> Path:
    path = tmp_path / name
    (Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)).save(path)
    return path


def _gradient(h: int, w: int, dtype=np.uint16, top: int = 4000) -> np.ndarray:
    return (np.indices((h, w)).sum(axis=0) * top // (h + w)).astype(dtype)


@pytest.mark.parametrize(
    ("dtype", "mode", "normalization"),
    [
        (np.uint16, None, "minmax"),
        (np.uint16, None, "window"),
        (np.uint16, None, (100.0, 3000.0)),
        (np.uint8, None, "minmax"),
        (np.uint8, "RGB", "minmax"),
    ],
)
def test_strips_give_the_whole_image_result(tmp_path: Path, monkeypatch, dtype, mode, normalization) -> None:
    path = _save(tmp_path, _gradient(301, 257, dtype, 4000 if dtype == np.uint16 else 255), mode=mode)
    whole = load_slice(path, normalization=normalization)
    monkeypatch.setattr(pil, "STRIP_PIXELS", 1000)  # ~0.5 rows per strip -> one row at a time
    strips = load_slice(path, normalization=normalization)
    assert strips.dtype == np.float32 and strips.shape == (301, 257)
    np.testing.assert_array_equal(strips, whole)
    assert 0.0 <= strips.min() < strips.max() <= 1.0


def test_a_flat_huge_image_is_all_zeros(tmp_path: Path, monkeypatch) -> None:
    path = _save(tmp_path, np.full((64, 64), 1234, dtype=np.uint16))
    monkeypatch.setattr(pil, "STRIP_PIXELS", 100)
    out = load_slice(path)
    assert out.shape == (64, 64) and not out.any()


def test_a_16bit_png_decodes_without_full_size_copies(tmp_path: Path, monkeypatch) -> None:
    """numpy's allocations while decoding: the float32 result plus strips, not 3x the image (as before)."""
    path = _save(tmp_path, _gradient(2048, 2048))
    monkeypatch.setattr(pil, "STRIP_PIXELS", 1 << 20)
    result_bytes = 2048 * 2048 * 4
    tracemalloc.start()
    try:
        out = load_slice(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.nbytes == result_bytes
    assert peak < 1.5 * result_bytes, peak / result_bytes


def test_box_reduce_is_the_block_mean() -> None:
    image = np.arange(7 * 9, dtype=np.float32).reshape(7, 9)
    out = box_reduce(image, 3)
    assert out.shape == (2, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[1, 2], image[3:6, 6:9].mean())
    np.testing.assert_allclose(out, image[:6, :9].reshape(2, 3, 3, 3).mean(axis=(1, 3)))


def test_resizing_a_huge_slice_reduces_first_and_stays_faithful(monkeypatch) -> None:
    image = np.clip(np.indices((1200, 1000)).sum(axis=0) / 2200.0, 0, 1).astype(np.float32)
    image[300:600, 200:500] = 1.0  # an edge to keep
    direct = resize_slice(image, 64)
    monkeypatch.setattr(preprocess, "HUGE_PIXELS", 1000)
    reduced = resize_slice(image, 64)
    assert reduced.shape == (64, 64)
    diff = np.abs(reduced - direct)  # box then bilinear vs bilinear alone: the same picture, but for the
    assert diff.mean() < 0.005 and diff.max() < 0.1  # sharp edge moved by the dropped partial block (< 1 px)
    assert not np.array_equal(reduced, direct)  # the reduction did run
