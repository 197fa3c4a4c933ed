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
