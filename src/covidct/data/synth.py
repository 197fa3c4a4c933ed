"""Synthetic chest CT phantoms: the built-in data for the demo and the tests (issue #2).

Each slice is built in Hounsfield units and shown through the lung window (W1500/L-600), like a real CT slice:
air outside a body ellipse (fat rim, soft tissue), two dark lungs with vessels (small bright blobs) and
airways (dark lumen, bright wall), a vertebra, the scanner table and noise. Lesions by class:

- ``COVID-19``: bilateral, peripheral (subpleural) ground-glass opacities: several faint, hazy patches
  (+400..+600 HU over lung, i.e. about -460..-260 HU) touching the pleura in both lungs;
- ``Pneumonia``: dense lobar consolidation (close to soft tissue), usually in one lung, larger and brighter;
- ``Healthy``: none.

Size, position and contrast vary by patient and slice so the task is learnable but not trivial. Images go to
``out/images/<class>/<patient>/<k>.png``, lesion masks (255 = lesion) to ``out/masks/...`` and the true lung
masks (255 = lung, lesions and vessels included) to ``out/lungs/...`` (same names).
Deterministic: a patient's slices depend only on (seed, class, patient index). numpy + scipy.ndimage only.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from covidct.data.manifest import DEFAULT_ALIASES, canonical_label
from covidct.data.window import apply_window
from covidct.errors import ConfigError

LESION_KIND = {"COVID-19": "ggo", "Healthy": None, "Pneumonia": "consolidation"}
HU_AIR, HU_FAT, HU_TISSUE, HU_LUNG, HU_BONE = -1000.0, -100.0, 40.0, -860.0, 600.0


@dataclass(frozen=True)
class SynthDataset:
    """Where :func:`synthesize_dataset` wrote its images and masks."""

    images_dir: Path
    masks_dir: Path
    classes: tuple[str, ...] = ()
    n_images: int = 0
    lungs_dir: Path | None = None

    def mask_for(self, image: str | os.PathLike[str]) -> Path:
        """The lesion mask that belongs to an image of this dataset."""
        return self.masks_dir / Path(image).resolve().relative_to(self.images_dir.resolve())

    def lungs_for(self, image: str | os.PathLike[str]) -> Path:
        """The true lung mask that belongs to an image of this dataset."""
        root = self.lungs_dir if self.lungs_dir is not None else self.images_dir.parent / "lungs"
        return root / Path(image).resolve().relative_to(self.images_dir.resolve())


@dataclass(frozen=True)
class _Anatomy:
    """One patient's body and lungs (normalised coordinates: x right of image, y down = posterior)."""

    body: tuple[float, float, float]  # centre y, semi-axis x, semi-axis y
    lungs: tuple[tuple[float, float, float, float], ...]  # (cx, cy, rx, ry), image-left lung first
    severity: float  # lesion contrast / extent factor in [0, 1]
    side: int  # consolidation side (0 or 1)
    bilateral: bool


def _patient_rng(seed: int, label: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(label.encode()), index])


def _anatomy(rng: np.random.Generator) -> _Anatomy:
    cy = rng.uniform(-0.06, 0.02)
    lungs = []
    for sign in (-1.0, 1.0):
        shrink = 0.9 if sign > 0 else 1.0  # the heart takes room from the patient's left lung
        lungs.append(
            (
                sign * rng.uniform(0.33, 0.39),
                cy + rng.uniform(-0.03, 0.03),
                rng.uniform(0.24, 0.30) * shrink,
                rng.uniform(0.36, 0.44),
            )
        )
    body = (rng.uniform(0.0, 0.06), rng.uniform(0.80, 0.90), rng.uniform(0.56, 0.66))
    return _Anatomy(
        body, tuple(lungs), float(rng.uniform(0, 1)), int(rng.integers(2)), bool(rng.random() < 0.2)
    )


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2


