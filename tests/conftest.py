"""Shared fixtures: real data location, synthetic phantoms, tiny models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("COVIDCT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data; a test that needs it fails (not skips) on CI when it is missing."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"real data missing at {SHARED_DATA} (required when CI=true)")
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def phantoms(tmp_path_factory: pytest.TempPathFactory):
    """A small synthetic 3-class CT dataset (class/patient/slice PNGs + lesion masks), built once per
    session."""
    from covidct.data.synth import synthesize_dataset

    return synthesize_dataset(
        tmp_path_factory.mktemp("phantoms"), patients_per_class=6, slices_per_patient=4, size=64, seed=0
    )


@pytest.fixture(autouse=True, scope="session")
def _feature_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Linear-probe features go to a temporary folder, never the user's ~/.cache."""
    os.environ["COVIDCT_FEATURE_CACHE"] = str(tmp_path_factory.mktemp("feature_cache"))


@pytest.fixture(autouse=True, scope="session")
def _few_threads() -> None:
    """Tests share 2 cores; keep torch from oversubscribing them."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    torch.set_num_threads(2)


@pytest.fixture
def fake_study(tmp_path: Path) -> Path:
    """A comparison study of fake per-job predictions (three models, no torch): tests/fake_study.py."""
    from fake_study import write_fake_study

    return write_fake_study(tmp_path / "study", {"EfficientNetB5": 3.0, "resnet10t": 1.0, "VGG16": 0.3})
