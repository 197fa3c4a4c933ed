"""The HTML report: one self-contained file with every model, table and figure (fake study, no torch)."""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fake_study import CLASSES, write_fake_study

from covidct.errors import ConfigError, DataError
from covidct.report.html import render_report, write_report
from covidct.report.reference import PAPER, get_reference


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.models: list[str] = []
        self.srcs: list[str] = []
        self.hrefs: list[str] = []
        self.tags: list[str] = []
        self.tables = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        if a.get("id"):
            self.ids.append(a["id"])
        if a.get("data-model"):
            self.models.append(a["data-model"])
        if tag in ("img", "script", "iframe") and "src" in a:
            self.srcs.append(a["src"] or "")
        if "href" in a:
            self.hrefs.append(a["href"] or "")
        self.tables += tag == "table"

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(text: str) -> _Collect:
    parser = _Collect()
    parser.feed(text)
    parser.close()
    return parser


def test_report_is_self_contained_and_lists_every_model(fake_study: Path) -> None:
    out = write_report(fake_study, fake_study / "r.html")
    page = parse(out.read_text(encoding="utf-8"))
    assert sorted(page.models) == ["EfficientNetB5", "VGG16", "resnet10t"]
    for section in ("setup", "models", "multiclass", "stats", "per-class", "figures"):
        assert section in page.ids
    assert "reference" not in page.ids
    # bars (accuracy, macro F1, 3 per-class F1), accuracy vs latency, 3 confusion matrices
    assert len(page.srcs) == 2 + 3 + 1 + 3
    assert all(src.startswith("data:image/png;base64,") for src in page.srcs)
    assert page.hrefs == [] and "link" not in page.tags and "script" not in page.tags
    assert page.tables >= 3 + 2 * 3  # models, 2 multi-class, wilcoxon, 2 per model
    text = " ".join(page.text)
    assert "EfficientNetB5 (best)" in text and "± " in text
    assert "Wilcoxon" in text


def _reference_rows(text: str) -> list[list[str]]:
    section = text.split('id="reference"', 1)[1]
    rows = []
    for tr in section.split("<tr>")[1:]:
        rows.append([cell.split("</td>")[0] for cell in tr.split("<td>")[1:]])
    return [r for r in rows if r]


def test_reference_paper_shows_the_published_row_beside_every_model(fake_study: Path) -> None:
    """issue 10: all 20 models' per-class tables ship with covidct; each model gets its own row."""
    html = render_report(fake_study, reference="paper")
    page = parse(html)
    assert "reference" in page.ids
    rows = _reference_rows(html)
    paper = {(r[0], r[1]): r for r in rows if r[2].startswith("paper (")}
    assert paper[("EfficientNetB5", "COVID-19")][3:] == [
        "0.9769 ± 0.0046",
        "0.9759 ± 0.0048",
        "0.9788 ± 0.0055",
        "0.9730 ± 0.0057",
        "0.9751 ± 0.0051",
    ]
    assert paper[("VGG16", "Pneumonia")][2] == "paper (VGG16)" and len(paper) == 2 * 3
    ours = {(r[0], r[1]) for r in rows if r[2] == "ours"}
    assert ours == {(m, c) for m in ("EfficientNetB5", "VGG16", "resnet10t") for c in CLASSES}
    assert any(r[0] == "resnet10t" and "no published row" in r[3] for r in rows)
    assert "0.9845" not in html  # the 2-class abstract figures are another task


def test_reference_is_not_shown_beside_another_task(tmp_path: Path) -> None:
    study = write_fake_study(tmp_path / "s", {"EfficientNetB5": 2.0}, classes=("COVID-19", "non-COVID"))
    html = render_report(study, reference="paper")
    assert "are another task" in html and "0.9769" not in html
    rows = _reference_rows(html)
    dataset = "alternate 2-class dataset (as named in the abstract)"
    assert rows[0][:4] == [dataset, "EfficientNetB5", "Accuracy", "0.9845 ± 0.0109"]
    assert len(rows[0]) == 5  # beside our COVID-19 one-vs-rest value


