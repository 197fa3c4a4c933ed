"""Fixtures for the report tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_study import write_fake_study


@pytest.fixture
def fake_study(tmp_path: Path) -> Path:
    return write_fake_study(tmp_path / "study", {"EfficientNetB5": 3.0, "resnet10t": 1.0, "VGG16": 0.3})
