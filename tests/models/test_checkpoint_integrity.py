"""Checkpoints carry a SHA-256 of their weights: a flipped byte is an error on load, never NaN probabilities;
unsafe pickles are refused in words that say so; checkpoints from before the hash still load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hostile_files import flip_weight_bytes, malicious_checkpoint, nan_checkpoint, pickle_file

from covidct.errors import CheckpointError
from covidct.models.checkpoint import (
    WEIGHTS_HASH_KEY,
    CheckpointMeta,
    load_checkpoint,
    save_checkpoint,
    weights_sha256,
)
from covidct.models.factory import create_model


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = create_model("resnet10t", 2, pretrained=False)
    meta = CheckpointMeta(
        model_name="resnet10t",
        timm_name="resnet10t",
        classes=("COVID-19", "Healthy"),
        image_size=32,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    )
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "good.pt", model, meta)


def test_the_hash_is_stored_and_matches_the_weights(good: Path) -> None:
    payload = torch.load(good, weights_only=True)
    assert payload[WEIGHTS_HASH_KEY] == weights_sha256(payload["state_dict"])
    assert len(payload[WEIGHTS_HASH_KEY]) == 64
    load_checkpoint(good)


def test_flipped_weight_bytes_are_detected(good: Path, tmp_path: Path) -> None:
    bad = flip_weight_bytes(good, tmp_path / "flipped.pt")
    assert torch.load(bad, weights_only=True)["state_dict"]  # it still unpickles: only the hash can tell
    with pytest.raises(CheckpointError, match=r"flipped\.pt: checkpoint corrupted: weights hash mismatch"):
        load_checkpoint(bad)


def test_old_checkpoints_without_a_hash_still_load(tmp_path: Path) -> None:
    path = nan_checkpoint(tmp_path / "old.pt")  # saved, then the hash removed: what older covidct wrote
    assert WEIGHTS_HASH_KEY not in torch.load(path, weights_only=True)
    assert load_checkpoint(path).meta.model_name == "resnet10t"


@pytest.mark.parametrize("make", [malicious_checkpoint, pickle_file])
def test_code_carrying_pickles_are_refused_as_unsafe(tmp_path: Path, make) -> None:  # type: ignore[no-untyped-def]
    path = make(tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused: not a safe torch checkpoint"):
        load_checkpoint(path)
