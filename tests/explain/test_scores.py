"""Pure localisation / faithfulness scores."""

from __future__ import annotations

import numpy as np
import pytest

from covidct.explain.scores import (
    confidence_drop,
    energy_inside,
    localization_scores,
    pointing_game,
    random_cam,
    remove_top_fraction,
)


def blob(shape: tuple[int, int], cy: int, cx: int, r: int) -> np.ndarray:
    y, x = np.mgrid[: shape[0], : shape[1]]
    return ((y - cy) ** 2 + (x - cx) ** 2 <= r * r).astype(np.float32)


def test_pointing_game_hit_miss_and_tolerance() -> None:
    mask = blob((40, 40), 10, 10, 3)
    cam = np.zeros((40, 40))
    cam[10, 11] = 1.0
    assert pointing_game(cam, mask)
    cam = np.zeros((40, 40))
    cam[10, 15] = 1.0  # 5 px from the centre, 2 px outside the disc
    assert not pointing_game(cam, mask)
    assert pointing_game(cam, mask, tolerance=2)
    with pytest.raises(ValueError, match="shape"):
        pointing_game(cam, mask[:-1])


def test_energy_inside() -> None:
    mask = np.zeros((10, 10))
    mask[:5] = 1
    cam = np.zeros((10, 10))
    cam[:5] = 3.0
    cam[5:] = 1.0
    assert energy_inside(cam, mask) == pytest.approx(0.75)
    assert energy_inside(np.zeros((10, 10)), mask) == 0.0


def test_random_cam_is_smooth_and_in_range() -> None:
    rng = np.random.default_rng(0)
    r = random_cam((50, 70), rng)
    assert r.shape == (50, 70) and 0.0 <= r.min() and r.max() <= 1.0
    assert np.abs(np.diff(r, axis=1)).max() < 0.2  # smooth, like an upsampled CAM


def test_localization_scores_good_map_beats_random() -> None:
    masks = [blob((48, 48), 12 + 3 * k, 30 - 2 * k, 5) for k in range(6)] + [np.zeros((48, 48))]
    cams = [
        blob((48, 48), 12 + 3 * k, 30 - 2 * k, 8) * (1 + blob((48, 48), 12 + 3 * k, 30 - 2 * k, 2))
        for k in range(6)
    ] + [np.ones((48, 48))]
    scores = localization_scores(cams, masks, draws=20, seed=0)
    assert scores.n == 6 and scores.n_empty == 1
    assert scores.pointing_game == 1.0
    assert scores.random_pointing_game < 0.3
    assert scores.energy_inside > 2 * scores.random_energy_inside
    bad = localization_scores([np.roll(c, 20, axis=0) for c in cams[:6]], masks[:6])
    assert bad.pointing_game == 0.0


def test_remove_top_fraction_replaces_the_most_relevant_pixels() -> None:
    batch = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    cams = np.zeros((2, 4, 4))
    cams[:, 0, 0] = 1.0
    cams[:, 3, 3] = 0.5
    out = remove_top_fraction(batch, cams, 2 / 16)
    changed = (out != batch).any(axis=1)
    assert changed.sum(axis=(1, 2)).tolist() == [2, 2]
    assert changed[:, 0, 0].all() and changed[:, 3, 3].all()
    np.testing.assert_allclose(out[0, :, 0, 0], batch[0].reshape(3, -1).mean(axis=1))
    with pytest.raises(ValueError):
        remove_top_fraction(batch, cams, 1.0)


def test_confidence_drop_rewards_maps_on_the_evidence() -> None:
    """A fake model whose class-0 probability is the mean of a 4 x 4 corner: a map on it removes it."""
    n, s = 4, 16
    batch = np.zeros((n, 3, s, s), dtype=np.float32)
    batch[:, :, :4, :4] = 1.0

    def predict(x: np.ndarray) -> np.ndarray:
        p = x[:, 0, :4, :4].mean(axis=(1, 2)).clip(0, 1)
        return np.stack([p, 1 - p], axis=1)

    good = np.zeros((n, s, s))
    good[:, :4, :4] = 1.0
    scores = confidence_drop(predict, batch, good, np.zeros(n, dtype=int), fraction=16 / 256)
    assert scores.drop > 0.9
    assert scores.random_drop < scores.drop
    assert scores.gap > 0.5
