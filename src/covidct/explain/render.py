"""Figures for explanations; the only matplotlib user in ``explain/`` (Agg backend, atomic PNG writes)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from covidct.data.preprocess import pil_float  # noqa: E402
from covidct.utils import atomic_path  # noqa: E402

CMAP = "jet"
OVERLAY_ALPHA = 0.45
DISPLAY_MAX = 640  # panels are ~320 px wide: slices and maps are shrunk to this before drawing (issue 11)


def display_size(array: np.ndarray, max_side: int = DISPLAY_MAX) -> np.ndarray:
    """A 2-D array in float32, shrunk (bilinear, antialiased) so its longer side is at most ``max_side``.

    matplotlib would otherwise resample a huge slice at full size in float64 (gigabytes for 9000 x 9000)."""
    from PIL import Image

    array = np.asarray(array, dtype=np.float32)
    h, w = array.shape
    if max(h, w) <= max_side:
        return array
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    pil = pil_float(array, size)
    return np.asarray(pil.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0), dtype=np.float32)


def _save(fig: plt.Figure, path: str | Path, dpi: int = 100) -> Path:
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def save_cam_panel(
    path: str | Path,
    image: np.ndarray,
    overlays: Sequence[tuple[str, np.ndarray]],
    *,
    title: str = "",
    caption: str = "",
    flag: str = "",
    contour: np.ndarray | None = None,
) -> Path:
    """The slice, then one heatmap overlay per ``(label, map)``; maps are in [0, 1] at the slice's size.
    ``contour`` (a mask, e.g. the lungs) is outlined on the overlays; ``flag`` is a warning shown in red.
    Slice, maps and contour are drawn at display size (see :func:`display_size`)."""
    image = display_size(image)
    overlays = [(label, display_size(heat)) for label, heat in overlays]
    if contour is not None:
        contour = display_size(np.asarray(contour, dtype=np.float32)) > 0.5
    n = 1 + len(overlays)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.6), squeeze=False)
    axes = axes[0]
    axes[0].imshow(image, cmap="gray", vmin=0.0, vmax=1.0)
    axes[0].set_title("slice", fontsize=9)
    for ax, (label, heat) in zip(axes[1:], overlays, strict=True):
        ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0)
        shown = ax.imshow(heat, cmap=CMAP, vmin=0.0, vmax=1.0, alpha=OVERLAY_ALPHA)
        ax.set_title(label, fontsize=9)
        if contour is not None and contour.any():
            ax.contour(contour.astype(np.float32), levels=[0.5], colors="white", linewidths=0.6)
    for ax in axes:
        ax.axis("off")
    if overlays:
        fig.colorbar(shown, ax=list(axes[1:]), fraction=0.046, pad=0.02)
    if title:
        fig.suptitle(title, fontsize=10)
    if caption:
        fig.text(0.01, 0.01, caption[-90:], fontsize=6, color="gray")
    if flag:
        fig.text(0.01, 0.05, f"! {flag}", fontsize=8, color="red", fontweight="bold")
    return _save(fig, path)


def save_activation_grid(
    path: str | Path, maps: np.ndarray, channels: Sequence[int], *, title: str = "", cols: int = 4
) -> Path:
    """A grid of ``(K, h, w)`` channel maps, each labelled with its channel index."""
    k = len(maps)
    cols = max(1, min(cols, k))
    rows = int(np.ceil(k / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.3 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, fmap, channel in zip(axes.ravel()[:k], maps, channels, strict=True):
        ax.imshow(fmap, cmap="viridis")
        ax.set_title(f"ch {channel}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def save_activation_overview(
    path: str | Path,
    image: np.ndarray,
    stages: Sequence[tuple[str, np.ndarray, np.ndarray]],
    *,
    title: str = "",
) -> Path:
    """One row per figure: the slice, then per stage ``(name, mean map, top channel map)`` as two rows."""
    n = 1 + len(stages)
    fig, axes = plt.subplots(2, n, figsize=(2.4 * n, 5.0), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    axes[0, 0].imshow(display_size(image), cmap="gray", vmin=0.0, vmax=1.0)
    axes[0, 0].set_title("slice", fontsize=8)
    for col, (name, mean_map, top_map) in enumerate(stages, start=1):
        axes[0, col].imshow(mean_map, cmap="viridis")
        axes[0, col].set_title(f"{name}\nmean", fontsize=7)
        axes[1, col].imshow(top_map, cmap="viridis")
        axes[1, col].set_title("most active channel", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)
