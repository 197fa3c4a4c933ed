"""covidct evaluate: a checkpoint, an ONNX model or a CV run (ensemble) scored on another labelled dataset."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from covidct.errors import CheckpointError, ConfigError
from covidct.evaluation.predictions import read_predictions
from covidct.inference.evaluate import EvaluateConfig, evaluate, map_labels, model_files, parse_mapping
from covidct.report.run_metrics import write_run_metrics

runner = CliRunner()


@pytest.fixture(scope="module")
def cv_run(phantoms, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-class resnet10t CV run on the phantoms: 2 folds x 1 epoch at 32 px (two fold checkpoints)."""
    from covidct.training.config import CVConfig, TrainConfig
    from covidct.training.cv import cross_validate

    out = tmp_path_factory.mktemp("evalrun") / "run"
    cfg = CVConfig(
        data=str(phantoms.images_dir),
        model="resnet10t",
        out=str(out),
        folds=2,
        repeats=1,
        train=TrainConfig(
            epochs=1, batch_size=8, image_size=32, pretrained=False, device="cpu", augment="none"
        ),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cross_validate(cfg)
    return out


@pytest.fixture(scope="module")
def two_class_csv(phantoms, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The phantoms as a COVID-19 / non-COVID CSV dataset with one unreadable file."""
    root = tmp_path_factory.mktemp("external")
    rows = [
        (str(p), "COVID-19" if p.parts[-3] == "COVID-19" else "non-COVID", f"x-{p.parts[-2]}-{p.parts[-3]}")
        for p in sorted(Path(phantoms.images_dir).glob("*/*/*.png"))
    ]
    broken = root / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    rows.append((str(broken), "non-COVID", "x-broken"))
    pd.DataFrame(rows, columns=["path", "label", "patient_id"]).to_csv(root / "data.csv", index=False)
    return root / "data.csv"


def test_mapping_is_explicit_or_refused_listing_both_label_sets() -> None:
    data, model = ("COVID-19", "Healthy", "Pneumonia"), ("COVID-19", "non-COVID")
    with pytest.raises(
        ConfigError,
        match=r"data's classes \(COVID-19, Healthy, Pneumonia\) differ from the "
        r"model's \(COVID-19, non-COVID\).*--map Healthy=CLASS --map Pneumonia=CLASS",
    ):
        map_labels(data, model)
    labels = map_labels(data, model, parse_mapping(["CAP=non-COVID", "Normal=non-COVID"]))  # raw folder names
    assert labels.classes == model and labels.data == {
        "COVID-19": "COVID-19",
        "Healthy": "non-COVID",
        "Pneumonia": "non-COVID",
    }
    merged = map_labels(model, data, parse_mapping(["Healthy=non-COVID", "Pneumonia=non-COVID"]))
    assert merged.classes == model and merged.columns == {"COVID-19": [0], "non-COVID": [1, 2]}
    np.testing.assert_allclose(merged.probabilities(np.array([[0.2, 0.3, 0.5]])), [[0.2, 0.8]])
    with pytest.raises(ConfigError, match="names no class: Tuberculosis"):
        map_labels(data, model, parse_mapping(["Tuberculosis=non-COVID"]))
    with pytest.raises(ConfigError, match="CLASS=CLASS"):
        parse_mapping(["CAP"])


def test_model_files_of_a_checkpoint_and_a_cv_run(cv_run: Path, tmp_path: Path) -> None:
    folds = model_files(cv_run)
    assert [p.parent.name for p in folds] == ["r0_f0", "r0_f1"]
    assert model_files(folds[0]) == [folds[0]]
    with pytest.raises(CheckpointError, match="no model found"):
        model_files(tmp_path)


def test_cv_run_ensemble_on_a_mapped_external_set(cv_run: Path, two_class_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "ext"
    cfg = EvaluateConfig(
        model=str(cv_run),
        data=str(two_class_csv),
        out=str(out),
        mapping=parse_mapping(["Healthy=non-COVID", "Pneumonia=non-COVID"]),
    )
    result = evaluate(cfg)
    assert result.run_metrics is not None
    write_run_metrics(result.run_metrics)  # what `covidct evaluate` does after the API call
    assert result.classes == ("COVID-19", "non-COVID") and len(result.models) == 2
    assert result.model_classes == ("COVID-19", "Healthy", "Pneumonia")
    assert [Path(p).name for p, _ in result.skipped] == ["broken.png"]  # reported, skipped, not fatal
    table = read_predictions(out / "predictions.csv")
    assert len(table) == 72 and table["patient_id"].nunique() == 18
    assert set(table["label"]) == {"COVID-19", "non-COVID"}
    np.testing.assert_allclose(table[["prob_COVID-19", "prob_non-COVID"]].sum(axis=1), 1.0, atol=1e-6)
    # the ensemble is the mean of the fold models' probabilities, mapped by summing Healthy + Pneumonia
    singles = [
        read_predictions(
            evaluate(
                EvaluateConfig(
                    model=str(f), data=str(two_class_csv), out=str(tmp_path / f"s{i}"), mapping=cfg.mapping
                )
            ).predictions
        )
        for i, f in enumerate(result.models)
    ]
    mean = np.mean([s["prob_COVID-19"].to_numpy() for s in singles], axis=0)
    np.testing.assert_allclose(table["prob_COVID-19"].to_numpy(), mean, atol=1e-6)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == ["COVID-19", "non-COVID"] and metrics["n_folds"] == 1
    acc = metrics["overall"]["accuracy"]["mean"]
    assert acc == pytest.approx(
        np.mean(
            np.where(table["prob_COVID-19"] >= table["prob_non-COVID"], "COVID-19", "non-COVID")
            == table["label"]
        )
    )
    assert metrics["patient_level"]["per_class"]["COVID-19"]["sensitivity"]["n"] == 1
    for name in (
        "metrics.md",
        "confusion_matrix.png",
        "confusion_matrix_patient.png",
        "roc.png",
        "manifest.csv",
    ):
        assert (out / name).is_file(), name
    assert any("no folds" in w for w in metrics["warnings"])
    assert any("p(non-COVID) = p(Healthy) + p(Pneumonia)" in w for w in metrics["warnings"])
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "evaluate" and config["probability_sums"]["non-COVID"] == [
        "Healthy",
        "Pneumonia",
    ]

    from covidct.report.html import render_report

    page = render_report(out)
    assert "Evaluation setup" in page and "ensemble of 2 fold models" in page and "non-COVID" in page


def test_onnx_model_scores_like_its_checkpoint(cv_run: Path, phantoms, tmp_path: Path) -> None:
    from covidct.inference.export import export_onnx

    checkpoint = model_files(cv_run)[0]
    onnx = export_onnx(checkpoint, tmp_path / "m.onnx").path
    a = evaluate(
        EvaluateConfig(model=str(checkpoint), data=str(phantoms.images_dir), out=str(tmp_path / "a"))
    )
    b = evaluate(EvaluateConfig(model=str(onnx), data=str(phantoms.images_dir), out=str(tmp_path / "b")))
    pa, pb = read_predictions(a.predictions), read_predictions(b.predictions)
    assert a.classes == b.classes == ("COVID-19", "Healthy", "Pneumonia") and len(pa) == 72
    np.testing.assert_allclose(pa["prob_COVID-19"], pb["prob_COVID-19"], atol=1e-4)


def test_cli_evaluate_and_report(cv_run: Path, two_class_csv: Path, tmp_path: Path) -> None:
    from covidct.cli.main import app

    out = tmp_path / "cli"
    args = ["evaluate", str(cv_run), str(two_class_csv), "--out", str(out), "--level", "patient"]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "Traceback" not in refused.output
    assert "data's classes (COVID-19, non-COVID) differ from the model's (COVID-19, Healthy, Pneumonia)" in (
        " ".join(refused.output.split())
    )
    result = runner.invoke(
        app, [*args, "--map", "Healthy=non-COVID", "--map", "Pneumonia=non-COVID"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "patient level" in result.output and "slice level" not in result.output
    assert "72 slices, 18 patients" in result.output and "broken.png" in result.output
    report = runner.invoke(app, ["report", str(out)])
    assert report.exit_code == 0, report.output and (out / "report.html").is_file()
    bad_level = runner.invoke(app, [*args, "--level", "fold"])
    assert bad_level.exit_code == 2 and "--level must be one of" in bad_level.output


@pytest.mark.slow
@pytest.mark.real_data
def test_sarscov2_model_evaluated_on_covid_ct_md(shared_data: Path, tmp_path: Path) -> None:
    """Cross-dataset: trained on SARS-CoV-2 CT PNGs, scored on COVID-CT-MD DICOM series (COVID-19 vs rest)."""
    from covidct.training.config import TrainConfig, TrainRunConfig
    from covidct.training.fit import train

    subset = tmp_path / "sars"
    for folder in ("COVID", "non-COVID"):
        (subset / folder).mkdir(parents=True)
        for png in sorted((shared_data / "sarscov2-ct" / folder).glob("*.png"))[:24]:
            (subset / folder / png.name).symlink_to(png)  # never copy the real data
    tiny = TrainConfig(epochs=1, batch_size=16, image_size=32, pretrained=False, device="cpu", augment="none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = train(
            TrainRunConfig(data=str(subset), model="resnet10t", out=str(tmp_path / "m"), train=tiny)
        )
    out = tmp_path / "ext"
    result = evaluate(
        EvaluateConfig(
            model=str(fitted.best_path),
            data=str(shared_data / "covid-ct-md"),
            out=str(out),
            mapping=parse_mapping(["CAP=non-COVID", "Normal=non-COVID"]),
        )
    )
    assert result.run_metrics is not None
    write_run_metrics(result.run_metrics)  # what `covidct evaluate` does after the API call
    assert result.model_classes == result.classes == ("COVID-19", "non-COVID")
    assert result.data_classes == ("COVID-19", "Healthy", "Pneumonia") and not result.skipped
    table = read_predictions(out / "predictions.csv")
    assert len(table) == 235 and table["patient_id"].nunique() == 3
    assert table.groupby("label")["patient_id"].nunique().to_dict() == {"COVID-19": 1, "non-COVID": 2}
    assert dict(table["source_label"].value_counts()) == {"Pneumonia": 84, "Healthy": 77, "COVID-19": 74}
    metrics = json.loads((out / "metrics.json").read_text())
    for block in (metrics, metrics["patient_level"]):
        assert np.isfinite(block["overall"]["accuracy"]["mean"])
        covid = block["per_class"]["COVID-19"]
        assert np.isfinite(covid["sensitivity"]["mean"]) and np.isfinite(covid["specificity"]["mean"])
    assert sum(map(sum, metrics["patient_level"]["confusion_matrix"])) == 3