def _blobs(shape: tuple[int, int], points: np.ndarray, amplitude: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blobs of peak ``amplitude`` at pixel ``points`` (N, 2) via one filtered impulse image."""
    impulses = np.zeros(shape, dtype=np.float32)
    rows = np.clip(points[:, 0].astype(int), 0, shape[0] - 1)
    cols = np.clip(points[:, 1].astype(int), 0, shape[1] - 1)
    np.add.at(impulses, (rows, cols), amplitude * 2 * np.pi * sigma**2)
    return gaussian_filter(impulses, sigma)


def _sample_in(mask: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return np.zeros((0, 2))
    pick = rng.integers(0, rows.size, size=n)
    return np.stack([rows[pick], cols[pick]], axis=1).astype(float)


def synthesize_slice(
    rng: np.random.Generator, size: int, kind: str | None, anatomy: _Anatomy, t: float
) -> tuple[np.ndarray, np.ndarray]:
    """One slice at relative height ``t`` in [0, 1]: (image float32 [0, 1], lung window; lesion mask bool)."""
    image, mask, _ = _synthesize(rng, size, kind, anatomy, t)
    return image, mask


def _synthesize(
    rng: np.random.Generator, size: int, kind: str | None, anatomy: _Anatomy, t: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, lesion mask, lung mask) of one slice."""
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    y, x = np.meshgrid(coords, coords, indexing="ij")
    px = size / 2.0  # pixels per normalised unit
    bcy, bax, bay = anatomy.body
    hu = np.full((size, size), HU_AIR, dtype=np.float32)
    body = _ellipse(x, y, 0.0, bcy, bax, bay) <= 1
    hu[body] = HU_FAT
    hu[_ellipse(x, y, 0.0, bcy, bax * 0.9, bay * 0.87) <= 1] = HU_TISSUE
    table = np.abs(y - (bcy + bay + 0.09)) < max(1.5 / size, 0.012)
    hu[table & (np.abs(x) < 0.95)] = 200.0
    hu[_ellipse(x, y, 0.0, bcy + bay * 0.68, 0.1, 0.09) <= 1] = HU_BONE  # vertebral body

    scale = 0.7 + 0.3 * np.sin(np.pi * (0.15 + 0.7 * t))  # lungs are largest mid-chest
    lungs = []
    for cx, cy, rx, ry in anatomy.lungs:
        wobble = 1 + 0.05 * np.sin(3 * np.arctan2(y - cy, x - cx) + rng.uniform(0, 2 * np.pi))
        lungs.append(_ellipse(x, y, cx, cy, rx * scale * wobble, ry * scale * wobble) <= 1)
    lung = lungs[0] | lungs[1]
    hu[lung] = HU_LUNG + rng.normal(0, 12, size=int(lung.sum()))

    # vessels: bright blobs of two calibres; airways: dark lumen with a bright wall near the hila
    pts = _sample_in(lung, int(rng.integers(30, 50)), rng)
    hu += _blobs(hu.shape, pts, rng.uniform(500, 900, len(pts)).astype(np.float32), 0.8 * size / 128) * lung
    pts = _sample_in(lung & (np.abs(x) < 0.4), int(rng.integers(4, 9)), rng)
    hu += _blobs(hu.shape, pts, rng.uniform(300, 600, len(pts)).astype(np.float32), 1.6 * size / 128) * lung
    for cx, cy, _, _ in anatomy.lungs:
        for _ in range(int(rng.integers(1, 4))):
            ay, ax = cy + rng.uniform(-0.12, 0.12), cx * rng.uniform(0.45, 0.7)
            r = rng.uniform(0.02, 0.035)
            d = _ellipse(x, y, ax, ay, r, r)
            hu[(d <= 1.7) & lung] = 100.0
            hu[(d <= 1.0) & lung] = HU_AIR

    lesion_hu, mask = _lesions(rng, x, y, lungs, kind, anatomy, px)
    hu += lesion_hu
    hu += gaussian_filter(rng.normal(0, 1, hu.shape).astype(np.float32), 0.7) * 30 + rng.normal(
        0, 12, hu.shape
    )
    return apply_window(hu, "lung"), mask, lung


def _lesions(
    rng: np.random.Generator,
    x: np.ndarray,
    y: np.ndarray,
    lungs: list[np.ndarray],
    kind: str | None,
    anatomy: _Anatomy,
    px: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Additive HU of the lesions (limited to the lungs) and their mask."""
    extra = np.zeros(x.shape, dtype=np.float32)
    mask = np.zeros(x.shape, dtype=bool)
    if kind is None:
        return extra, mask
    sev = anatomy.severity
    if kind == "ggo":
        for side, lung in enumerate(lungs):
            if not lung.any() or (side == 1 and rng.random() < 0.12):  # occasionally one lung on this slice
                continue
            rows, cols = np.nonzero(lung)
            cx, cy = cols.mean() / px - 1, rows.mean() / px - 1
            for _ in range(int(rng.integers(2, 4 + int(2 * sev)))):
                lateral = -1.0 if side == 0 else 1.0
                angle = rng.uniform(-0.5 * np.pi, 0.6 * np.pi)  # lateral and posterior arc (peripheral)
                dx, dy = lateral * np.cos(angle), np.sin(angle)
                inside = lung & (((x - cx) * dx + (y - cy) * dy) > 0)
                dist = (x - cx) * dx + (y - cy) * dy
                edge = float(dist[inside].max()) if inside.any() else 0.1
                r = rng.uniform(0.12, 0.18 + 0.08 * sev)
                centre_x, centre_y = cx + dx * (edge - 0.3 * r), cy + dy * (edge - 0.3 * r)
                blob = np.exp(-_ellipse(x, y, centre_x, centre_y, r * rng.uniform(0.8, 1.4), r) * 1.5)
                haze = 1 + 0.35 * gaussian_filter(rng.normal(0, 1, x.shape).astype(np.float32), px * r * 0.4)
                amp = rng.uniform(400, 480 + 120 * sev)
                field = blob * np.clip(haze, 0.3, 1.7) * lung
                extra += (amp * field).astype(np.float32)
                mask |= field > 0.4
    elif kind == "consolidation":
        sides = [anatomy.side] + ([1 - anatomy.side] if anatomy.bilateral else [])
        for n, side in enumerate(sides):
            lung = lungs[side]
            if not lung.any():
                continue
            rows, cols = np.nonzero(lung)
            cx, cy = cols.mean() / px - 1, rows.mean() / px - 1
            angle = rng.uniform(0.15, 0.85) * np.pi  # lobe boundary facing posterior (dependent lobes)
            dx, dy = np.cos(angle), np.sin(angle)
            offset = rng.uniform(-0.1, 0.12) - 0.08 * sev + (0.1 if n else 0.0)
            wave = 0.04 * np.sin(x * rng.uniform(8, 14) + rng.uniform(0, 6)) + 0.03 * np.sin(
                y * rng.uniform(9, 15)
            )
            region = gaussian_filter(
                (((x - cx) * dx + (y - cy) * dy + wave) > offset).astype(np.float32), px * 0.03
            )
            field = region * lung
            amp = rng.uniform(700, 880)
            extra += (amp * field).astype(np.float32)
            mask |= field > 0.5
            # air bronchograms: a few dark branches inside the consolidation
            for _ in range(int(rng.integers(0, 3))):
                pts = _sample_in(field > 0.9, 1, rng)
                if len(pts):
                    by, bx = pts[0] / px - 1
                    tube = (np.abs((x - bx) * dy - (y - by) * dx) < 0.012) & (
                        np.abs((x - bx) * dx + (y - by) * dy) < 0.12
                    )
                    extra[tube & (field > 0.9)] -= amp * 0.8
    else:
        raise ConfigError(f"unknown lesion kind {kind!r}")
    return extra, mask


def synthesize_dataset(
    out: str | os.PathLike[str],
    *,
    patients_per_class: int = 4,
    slices_per_patient: int = 4,
    size: int = 128,
    seed: int = 0,
    classes: tuple[str, ...] = ("COVID-19", "Healthy", "Pneumonia"),
) -> SynthDataset:
    """Write ``out/images/<class>/<patient>/<k>.png`` and matching ``out/masks/...`` (lesions) and
    ``out/lungs/...`` (lungs); see the module doc."""
    from PIL import Image

    if patients_per_class < 1 or slices_per_patient < 1:
        raise ConfigError("patients_per_class and slices_per_patient must be >= 1")
    if not 32 <= size <= 2048:
        raise ConfigError(f"size must be in [32, 2048], got {size}")
    kinds = {}
    for label in classes:
        canonical = canonical_label(label, DEFAULT_ALIASES)
        if canonical not in LESION_KIND:
            raise ConfigError(f"cannot synthesize class {label!r}: known classes are {list(LESION_KIND)}")
        kinds[label] = LESION_KIND[canonical]
    root = Path(out)
    images_dir, masks_dir, lungs_dir = root / "images", root / "masks", root / "lungs"
    count = 0
    for label in classes:
        for p in range(patients_per_class):
            rng = _patient_rng(seed, label, p)
            anatomy = _anatomy(rng)
            patient = f"p{p + 1:03d}"
            for k in range(slices_per_patient):
                t = (k + 0.5) / slices_per_patient
                image, mask, lung = _synthesize(rng, size, kinds[label], anatomy, t)
                written = (
                    (images_dir, np.rint(image * 255)),
                    (masks_dir, mask * 255),
                    (lungs_dir, lung * 255),
                )
                for folder, arr in written:
                    target = folder / label / patient / f"{k + 1}.png"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(arr.astype(np.uint8), "L").save(target)
                count += 1
    return SynthDataset(images_dir, masks_dir, tuple(classes), count, lungs_dir)
