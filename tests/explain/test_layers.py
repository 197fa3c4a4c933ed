"""The default CAM layer: the registry's layer while its map is >= 7x7, else the deepest stage that is."""

from __future__ import annotations

import math

import pytest

from covidct.explain.layers import MIN_MAP_SIZE, choose_from_sizes

STAGES = [("layer1", (24, 24)), ("layer2", (12, 12)), ("layer3", (6, 6))]


def test_rule_keeps_a_large_enough_preferred_layer() -> None:
    choice = choose_from_sizes(STAGES, ("layer4", (7, 7)), 224)
    assert choice.layer == "layer4" and choice.map_size == (7, 7)
    assert "7x7 map at 224 px" in choice.describe()


def test_rule_steps_back_to_the_deepest_big_stage() -> None:
    choice = choose_from_sizes(STAGES, ("layer4", (3, 3)), 96)
    assert choice.layer == "layer2" and choice.map_size == (12, 12)
    assert "layer4 would be 3x3" in choice.reason
    assert choose_from_sizes(STAGES, ("layer4", (3, 3)), 96, min_size=6).layer == "layer3"


def test_rule_takes_the_largest_map_when_none_is_big_enough() -> None:
    stages = [("a", (4, 4)), ("b", (2, 2))]
    assert choose_from_sizes(stages, ("c", (1, 1)), 16).layer == "a"
    with pytest.raises(ValueError):
        choose_from_sizes([], None, 16)


def _meta_model(arch: str):  # type: ignore[no-untyped-def]
    import timm
    import torch

    with torch.device("meta"):
        return timm.create_model(arch, pretrained=False, num_classes=3)


@pytest.fixture(scope="module")
def zoo_stages() -> dict[str, tuple[str, list[tuple[str, int]]]]:
    """Per zoo model: its registry CAM layer and timm's feature_info (module, reduction), built on the meta
    device (no weights, no memory); nothing is run through the models."""
    from covidct.models.registry import list_models

    out = {}
    for spec in list_models():
        info = _meta_model(spec.arch).feature_info
        out[spec.name] = (spec.cam_layer, [(e["module"], int(e["reduction"])) for e in info])
    return out


def _expected(cam_layer: str, stages: list[tuple[str, int]], size: int) -> str:
    """The rule on sizes from feature_info reductions (the registry layer is at the deepest reduction)."""
    deepest = stages[-1][1]
    sized = [(name, (math.ceil(size / r),) * 2) for name, r in stages if name != cam_layer]
    return choose_from_sizes(sized, (cam_layer, (math.ceil(size / deepest),) * 2), size).layer


@pytest.mark.slow  # building the zoo's models, even on the meta device, takes ~10-40 s on 2 shared cores
def test_zoo_choice_at_two_input_sizes(zoo_stages) -> None:  # type: ignore[no-untyped-def]
    from covidct.models.registry import get_spec

    assert (
        sum(get_spec(name).paper for name in zoo_stages) == 20
    )  # the paper's 20, plus the registered extras
    for name, (cam_layer, stages) in zoo_stages.items():
        native = get_spec(name).input_size
        deepest = stages[-1][1]
        assert math.ceil(native / deepest) >= MIN_MAP_SIZE, name  # the paper's sizes keep the paper's layer
        assert _expected(cam_layer, stages, native) == cam_layer, name
        small = _expected(cam_layer, stages, 96)  # 96 px: the /32 map is 3x3, /16 is 6x6, /8 is 12x12
        reduction = dict(stages)[small]
        assert reduction == 8, (name, small, reduction)


@pytest.mark.parametrize(
    ("size", "layer", "side"), [(224, "layer4", 7), (96, "layer2", 12), (128, "layer3", 8)]
)
def test_shape_probe_on_a_real_model(size: int, layer: str, side: int) -> None:
    """The probe runs the model: real sizes, modes restored (a training model stays in training mode)."""
    from covidct.explain.layers import choose_cam_layer
    from covidct.models.factory import create_model

    model = create_model("resnet10t", 3, pretrained=False).train()
    choice = choose_cam_layer(model, size, "layer4")
    assert (choice.layer, choice.map_size) == (layer, (side, side))
    assert model.training and all(m.training for m in model.modules())


def test_probe_matches_reductions_for_valid_padding_models() -> None:
    """Inception's valid padding makes maps smaller than size / reduction: the probe sees the real size."""
    from covidct.explain.layers import choose_cam_layer

    choice = choose_cam_layer(_meta_model("inception_v3"), 299, "Mixed_7c")
    assert choice.layer == "Mixed_7c" and choice.map_size == (8, 8)


def test_automatic_spec_of_another_timm_model() -> None:
    from covidct.explain.layers import choose_cam_layer
    from covidct.models.registry import get_spec

    spec = get_spec("mobilenetv3_small_050")
    model = _meta_model(spec.arch)
    assert choose_cam_layer(model, spec.input_size, spec.cam_layer).layer == spec.cam_layer
    small = choose_cam_layer(model, 96, spec.cam_layer)
    assert small.layer != spec.cam_layer and min(small.map_size) >= MIN_MAP_SIZE
