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


# ------------------------------------------------------------------------------------------ shortcut audit
def test_lung_audit_on_hand_made_maps() -> None:
    from covidct.explain.scores import lung_audit

    lungs = np.zeros((20, 20), dtype=bool)
    lungs[5:15, 2:8] = True
    lungs[5:15, 12:18] = True
    inside = np.where(lungs, 1.0, 0.0)
    all_in = lung_audit(inside, lungs)
    assert all_in.lung_share == 1.0 and not all_in.outside
    assert all_in.lung_fraction == pytest.approx(120 / 400)
    uniform = lung_audit(np.full((20, 20), 0.7), lungs)
    assert uniform.lung_share == pytest.approx(uniform.lung_fraction) == pytest.approx(0.3)
    assert uniform.outside and uniform.ratio == pytest.approx(1.0)
    corner = np.zeros((20, 20))
    corner[0:3, 0:3] = 1.0  # burned-in text in the corner
    assert lung_audit(corner, lungs).lung_share == 0.0 and lung_audit(corner, lungs).outside
    half = np.where(lungs, 1.0, 0.0) + np.pad(np.ones((2, 10)) * 6, ((0, 18), (0, 10)))  # 120 in, 120 out
    assert lung_audit(half, lungs).lung_share == pytest.approx(0.5) and not lung_audit(half, lungs).outside
    assert lung_audit(np.zeros((20, 20)), lungs).outside  # an all-zero map points nowhere: flagged
    empty = lung_audit(inside, np.zeros((20, 20), dtype=bool))
    assert np.isnan(empty.lung_share) and empty.lung_fraction == 0.0
    with pytest.raises(ValueError):
        lung_audit(np.zeros((3, 3)), np.zeros((4, 4)))


def test_summarize_audit_per_class_and_all() -> None:
    from covidct.explain.scores import LungAudit, summarize_audit

    audits = [LungAudit(0.9, 0.3), LungAudit(0.2, 0.3), LungAudit(0.4, 0.2), LungAudit(float("nan"), 0.0)]
    rows = summarize_audit(audits, ["COVID-19", "COVID-19", "Healthy", "Healthy"])
    by = {r.group: r for r in rows}
    assert [r.group for r in rows] == ["COVID-19", "Healthy", "all"]
    assert by["COVID-19"].n == 2 and by["COVID-19"].lung_share == pytest.approx(0.55)
    assert by["COVID-19"].outside == pytest.approx(0.5) and by["COVID-19"].lung_fraction == pytest.approx(0.3)
    assert by["Healthy"].n == 1 and by["Healthy"].n_no_lungs == 1 and by["Healthy"].outside == 1.0
    assert by["all"].n == 3 and by["all"].outside == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        summarize_audit(audits, ["a"])
