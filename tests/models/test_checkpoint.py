"""Checkpoints round-trip, describe themselves, and fail clearly when corrupt or foreign."""

from __future__ import annotations

import pytest
import torch

from covidct.errors import CheckpointError
from covidct.models.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from covidct.models.factory import create_model


def _meta(**overrides) -> CheckpointMeta:
    values = dict(
        model_name="resnet10t",
        timm_name="resnet10t",
        classes=("COVID-19", "Healthy"),
        image_size=32,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        cam_layer="layer4",
    )
    values.update(overrides)
    return CheckpointMeta(**values)


def test_round_trip_gives_identical_outputs(tmp_path) -> None:
    model = create_model("resnet10t", 2, pretrained=False).eval()
    path = save_checkpoint(tmp_path / "ckpt.pt", model, _meta(), epoch=4)
    loaded = load_checkpoint(path)
    x = torch.randn(3, 3, 32, 32)
    assert torch.allclose(model(x), loaded.model(x))
    assert loaded.meta.classes == ("COVID-19", "Healthy")
    assert loaded.meta.image_size == 32 and loaded.extra["epoch"] == 4
    assert not list(tmp_path.glob(".*tmp"))  # the atomic write left no temp file


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04truncated", b"\x80\x02", b"xy"])
def test_corrupt_files_raise_checkpoint_error(tmp_path, content) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(path)


def test_plain_state_dict_and_future_version_are_rejected(tmp_path) -> None:
    model = create_model("resnet10t", 2, pretrained=False)
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a covidct checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    save_checkpoint(tmp_path / "ok.pt", model, _meta())
    payload = torch.load(tmp_path / "ok.pt", weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format 99"):
        load_checkpoint(tmp_path / "future.pt")