def test_reference_tables_are_the_shipped_csv() -> None:
    import csv
    from importlib import resources

    assert get_reference("PAPER") is PAPER
    data = resources.files("covidct.report").joinpath("data", "garg2022_tables.csv").read_text()
    rows = list(csv.DictReader(data.splitlines()))
    assert len(rows) == 60 and len(PAPER.models()) == 20
    assert PAPER.per_class("vgg19")["Healthy"]["sensitivity"].mean == float(
        next(r for r in rows if r["model"] == "VGG19" and r["class"] == "Healthy")["sensitivity_mean"]
    )
    assert PAPER.per_class("tf_efficientnet_b5.ns_jft_in1k")["COVID-19"]["f1"].std == 0.0046
    readme = resources.files("covidct.report").joinpath("data", "README.md").read_text()
    assert "arXiv:2012.11860" in readme and "Garg" in readme
    with pytest.raises(ConfigError, match="reference"):
        get_reference("nature")


def test_failures_and_missing_jobs_are_visible(tmp_path: Path) -> None:
    study = write_fake_study(tmp_path / "s", {"a": 2.0, "b": 1.0}, skip=(("b", 0, 1),))
    (study / "failures.json").write_text('[{"job": "b/r0_f1", "attempts": 2, "error": "RuntimeError: boom"}]')
    text = " ".join(parse(render_report(study)).text)
    assert "b/r0_f1" in text and "RuntimeError: boom" in text
    assert "b: 1 of 6 jobs have no predictions" in text


def test_explanation_panels_are_embedded(fake_study: Path) -> None:
    from covidct.report.figures import plot_confusion_matrix

    plot_confusion_matrix([[1, 0], [0, 1]], ["a", "b"], fake_study / "explanations" / "x" / "panel.png")
    page = parse(render_report(fake_study))
    assert "explanations" in page.ids and len(page.srcs) == 10
    assert "audit" not in page.ids  # no audit.csv, no audit table


def test_audit_table_from_audit_csv(fake_study: Path) -> None:
    from covidct.report.figures import plot_confusion_matrix

    folder = fake_study / "explanations" / "x"
    plot_confusion_matrix([[1, 0], [0, 1]], ["a", "b"], folder / "panel.png")
    (folder / "audit.csv").write_text(
        "model,index,source,class,lung_share,lung_fraction,outside,lungs\n"
        "m,0,a.png,COVID-19,0.9,0.3,False,given\n"
        "m,1,b.png,COVID-19,0.2,0.3,True,given\n"
        "m,2,c.png,Healthy,,0.0,False,given\n"
    )
    html = render_report(fake_study)
    assert 'id="audit"' in html and "Mostly outside the lungs" in html
    assert "<td>m</td><td>COVID-19</td><td>2</td><td>0.55</td><td>0.30</td><td>50%</td>" in html
    assert "<td>m</td><td>Healthy</td>" not in html  # no lungs on that slice: left out


def test_report_without_predictions(tmp_path: Path) -> None:
    with pytest.raises(DataError):
        write_report(tmp_path)


def test_report_does_not_import_torch() -> None:
    assert "covidct.report.html" in sys.modules
    import subprocess

    code = (
        "import sys, covidct.report.html, covidct.report.study_tables;"
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_setup_lists_per_model_training_overrides(fake_study: Path) -> None:
    import json

    config = json.loads((fake_study / "study.json").read_text())
    config["model_train"] = [["VGG16", {"epochs": 6, "lr": 0.001, "pretrained": True}]]
    (fake_study / "study.json").write_text(json.dumps(config))
    text = " ".join(parse(write_report(fake_study, fake_study / "r.html").read_text(encoding="utf-8")).text)
    assert "epochs=1, image_size=48, pretrained=False" in text
    assert "Training of VGG16" in text and "epochs=6, lr=0.001, pretrained=True" in text
