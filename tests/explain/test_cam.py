"""compute_cams / cam_session: class specificity, batching, hooks and modes, no_grad, layers, saving."""

from __future__ import annotations

import gc
import json
import warnings

import numpy as np
import pytest
import torch

from covidct.data.preprocess import Preprocess
from covidct.errors import ConfigError
from covidct.explain.cam import cam_session, compute_cams, resolve_layer
from covidct.explain.methods import CAM_METHODS, METHOD_NAMES
from covidct.models.factory import create_model
from covidct.models.registry import get_spec, list_models

CLASSES = ("COVID-19", "Healthy", "Pneumonia")
PRE = Preprocess(image_size=64)  # layer4 is 2 x 2 here (1 x 1 at 32 px: a flat map)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("resnet10t", len(CLASSES), pretrained=False)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.random((40 + 4 * k, 56 - 2 * k)).astype(np.float32) for k in range(5)]


def hook_count(model: torch.nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules()
    )


def run(model, images, targets="predicted", **kw):  # type: ignore[no-untyped-def]
    kw.setdefault("preprocess", PRE)
    return compute_cams(model, get_spec("resnet10t"), images, targets, classes=CLASSES, **kw)


def test_methods_table_matches_names() -> None:
    assert tuple(CAM_METHODS) == METHOD_NAMES
    assert METHOD_NAMES[0] == "gradcam"


