"""Weight sources: installed weight packages map exactly onto timm, classify a real photo, load offline; files
and folders report what matched; weights that do not fit are refused with a clear error."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import timm
import torch

from covidct.errors import CheckpointError
from covidct.models import weights as ws
from covidct.models.factory import create_model_with_report
from covidct.models.registry import get_spec

LITE = [pytest.param(p, id=p.arch) for p in ws.WEIGHT_PACKAGES]


def _installed(package: ws.WeightPackage):
    path = package.path()
    if path is None:
        pytest.skip(f"{package.package} not installed (pip install covidct[weights])")
    return path


@pytest.mark.parametrize("package", LITE)
def test_package_keys_map_one_to_one_onto_timm(package: ws.WeightPackage) -> None:
    state = ws.read_state_dict(_installed(package))
    model = timm.create_model(package.arch, pretrained=False)  # 1000 classes, like the file
    mapped = ws.KEY_MAPS[package.key_map](state, model)
    target = model.state_dict()
    assert len(mapped) == len(state) == len(target)  # every tensor mapped, none merged
    assert set(mapped) == set(target)
    assert all(mapped[k].shape == target[k].shape for k in target)
    model.load_state_dict(mapped, strict=True)


@pytest.mark.parametrize("package", LITE)
def test_registry_model_loads_package_with_report(package: ws.WeightPackage) -> None:
    path = _installed(package)
    name = next(
        s.name for s in (get_spec(f"EfficientNetLite{i}") for i in range(3)) if s.arch == package.arch
    )
    model, report = create_model_with_report(name, 2)
    assert report.source == "package" and report.location.startswith(package.package)
    assert report.matched == report.total == len(model.state_dict()) - 2  # all but the fresh 2-class head
    assert report.head_dropped == 2 and report.licence == "Apache-2.0"
    assert "tensors matched" in report.describe()
    mapped = ws.KEY_MAPS[package.key_map](ws.read_state_dict(path), model)
    assert torch.equal(model.conv_stem.weight, mapped["conv_stem.weight"])
    assert model.pretrained_cfg["mean"] == package.mean and model.pretrained_cfg["std"] == package.std
    assert get_spec(name).input_size == {0: 224, 1: 240, 2: 260}[int(name[-1])]


#: ImageNet class 652 "military uniform": grace_hopper.jpg's top-1 with the reference EfficientNet-Lite
#: implementation, and with timm's tf_efficientnet_lite* (probabilities 0.39 / 0.44 / 0.18).
MILITARY_UNIFORM = 652


@pytest.mark.parametrize("package", LITE)
def test_imagenet_sanity_on_bundled_photo(package: ws.WeightPackage) -> None:
    from matplotlib import cbook
    from PIL import Image

    model = timm.create_model(package.arch, pretrained=False).eval()
    model.load_state_dict(ws.KEY_MAPS[package.key_map](ws.read_state_dict(_installed(package)), model))
    size = timm.get_pretrained_cfg(package.arch).input_size[-1]
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as image:
        rgb = np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32) / 255
    x = (
        torch.from_numpy(rgb).permute(2, 0, 1)[None] - torch.tensor(package.mean).view(1, 3, 1, 1)
    ) / torch.tensor(package.std).view(1, 3, 1, 1)
    with torch.no_grad():
        probs = model(x).softmax(1)[0]
    top5 = probs.topk(5).indices.tolist()
    assert top5[0] == MILITARY_UNIFORM, top5
    assert float(probs[MILITARY_UNIFORM]) > 0.1


def test_package_loads_with_the_hub_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    _installed(ws.WEIGHT_PACKAGES[0])

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(timm.models._builder, "load_pretrained", lambda *a, **k: pytest.fail("hub used"))
    model, report = create_model_with_report("EfficientNetLite0", 3)
    assert report.source == "package"
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 3)
    assert ws.availability(get_spec("EfficientNetLite0")) == "installed"


def test_explicit_file_and_dir_come_before_the_package(tmp_path) -> None:
    from safetensors.torch import save_file

    other = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    save_file(other.state_dict(), tmp_path / "tf_efficientnet_lite0.safetensors")
    model, report = create_model_with_report(
        "EfficientNetLite0", 2, weights=tmp_path / "tf_efficientnet_lite0.safetensors"
    )
    assert report.source == "file" and report.matched == report.total
    assert torch.equal(model.conv_stem.weight, other.conv_stem.weight)
    model, report = create_model_with_report("EfficientNetLite0", 2, weights_dir=tmp_path)
    assert report.source == "dir" and torch.equal(model.conv_stem.weight, other.conv_stem.weight)
    _, report = create_model_with_report("EfficientNetLite0", 2, pretrained=False)
    assert report.source == "none" and report.matched == 0


def test_weights_that_do_not_fit_are_refused(tmp_path) -> None:
    state = timm.create_model("resnet10t", pretrained=False).state_dict()
    renamed = {("stem." + k if k.startswith("conv1.") else k): v for k, v in state.items()}
    torch.save(renamed, tmp_path / "renamed.pt")
    with pytest.raises(
        CheckpointError, match=r"renamed.pt: weights do not fit .* backbone tensors matched; \d+ missing"
    ):
        create_model_with_report("resnet10t", 2, weights=tmp_path / "renamed.pt")
    with pytest.raises(CheckpointError, match="of another shape"):  # another architecture's tensors
        state18 = timm.create_model("resnet14t", pretrained=False).state_dict()
        torch.save({k: v for k, v in state18.items() if k in state}, tmp_path / "other.pt")
        create_model_with_report("resnet10t", 2, weights=tmp_path / "other.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pt: weights file is empty"):
        create_model_with_report("resnet10t", 2, weights=tmp_path / "empty.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a state dict at all")
    with pytest.raises(CheckpointError, match="junk.pt: not a readable state dict"):
        create_model_with_report("resnet10t", 2, weights=tmp_path / "junk.pt")
    torch.save({"epoch": 3}, tmp_path / "notensors.pt")
    with pytest.raises(CheckpointError, match="holds no tensors"):
        create_model_with_report("resnet10t", 2, weights=tmp_path / "notensors.pt")


def test_matching_file_loads_and_wrappers_are_unwrapped(tmp_path) -> None:
    source = timm.create_model("resnet10t", pretrained=False)
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "w.pth")
    model, report = create_model_with_report("resnet10t", 3, weights=tmp_path / "w.pth")
    assert report.matched == report.total and report.head_dropped == 2
    assert torch.equal(model.conv1[0].weight, source.conv1[0].weight)


def test_availability_words(monkeypatch: pytest.MonkeyPatch) -> None:
    from covidct.models import _hub

    monkeypatch.setattr(_hub, "hub_status", lambda name: "cached")
    assert ws.availability(get_spec("resnet10t")) == "cached"
    monkeypatch.setattr(_hub, "hub_status", lambda name: "hub")
    assert ws.availability(get_spec("EfficientNetB0")) == "hub only"
    monkeypatch.setattr(_hub, "hub_status", lambda name: "none")
    assert ws.availability(get_spec("resnet10t")) == "none"
    monkeypatch.setattr(ws.WeightPackage, "path", lambda self: None)
    assert ws.availability(get_spec("EfficientNetLite0")) == "none"
