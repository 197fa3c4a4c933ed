"""Measured, not eyeballed: localisation and faithfulness scores for CAMs (pure numpy, no torch).

Localisation (slices with a lesion mask): the pointing game (Zhang et al. 2016: is the map's maximum inside
the lesion?) and the share of the map's energy inside the mask, each against a random-map baseline (smooth
random fields at CAM resolution, upsampled like a CAM). Faithfulness (no mask needed): the drop in the target
class's probability when the top ``fraction`` most relevant pixels are removed, compared with removing the
same number of pixels chosen by a random map (a positive gap means the map points at pixels the model relies
on). The model is passed in as ``predict(batch (N, 3, S, S)) -> probabilities (N, C)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage


def pointing_game(cam: np.ndarray, mask: np.ndarray, *, tolerance: int = 0) -> bool:
    """True when the map's maximum lies inside ``mask`` (dilated by ``tolerance`` pixels)."""
    cam, mask = _check(cam, mask)
    if tolerance > 0:
        mask = ndimage.binary_dilation(mask, iterations=tolerance)
    peak = np.unravel_index(int(np.argmax(cam)), cam.shape)
    return bool(mask[peak])


def energy_inside(cam: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's total (non-negative) energy inside ``mask``; 0 for an all-zero map."""
    cam, mask = _check(cam, mask)
    cam = np.clip(cam, 0.0, None)
    total = float(cam.sum())
    return float(cam[mask].sum() / total) if total > 0 else 0.0


def random_cam(shape: tuple[int, int], rng: np.random.Generator, *, grid: int = 7) -> np.ndarray:
    """A smooth random map (like a CAM): ``grid`` x ``grid`` uniform noise, upsampled bilinearly."""
    coarse = rng.random((grid, grid))
    zoomed = ndimage.zoom(coarse, (shape[0] / grid, shape[1] / grid), order=1, mode="nearest")
    out = np.zeros(shape, dtype=np.float32)
    h, w = min(shape[0], zoomed.shape[0]), min(shape[1], zoomed.shape[1])
    out[:h, :w] = zoomed[:h, :w]
    return out


@dataclass(frozen=True)
class LocalizationScores:
    """Mean scores over ``n`` slices with a non-empty mask (``n_empty`` slices had none and are left out)."""

    n: int
    pointing_game: float
    energy_inside: float
    random_pointing_game: float
    random_energy_inside: float
    n_empty: int = 0


def localization_scores(
    cams: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    *,
    draws: int = 20,
    seed: int = 0,
    tolerance: int = 0,
) -> LocalizationScores:
    """Pointing game and mask energy of ``cams`` and of ``draws`` random maps per slice (the baseline)."""
    if len(cams) != len(masks):
        raise ValueError(f"{len(cams)} maps but {len(masks)} masks")
    rng = np.random.default_rng(seed)
    hits, energy, rand_hits, rand_energy = [], [], [], []
    n_empty = 0
    for cam, mask in zip(cams, masks, strict=True):
        cam, mask = _check(cam, mask)
        if not mask.any():
            n_empty += 1
            continue
        hits.append(pointing_game(cam, mask, tolerance=tolerance))
        energy.append(energy_inside(cam, mask))
        randoms = [random_cam(cam.shape, rng) for _ in range(draws)]
        rand_hits.append(np.mean([pointing_game(r, mask, tolerance=tolerance) for r in randoms]))
        rand_energy.append(np.mean([energy_inside(r, mask) for r in randoms]))
    n = len(hits)
    return LocalizationScores(
        n=n,
        pointing_game=_mean(hits),
        energy_inside=_mean(energy),
        random_pointing_game=_mean(rand_hits),
        random_energy_inside=_mean(rand_energy),
        n_empty=n_empty,
    )


def _mean(values: Sequence[float] | Sequence[np.floating]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def remove_top_fraction(batch: np.ndarray, cams: np.ndarray, fraction: float) -> np.ndarray:
    """Copy of ``batch`` (N, C, S, S) with each image's top ``fraction`` pixels of its (N, S, S) map replaced
    by the image's per-channel mean (ties broken by position)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    out = batch.copy()
    n, _, h, w = batch.shape
    k = max(1, int(round(fraction * h * w)))
    for i in range(n):
        order = np.argsort(-cams[i].ravel(), kind="stable")[:k]
        removed = np.zeros(h * w, dtype=bool)
        removed[order] = True
        removed = removed.reshape(h, w)
        fill = batch[i].reshape(batch.shape[1], -1).mean(axis=1)
        out[i][:, removed] = fill[:, None]
    return out


@dataclass(frozen=True)
class FaithfulnessScores:
    """Mean drop of the target probability after removing the top ``fraction`` pixels (CAM vs random map)."""

    n: int
    fraction: float
    drop: float
    random_drop: float

    @property
    def gap(self) -> float:
        return self.drop - self.random_drop


def confidence_drop(
    predict: Callable[[np.ndarray], np.ndarray],
    batch: np.ndarray,
    cams: np.ndarray,
    targets: np.ndarray,
    *,
    fraction: float = 0.2,
    seed: int = 0,
) -> FaithfulnessScores:
    """Faithfulness of ``cams`` (N, S, S) for ``targets`` (N,) on the preprocessed ``batch`` (N, C, S, S)."""
    rng = np.random.default_rng(seed)
    idx = np.arange(len(batch))
    base = predict(batch)[idx, targets]
    by_cam = predict(remove_top_fraction(batch, cams, fraction))[idx, targets]
    randoms = np.stack([random_cam(cams.shape[1:], rng) for _ in range(len(batch))])
    by_random = predict(remove_top_fraction(batch, randoms, fraction))[idx, targets]
    return FaithfulnessScores(
        n=len(batch),
        fraction=fraction,
        drop=float(np.mean(base - by_cam)),
        random_drop=float(np.mean(base - by_random)),
    )


def _check(cam: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cam = np.asarray(cam, dtype=np.float64)
    mask = np.asarray(mask) > 0
    if cam.shape != mask.shape:
        raise ValueError(f"map shape {cam.shape} != mask shape {mask.shape}")
    return cam, mask


# --------------------------------------------------------------------------------------------- shortcut audit
OUTSIDE_BELOW = 0.5  # a slice is flagged when less than half of its map's energy lies inside the lungs


@dataclass(frozen=True)
class LungAudit:
    """One map vs one lung mask: the map's in-lung energy share and a random map's (the lung fraction)."""

    lung_share: float
    lung_fraction: float

    @property
    def outside(self) -> bool:
        """Most of the map lies outside the lungs."""
        return self.lung_share < OUTSIDE_BELOW

    @property
    def ratio(self) -> float:
        """How many times more in-lung energy than a random map (1 = no better than chance)."""
        return self.lung_share / self.lung_fraction if self.lung_fraction > 0 else float("nan")


def lung_audit(cam: np.ndarray, lungs: np.ndarray) -> LungAudit:
    """The share of ``cam``'s energy inside ``lungs`` and the lungs' share of the image: the expected share
    of a map spread uniformly at random, so ``lung_share`` near ``lung_fraction``: the map ignores the lungs.
    An all-zero map counts as 0 inside (flagged); an empty lung mask gives NaN for both."""
    cam, lungs = _check(cam, lungs)
    if not lungs.any():
        return LungAudit(float("nan"), 0.0)
    return LungAudit(energy_inside(cam, lungs), float(lungs.mean()))


@dataclass(frozen=True)
class AuditSummary:
    """Audit of one group (a class, a model): means over the ``n`` slices with a lung mask."""

    group: str
    n: int
    lung_share: float
    lung_fraction: float
    outside: float  # share of slices where most of the map lies outside the lungs
    n_no_lungs: int = 0


def summarize_audit(audits: Sequence[LungAudit], groups: Sequence[str]) -> list[AuditSummary]:
    """Per group (in first-seen order) and ``"all"`` last: mean in-lung share, mean lung fraction (baseline)
    and the share of flagged slices. Slices without lungs (NaN share) are counted apart."""
    if len(audits) != len(groups):
        raise ValueError(f"{len(audits)} audits but {len(groups)} groups")
    names = list(dict.fromkeys(groups))
    out = []
    for name in [*names, "all"]:
        chosen = [a for a, g in zip(audits, groups, strict=True) if name == "all" or g == name]
        valid = [a for a in chosen if not np.isnan(a.lung_share)]
        out.append(
            AuditSummary(
                group=name,
                n=len(valid),
                lung_share=_mean([a.lung_share for a in valid]),
                lung_fraction=_mean([a.lung_fraction for a in valid]),
                outside=_mean([float(a.outside) for a in valid]),
                n_no_lungs=len(chosen) - len(valid),
            )
        )
    return out
