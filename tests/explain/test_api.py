"""explain() / activations(): checkpoints, folders, DICOM series, masks, faithfulness, clean failure."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from covidct.errors import ConfigError, DataError
from covidct.explain.api import ExplainConfig, activations, explain


def test_explain_folder_with_masks(tiny_checkpoint: Path, phantoms, tmp_path: Path) -> None:
    inputs = [phantoms.images_dir / "COVID-19" / "p001", phantoms.images_dir / "Pneumonia" / "p001"]
    result = explain(tiny_checkpoint, inputs, tmp_path / "out", masks=phantoms.masks_dir, batch_size=3)
    assert result.n_slices == 8 and result.masks_missing == 0
    assert result.layer == "layer2" and "8x8 map at 64 px" in result.layer_note  # layer4 would be 2x2
    loc = result.localization
    assert loc is not None and loc.n + loc.n_empty == 8 and loc.n > 0
    assert 0.0 <= loc.pointing_game <= 1.0 and 0.0 <= loc.energy_inside <= 1.0
    assert 0.0 < loc.random_pointing_game < 1.0
    assert result.faithfulness is None
    index = json.loads(result.index.read_text())
    assert index["schema_version"] == 1 and len(index["items"]) == 8
    assert index["scores"]["localization"]["n"] == loc.n
    first = index["items"][0]
    assert np.load(result.out / first["maps"][0]["npy"]).shape == (first["height"], first["width"])


def test_an_explicit_layer_is_kept(tiny_checkpoint: Path, phantoms, tmp_path: Path) -> None:
    image = phantoms.images_dir / "Healthy" / "p001" / "1.png"
    result = explain(tiny_checkpoint, [image], tmp_path / "out", layer="layer4")
    assert result.layer == "layer4" and result.layer_note == "given with --layer"
    assert json.loads(result.index.read_text())["layer"] == "layer4"


def test_audit_with_given_and_computed_lungs(tiny_checkpoint: Path, phantoms, tmp_path: Path) -> None:
    import csv

    inputs = [phantoms.images_dir / "COVID-19" / "p001", phantoms.images_dir / "Healthy" / "p002"]
    lungs_dir = phantoms.images_dir.parent / "lungs"
    given = explain(tiny_checkpoint, inputs, tmp_path / "given", lungs=lungs_dir, audit=True)
    computed = explain(tiny_checkpoint, inputs, tmp_path / "computed", audit=True)
    for result, how in ((given, "given"), (computed, "intensity")):
        assert result.audit is not None and result.audit[-1].group == "all" and result.audit[-1].n == 8
        rows = list(csv.DictReader(result.audit_table.open()))
        assert len(rows) == 8 and {r["lungs"] for r in rows} == {how}
        assert {r["model"] for r in rows} == {"resnet10t"}
        shares = [float(r["lung_share"]) for r in rows]
        fractions = [float(r["lung_fraction"]) for r in rows]
        assert all(0 <= v <= 1 for v in shares) and all(0.05 < f < 0.6 for f in fractions)
        assert [r["outside"] == "True" for r in rows] == [v < 0.5 for v in shares]
        index = json.loads(result.index.read_text())
        assert index["audit"][-1]["n"] == 8 and "audit" in index["items"][0]
        assert sum(a.n for a in result.audit[:-1]) == 8
    # the phantoms' true lungs vs the computed ones: same slices, similar baselines
    g = [float(r["lung_fraction"]) for r in csv.DictReader(given.audit_table.open())]
    c = [float(r["lung_fraction"]) for r in csv.DictReader(computed.audit_table.open())]
    assert np.allclose(g, c, atol=0.05)


def test_slice_labels_join_the_explained_slices(tiny_checkpoint: Path, phantoms, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    rows = [f"COVID-19/p001/{k}.png,p001,COVID-19,{int(k > 2)}" for k in range(1, 5)]
    labels.write_text("path,patient,diagnosis,infection_visible\n" + "\n".join(rows) + "\n")
    inputs = [phantoms.images_dir / "COVID-19" / "p001", phantoms.images_dir / "Healthy" / "p001"]
    result = explain(tiny_checkpoint, inputs, tmp_path / "out", slice_labels=labels, audit=True)
    scores = result.slice_labels
    assert scores is not None and scores.n == 4 and scores.n_infected == 2 and scores.n_patients == 1
    assert 0.0 <= scores.auc <= 1.0 and 0.0 <= scores.lung_share_infected <= 1.0
    assert json.loads(result.index.read_text())["slice_labels"]["n"] == 4
    other = tmp_path / "other.csv"
    other.write_text("path,patient,diagnosis,infection_visible\nnope.png,x,COVID-19,1\n")
    with pytest.raises(DataError, match="none of the explained slices"):
        explain(tiny_checkpoint, inputs, tmp_path / "out2", slice_labels=other)
    assert not (tmp_path / "out2").exists()


def test_audit_of_a_dicom_series_uses_hu(tiny_checkpoint: Path, dicom_series: Path, tmp_path: Path) -> None:
    result = explain(tiny_checkpoint, [dicom_series], tmp_path / "out", audit=True)
    assert result.audit_table is not None
    assert "hu" in result.audit_table.read_text()


def test_explain_without_masks_reports_faithfulness(tiny_checkpoint: Path, phantoms, tmp_path: Path) -> None:
    image = phantoms.images_dir / "Healthy" / "p001" / "1.png"
    result = explain(tiny_checkpoint, [image], tmp_path / "out", target="all")
    assert result.localization is None
    faith = result.faithfulness
    assert faith is not None and faith.n == 1 and math.isfinite(faith.gap)
    index = json.loads(result.index.read_text())
    assert [m["class"] for m in index["items"][0]["maps"]] == ["COVID-19", "Healthy", "Pneumonia"]


def test_explain_dicom_series(tiny_checkpoint: Path, dicom_series: Path, tmp_path: Path) -> None:
    result = explain(tiny_checkpoint, [dicom_series], tmp_path / "out", method="gradcam++", batch_size=2)
    index = json.loads(result.index.read_text())
    assert result.n_slices == 3 and index["method"] == "gradcam++"
    assert {item["group"] for item in index["items"]} == {str(dicom_series)}
    assert [Path(item["source"]).name for item in index["items"]] == [
        "IM0002.dcm",
        "IM0001.dcm",
        "IM0000.dcm",
    ]
    assert all((item["height"], item["width"]) == (40, 40) for item in index["items"])


def test_bad_options_write_nothing(tiny_checkpoint: Path, phantoms, tmp_path: Path) -> None:
    image = phantoms.images_dir / "Healthy" / "p001" / "1.png"
    with pytest.raises(ConfigError, match="layer4"):
        explain(tiny_checkpoint, [image], tmp_path / "a", layer="layer7")
    with pytest.raises(ConfigError, match="Healthy"):
        explain(tiny_checkpoint, [image], tmp_path / "b", target="Flu")
    with pytest.raises(ConfigError):
        ExplainConfig(batch_size=0)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_activations_of_a_series_uses_its_middle_slice(tiny_checkpoint, dicom_series, tmp_path) -> None:
    result = activations(tiny_checkpoint, dicom_series, tmp_path / "act", top=4)
    assert result.n_slices_in_input == 3 and Path(result.source).name == "IM0001.dcm"
    assert result.stages == ("act1", "layer1", "layer2", "layer3", "layer4")
    assert (tmp_path / "act" / "overview.png").is_file()


@pytest.mark.real_data
def test_real_dicom_slice(tiny_checkpoint: Path, shared_data: Path, tmp_path: Path) -> None:
    first = sorted((shared_data / "covid-ct-md" / "COVID-19" / "P001").glob("*.dcm"))[0]
    result = explain(tiny_checkpoint, [first], tmp_path / "out")
    item = json.loads(result.index.read_text())["items"][0]
    assert item["height"] >= 256 and np.load(result.out / item["maps"][0]["npy"]).shape == (
        item["height"],
        item["width"],
    )
