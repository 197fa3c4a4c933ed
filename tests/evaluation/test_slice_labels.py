"""Radiologists' slice labels: disease probability, path matching, AUC within diseased patients."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from covidct.errors import DataError
from covidct.evaluation.slice_labels import (
    disease_probability,
    match_labels,
    read_slice_labels,
    slice_label_scores,
)


def test_auc_on_a_hand_made_table() -> None:
    table = pd.DataFrame(
        {
            "patient": ["P1", "P1", "P1", "P1", "C1", "C1", "N1", "N1"],
            "diagnosis": ["COVID-19", "COVID-19", "COVID-19", "COVID-19", "CAP", "CAP", "Normal", "Normal"],
            "infection_visible": [1, 1, 0, 0, 1, 0, 0, 0],
            # infected: 0.9, 0.4, 0.8; clean: 0.3, 0.5, 0.1 -> 8 of 9 pairs ordered right
            "disease_probability": [0.9, 0.4, 0.3, 0.5, 0.8, 0.1, 0.99, 0.99],
            "lung_share": [0.8, 0.6, 0.2, 0.4, 0.7, float("nan"), 0.1, 0.1],
        }
    )
    scores = slice_label_scores(table)
    assert scores.n == 6 and scores.n_patients == 2 and scores.n_infected == 3  # normal patients left out
    assert scores.auc == pytest.approx(8 / 9)
    assert scores.lung_share_infected == pytest.approx(0.7) and scores.lung_share_clean == pytest.approx(0.3)
    one_class = slice_label_scores(table.assign(infection_visible=0))
    assert math.isnan(one_class.auc)


def test_disease_probability() -> None:
    assert disease_probability({"COVID-19": 0.7, "Healthy": 0.2, "Pneumonia": 0.1}) == pytest.approx(0.8)
    assert disease_probability({"COVID": 0.3, "non-COVID": 0.7}) == pytest.approx(0.3)
    assert disease_probability({"COVID-19": 0.6, "Pneumonia": 0.4}) == pytest.approx(0.6)
    with pytest.raises(ValueError):
        disease_probability({"a": 1.0})


def test_match_by_path_suffix(tmp_path: Path) -> None:
    labels = pd.DataFrame({"path": ["COVID-19/P001/a.dcm", "CAP/cap001/b.dcm"]})
    sources = ["/data/covid-ct-md/CAP/cap001/b.dcm", "/x/COVID-19/P001/a.dcm", "/x/other.dcm"]
    assert match_labels(sources, labels) == [1, 0, None]


def test_read_slice_labels_validates(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text("path,patient,diagnosis,infection_visible\na.dcm,P1,COVID-19,1\n")
    assert read_slice_labels(good)["infection_visible"].tolist() == [1]
    bad = tmp_path / "bad.csv"
    bad.write_text("path,patient,diagnosis,infection_visible\na.dcm,P1,COVID-19,yes\n")
    with pytest.raises(DataError, match="row 2"):
        read_slice_labels(bad)
    missing = tmp_path / "missing.csv"
    missing.write_text("path,patient\na.dcm,P1\n")
    with pytest.raises(DataError, match="missing diagnosis"):
        read_slice_labels(missing)


@pytest.mark.real_data
def test_real_labels_table_reads(shared_data: Path) -> None:
    table = read_slice_labels(shared_data / "covid-ct-md" / "slice-labels.csv")
    assert len(table) == 235 and set(table["diagnosis"]) == {"COVID-19", "CAP", "Normal"}
    assert table.loc[table["diagnosis"] == "Normal", "infection_visible"].sum() == 0
    assert table.loc[table["diagnosis"] != "Normal", "infection_visible"].sum() > 0
