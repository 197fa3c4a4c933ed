"""Panels of huge slices are drawn at display size, in float32 (issue 11: `covidct explain` on a 9000^2 PNG
used 6 GB because matplotlib resampled the full-size slice and maps in float64)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from PIL import Image

from covidct.explain import render


def test_cam_panel_of_a_large_slice_is_drawn_at_display_size(tmp_path: Path, monkeypatch) -> None:
    drawn = []
    original = Axes.imshow

    def spy(ax, data, *args, **kwargs):
        drawn.append((np.asarray(data).shape, np.asarray(data).dtype))
        return original(ax, data, *args, **kwargs)

    monkeypatch.setattr(Axes, "imshow", spy)
    image = np.random.default_rng(0).random((3000, 2000), dtype=np.float32)
    heat = np.linspace(0, 1, 3000 * 2000, dtype=np.float32).reshape(3000, 2000)
    path = render.save_cam_panel(tmp_path / "p.png", image, [("COVID-19", heat), ("Healthy", 1 - heat)])
    assert len(drawn) == 5
    assert {shape for shape, _ in drawn} == {(render.DISPLAY_MAX, round(2000 * render.DISPLAY_MAX / 3000))}
    assert {dtype for _, dtype in drawn} == {np.dtype(np.float32)}
    with Image.open(path) as panel:
        assert panel.width < 2000


def test_small_slices_are_drawn_as_they_are() -> None:
    image = np.zeros((64, 48), dtype=np.float64)
    shown = render.display_size(image)
    assert shown.shape == (64, 48) and shown.dtype == np.float32