def test_maps_shapes_ranges_and_original_size(model, images) -> None:
    batch = run(model, images)
    assert len(batch) == len(images)
    for image, maps in zip(images, batch.maps, strict=True):
        assert maps.shape == (1, *image.shape)  # upsampled back to the slice's own size
        assert maps.min() >= 0.0 and maps.max() <= 1.0
    assert batch.net_maps.shape == (len(images), 1, 64, 64)
    np.testing.assert_allclose(batch.probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(batch.target_indices[:, 0], batch.predicted)
    assert batch.layer == "layer4" and batch.method == "gradcam"
    assert batch.versions["grad-cam"]


def test_class_specific(model, images) -> None:
    batch = run(model, images, "all")
    assert batch.net_maps.shape[1] == len(CLASSES)
    for i in range(len(images)):
        assert not np.allclose(batch.heatmap(i, "COVID-19"), batch.heatmap(i, "Pneumonia"), atol=1e-3)
    named = run(model, images, "pneumonia")  # case-insensitive class name
    np.testing.assert_allclose(named.net_maps[:, 0], batch.net_maps[:, 2], atol=1e-5)


def test_batched_equals_one_by_one(model, images) -> None:
    batched = run(model, images[:3], "all", batch_size=2)
    singles = [run(model, [image], "all", batch_size=1) for image in images[:3]]
    np.testing.assert_allclose(batched.net_maps, np.concatenate([s.net_maps for s in singles]), atol=1e-4)
    np.testing.assert_allclose(
        batched.probabilities, np.concatenate([s.probabilities for s in singles]), atol=1e-5
    )


def test_works_under_no_grad_and_with_frozen_weights(images) -> None:
    torch.manual_seed(1)
    frozen = create_model("resnet10t", 3, pretrained=False).requires_grad_(False)
    with torch.no_grad():
        batch = run(frozen, images[:2])
    assert all(m.max() > 0.99 for m in batch.maps)  # a real map, not the zero map of a missing gradient
    assert torch.is_grad_enabled()  # the outer no_grad ended; cam_session did not leak its enable_grad


def test_inference_mode_is_refused(model, images) -> None:
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        run(model, images[:1])


def test_hooks_modes_and_grads_restored_after_error(images) -> None:
    torch.manual_seed(2)
    net = create_model("resnet10t", 3, pretrained=False)
    net.train()
    net.layer1.eval()  # a mixed state must come back exactly
    modes = {name: m.training for name, m in net.named_modules()}
    marker = torch.full_like(net.fc.weight, 7.0)
    net.fc.weight.grad = marker
    before = hook_count(net)

    def boom(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")

    original = net.fc.forward
    net.fc.forward = boom
    try:
        with pytest.raises(RuntimeError, match="boom"):
            run(net, images[:2])
    finally:
        net.fc.forward = original
    assert hook_count(net) == before
    assert {name: m.training for name, m in net.named_modules()} == modes
    assert net.fc.weight.grad is marker
    assert net.layer4[0].conv1.weight.grad is None


def test_cam_session_releases_hooks_and_memory_does_not_grow(model, images) -> None:
    before = hook_count(model)
    with cam_session(model, "layer4") as cam:
        assert hook_count(model) > before
        assert cam.model is model
    assert hook_count(model) == before

    def tensors() -> int:
        gc.collect()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return sum(1 for obj in gc.get_objects() if isinstance(obj, torch.Tensor))

    for _ in range(3):
        run(model, images[:2])
    start = tensors()
    for _ in range(10):
        run(model, images[:2])
    assert tensors() <= start + 2
    assert hook_count(model) == before


def test_layer_by_name_and_clear_error(model, images) -> None:
    batch = compute_cams(model, "layer3", images[:1], preprocess=PRE)
    assert batch.layer == "layer3" and batch.maps[0].shape == (1, *images[0].shape)
    assert batch.classes == ("0", "1", "2")  # no names given
    with pytest.raises(ConfigError, match="layer1, layer2, layer3, layer4") as info:
        compute_cams(model, "layer9", images[:1], preprocess=PRE)
    assert "layer9" in str(info.value)
    with pytest.raises(ConfigError, match="2-D feature map"):
        compute_cams(model, "fc", images[:1], preprocess=PRE)


def test_bad_target_and_method(model, images) -> None:
    with pytest.raises(ConfigError, match="COVID-19"):
        run(model, images[:1], "Tuberculosis")
    with pytest.raises(ConfigError, match="gradcam"):
        run(model, images[:1], method="magiccam")


def test_auto_layer_from_feature_info(model) -> None:
    assert resolve_layer(model, None) == "layer4"


def test_every_registry_backbone_has_a_resolvable_cam_layer() -> None:
    import timm

    for spec in list_models():
        with torch.device("meta"):
            net = timm.create_model(spec.arch, pretrained=False, num_classes=3)
        assert resolve_layer(net, spec) == spec.cam_layer


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_every_method_runs(model, images, method: str) -> None:
    batch = compute_cams(model, "layer3", images[:1], method=method, preprocess=Preprocess(image_size=32))
    assert batch.maps[0].shape == (1, *images[0].shape)
    assert np.isfinite(batch.maps[0]).all() and batch.maps[0].max() <= 1.0


def test_save_writes_panels_npy_and_index(model, images, tmp_path) -> None:
    batch = run(model, images[:2], "all")
    index = batch.save(tmp_path / "out")
    data = json.loads(index.read_text())
    assert data["schema_version"] == 1 and data["method"] == "gradcam" and len(data["items"]) == 2
    item = data["items"][1]
    assert (tmp_path / "out" / item["panel"]).stat().st_size > 1000
    arrays = [np.load(tmp_path / "out" / m["npy"]) for m in item["maps"]]
    assert [m["class"] for m in item["maps"]] == list(CLASSES)
    assert all(a.shape == images[1].shape for a in arrays)
    np.testing.assert_allclose(arrays[2], batch.heatmap(1, "Pneumonia"))
    csv = (tmp_path / "out" / "index.csv").read_text().splitlines()
    assert csv[0].startswith("schema_version,") and len(csv) == 1 + 2 * len(CLASSES)


def test_save_failure_removes_partial_output(model, images, tmp_path, monkeypatch) -> None:
    from covidct.explain import render

    batch = run(model, images[:3])
    calls = {"n": 0}
    real = render.save_cam_panel

    def flaky(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(render, "save_cam_panel", flaky)
    with pytest.raises(OSError, match="disk full"):
        batch.save(tmp_path / "new")
    assert not (tmp_path / "new").exists()
    keep = tmp_path / "existing"
    keep.mkdir()
    (keep / "mine.txt").write_text("x")
    calls["n"] = 0
    with pytest.raises(OSError):
        batch.save(keep)
    assert sorted(p.name for p in keep.iterdir()) == ["mine.txt"]
