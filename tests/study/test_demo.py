"""The demo pipeline end to end, shrunk: phantoms -> study -> Grad-CAM -> HTML report."""

from __future__ import annotations

from pathlib import Path

import pytest

from covidct.errors import ConfigError
from covidct.study.demo import DemoConfig, run_demo


def test_demo_config_validates() -> None:
    with pytest.raises(ConfigError, match="patients per class"):
        DemoConfig(folds=5, patients_per_class=3)


@pytest.mark.slow
def test_demo_end_to_end(tmp_path: Path) -> None:
    cfg = DemoConfig(
        out=str(tmp_path / "demo"),
        models=("resnet10t",),
        folds=2,
        epochs=1,
        image_size=32,
        patients_per_class=3,
        slices_per_patient=2,
        phantom_size=48,
        explain_slices=2,
    )
    messages: list[str] = []
    result = run_demo(cfg, log=messages.append)
    assert result.study.ok and result.study.ran == 2
    assert result.explanations is not None and len(list(result.explanations.glob("*.png"))) == 2
    text = result.report.read_text(encoding="utf-8")
    assert result.report == tmp_path / "demo" / "study" / "report.html"
    assert 'id="explanations"' in text and 'id="reference"' in text and 'data-model="resnet10t"' in text
    assert any("synthesizing" in m for m in messages)
    again = run_demo(cfg)  # rerun: phantoms reused, jobs skipped
    assert again.study.ran == 0 and again.study.skipped == 2
