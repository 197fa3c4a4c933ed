"""Every registry model builds, has the paper's input size, and its Grad-CAM layer resolves."""

from __future__ import annotations

import pytest
import timm
import torch

from covidct.errors import CheckpointError, ConfigError, UnknownModelError
from covidct.models.factory import create_model
from covidct.models.normalization import model_normalization
from covidct.models.registry import get_spec, list_models

PAPER_SIZES = {
    "EfficientNetB0": 224,
    "EfficientNetB1": 240,
    "EfficientNetB2": 260,
    "EfficientNetB3": 300,
    "EfficientNetB4": 380,
    "EfficientNetB5": 456,
    "EfficientNetB6": 528,
    "EfficientNetB7": 600,
    "DenseNet121": 224,
    "DenseNet169": 224,
    "DenseNet201": 224,
    "ResNet50": 224,
    "ResNet50V2": 224,
    "ResNet101V2": 224,
    "ResNet152V2": 224,
    "InceptionV3": 299,
    "InceptionResNetV2": 299,
    "VGG16": 224,
    "VGG19": 224,
    "Xception": 299,
}


def test_registry_holds_the_papers_20_models_then_the_extras() -> None:
    assert {spec.name: spec.input_size for spec in list_models() if spec.paper} == PAPER_SIZES
    extras = {spec.name: spec.input_size for spec in list_models() if not spec.paper}
    assert extras == {"EfficientNetLite0": 224, "EfficientNetLite1": 240, "EfficientNetLite2": 260}
    from covidct.models.zoo import PAPER_MODELS

    assert [s.name for s in PAPER_MODELS] == list(PAPER_SIZES)  # `--models paper` stays the paper's 20


@pytest.mark.parametrize("spec", list_models(), ids=lambda s: s.name)
def test_spec_builds_and_cam_layer_resolves(spec) -> None:
    assert timm.is_model(spec.arch)
    with torch.device("meta"):
        model = create_model(spec.name, 3, pretrained=False)
    layer = model.get_submodule(spec.cam_layer)
    assert isinstance(layer, torch.nn.Module)
    head = model.get_classifier()
    assert getattr(head, "out_features", None) or head.out_channels == 3


def test_lookup_is_case_insensitive_and_accepts_timm_names() -> None:
    assert get_spec("efficientnetb5").timm_name == "tf_efficientnet_b5.ns_jft_in1k"
    assert get_spec("tf_efficientnet_b5.ns_jft_in1k").name == "EfficientNetB5"
    auto = get_spec("resnet10t")
    assert auto.timm_name == "resnet10t" and auto.cam_layer == "layer4"


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(UnknownModelError, match="EfficientNetB5"):
        get_spec("EfficientNetB55")


def test_small_model_forward_shape_and_normalization() -> None:
    model = create_model("resnet10t", 2, pretrained=False, dropout=0.2).eval()
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 2)
    mean, std = model_normalization(model)
    assert len(mean) == len(std) == 3


def test_weights_file_is_loaded_and_head_replaced(tmp_path) -> None:
    from safetensors.torch import save_file

    imagenet = timm.create_model("resnet10t", pretrained=False)  # 1000-class head, like hub weights
    save_file(imagenet.state_dict(), tmp_path / "resnet10t.safetensors")
    model = create_model("resnet10t", 3, weights=tmp_path / "resnet10t.safetensors")
    assert torch.equal(model.conv1[0].weight, imagenet.conv1[0].weight)
    assert model.get_classifier().out_features == 3
    from_dir = create_model("resnet10t", 3, weights_dir=tmp_path)
    assert torch.equal(from_dir.conv1[0].weight, imagenet.conv1[0].weight)


def test_weights_errors_are_clear(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        create_model("resnet10t", 3, weights=tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="no weights file"):
        create_model("resnet10t", 3, weights_dir=tmp_path)
    with pytest.raises(ConfigError):
        create_model("resnet10t", 1, pretrained=False)


def test_unreachable_hub_fails_at_once_with_a_clear_message(monkeypatch) -> None:
    from huggingface_hub import constants

    import covidct.models._hub as hub

    probes: list[bool] = []
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: probes.append(True) or False)
    before = constants.HF_HUB_OFFLINE
    with pytest.raises(CheckpointError, match="--weights FILE, --weights-dir DIR, or --no-pretrained"):
        create_model("EfficientNetB0", 3, pretrained=True)
    assert probes == [True]  # one probe, then cache-only: no minute of download retries
    assert constants.HF_HUB_OFFLINE == before


@pytest.mark.parametrize(("name", "params"), [("VGG16", 14_716_227), ("VGG19", 20_025_923)])
def test_vgg_is_the_keras_base_plus_gap_and_dense(name: str, params: int) -> None:
    """issue 10: Keras include_top=False + GlobalAveragePooling + Dense, not timm's fc6/fc7 (134M/139M)."""
    from covidct.models.factory import count_parameters

    assert count_parameters(name, 3) == params  # Keras conv base 14,714,688 / 20,024,384 + 512 * 3 + 3
    model = create_model(name, 3, pretrained=False, dropout=0.2).eval()
    assert sum(p.numel() for p in model.parameters()) == params
    assert isinstance(model.pre_logits, torch.nn.Identity) and model.get_classifier().in_features == 512
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 3)  # GAP: any input size, as in Keras
    assert isinstance(model.get_submodule(get_spec(name).cam_layer), torch.nn.ReLU)  # last conv block


def test_models_command_shows_the_corrected_vgg_counts() -> None:
    from typer.testing import CliRunner

    from covidct.cli.main import app

    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 3}
    assert rows["VGG16"].rstrip(" │").endswith("14.7") and rows["VGG19"].rstrip(" │").endswith("20.0")
