"""Lung crop and in-lung standardisation (issue 14): the box on phantoms, the fallback, the config checks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from covidct.data.crop import crop_box, lung_preprocess, standardize_in_mask
from covidct.data.dataset import SliceCache, SliceDataset
from covidct.data.preprocess import Preprocess
from covidct.errors import ConfigError


def _phantom_slices(phantoms, cls: str, n: int = 4):  # type: ignore[no-untyped-def]
    for path in sorted((phantoms.images_dir / cls).rglob("*.png"))[:n]:
        image = np.asarray(Image.open(path), dtype=np.float32) / 255.0
        lungs = np.asarray(Image.open(phantoms.lungs_for(path))) > 127
        yield image, lungs


@pytest.mark.parametrize("cls", ["Healthy", "COVID-19"])
def test_crop_box_contains_the_true_lungs_and_is_smaller(phantoms, cls: str) -> None:  # type: ignore[no-untyped-def]
    prep = Preprocess(image_size=32, crop="lungs")
    for image, lungs in _phantom_slices(phantoms, cls):
        r0, r1, c0, c1 = prep.box(image)
        rows, cols = np.flatnonzero(lungs.any(axis=1)), np.flatnonzero(lungs.any(axis=0))
        assert r0 <= rows[0] and r1 > rows[-1] and c0 <= cols[0] and c1 > cols[-1]
        assert (r1 - r0) * (c1 - c0) < 0.8 * image.size
        cropped, box, found = lung_preprocess(image, crop="lungs")
        assert found and box == (r0, r1, c0, c1) and cropped.shape == (r1 - r0, c1 - c0)


def test_crop_box_margin_is_clipped_to_the_slice() -> None:
    mask = np.zeros((40, 50), dtype=bool)
    mask[10:20, 30:48] = True
    assert crop_box(mask, 0.1) == (6, 24, 26, 50)
    assert crop_box(np.zeros((8, 8), dtype=bool)) is None


@pytest.mark.parametrize("image", [np.zeros((48, 48)), np.full((48, 48), 0.7)], ids=["black", "flat"])
def test_no_lungs_falls_back_to_the_whole_slice_and_says_so(image: np.ndarray) -> None:
    prep = Preprocess(image_size=32, crop="lungs", standardize="lungs")
    resized, found = prep.prepare_flagged(image.astype(np.float32))
    assert not found
    assert prep.box(image.astype(np.float32)) == (0, 48, 0, 48)
    np.testing.assert_allclose(resized, Preprocess(image_size=32).resize(image.astype(np.float32)))
    pixels, flags = prep.batch_flagged([image.astype(np.float32)])
    assert pixels.shape == (1, 3, 32, 32) and flags == [False]


def test_standardize_maps_in_lung_percentiles_to_0_and_1(phantoms) -> None:  # type: ignore[no-untyped-def]
    image, _ = next(_phantom_slices(phantoms, "Healthy"))
    out, _, found = lung_preprocess(image, standardize="lungs")
    assert found and out.shape == image.shape and out.min() >= 0.0 and out.max() <= 1.0
    from covidct.data.lungs import lung_mask_intensity

    mask = lung_mask_intensity(image)
    lo, hi = np.percentile(out[mask], (1, 99))
    assert lo == pytest.approx(0.0, abs=0.02) and hi == pytest.approx(1.0, abs=0.02)
    assert np.array_equal(standardize_in_mask(np.full((4, 4), 0.5), None), np.full((4, 4), 0.5))


def test_defaults_are_unchanged_and_old_meta_means_no_crop(phantoms) -> None:  # type: ignore[no-untyped-def]
    image, _ = next(_phantom_slices(phantoms, "Healthy"))
    prep = Preprocess.from_meta({"image_size": 32, "mean": (0.5,) * 3, "std": (0.25,) * 3})  # pre-crop meta
    assert (prep.crop, prep.standardize, prep.uses_lungs) == ("none", "none", False)
    np.testing.assert_array_equal(prep.prepare(image), prep.resize(image))
    lungs = prep.record() | {"crop": "lungs"}
    cropped = Preprocess.from_meta(
        {"image_size": 32, "mean": (0.5,) * 3, "std": (0.25,) * 3, "preprocess": lungs}
    )
    assert cropped.crop == "lungs" and not np.allclose(cropped(image), prep(image))


def test_bad_options_are_config_errors() -> None:
    from covidct.training.config import TrainConfig

    with pytest.raises(ConfigError, match="crop must be one of none, lungs"):
        Preprocess(image_size=32, crop="body")
    with pytest.raises(ConfigError, match="standardize"):
        Preprocess(image_size=32, standardize="zscore")
    with pytest.raises(ConfigError, match="crop_margin"):
        Preprocess(image_size=32, crop_margin=0.9)
    with pytest.raises(ConfigError, match="crop must be one of"):
        TrainConfig(crop="lung")
    assert TrainConfig(crop="lungs", standardize="lungs").crop == "lungs"


def test_cache_holds_cropped_slices_and_refuses_other_options(phantoms) -> None:  # type: ignore[no-untyped-def]
    from covidct.data.manifest import scan_dataset

    samples = scan_dataset(phantoms.images_dir).samples[:4]
    prep = Preprocess(image_size=32, crop="lungs")
    with _no_warning():
        cache = SliceCache([s.path for s in samples], 32, preprocess=prep)
    assert cache.no_lungs == [] and cache.lung_options["crop"] == "lungs"
    from covidct.data.readers import load_slice

    expected = prep.prepare(load_slice(samples[0].path))
    np.testing.assert_allclose(cache.get(samples[0].path), expected, atol=1e-3)
    classes = sorted({s.label for s in samples})
    SliceDataset(samples, classes, prep, cache=cache)
    with pytest.raises(ValueError, match="lung options"):
        SliceDataset(samples, classes, Preprocess(image_size=32), cache=cache)


def _no_warning():  # type: ignore[no-untyped-def]
    import contextlib
    import warnings

    @contextlib.contextmanager
    def guard():  # type: ignore[no-untyped-def]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            yield

    return guard()


def test_cache_counts_and_warns_slices_without_lungs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from covidct.errors import CovidCTWarning

    path = tmp_path / "blank.png"
    Image.fromarray(np.zeros((40, 40), dtype=np.uint8)).save(path)
    with pytest.warns(CovidCTWarning, match="1 of 1 slice"):
        cache = SliceCache([str(path)], 32, preprocess=Preprocess(image_size=32, crop="lungs"))
    assert cache.no_lungs == [str(path)] and cache.ok.all()


def test_runs_saved_before_the_lung_options_still_resume() -> None:
    from covidct.config import config_to_dict
    from covidct.training.config import TrainConfig
    from covidct.training.fit import _resumable

    new = config_to_dict(TrainConfig(epochs=2))
    old = {k: v for k, v in new.items() if k not in ("crop", "standardize")}
    assert _resumable(old) == _resumable(new)
    assert _resumable(old) != _resumable(config_to_dict(TrainConfig(epochs=2, crop="lungs")))


def test_cv_caches_per_lung_option(phantoms, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from covidct.training.config import CVConfig
    from covidct.training.cv import plan_cv

    cfg = CVConfig(data=str(phantoms.images_dir), model="resnet10t", out=str(tmp_path), folds=2, repeats=1)
    plan = plan_cv(cfg, write=False)
    cropped = plan.cache_for(32, "lung", crop="lungs")
    assert cropped.lung_options["crop"] == "lungs" and cropped.ok.all()
    assert plan.cache_for(32, "lung", crop="lungs") is cropped
    assert plan.cache_for(32, "lung").lung_options["crop"] == "none"
