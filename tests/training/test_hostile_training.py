"""Training never hides a bad run: a NaN loss names its batch's files, unreadable files are reported and
listed, the plain path,label CSV is accepted, killed runs' temp files are cleaned, sizes are bounded."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from covidct.data.manifest import Sample
from covidct.errors import ConfigError, DataError
from covidct.training.config import CVConfig, TrainConfig, TrainRunConfig
from covidct.training.fit import fit, load_samples, train

CLASSES = ("COVID-19", "Healthy")
TINY = dict(batch_size=4, image_size=32, pretrained=False, lr=1e-3, device="cpu", epochs=1)


def _split(samples: list[Sample]) -> tuple[list[Sample], list[Sample]]:
    val = {"cov3", "hea3"}
    return [s for s in samples if s.patient_id not in val], [s for s in samples if s.patient_id in val]


def test_non_finite_loss_stops_naming_the_file(
    disc_samples: list[Sample], tmp_path: Path, monkeypatch
) -> None:
    """Before: the NaN loss was never 'best', and the user saw 'best.pt missing (was the folder edited?)'."""
    import covidct.training.fit as fit_module
    from covidct.data.dataset import default_loader
    from covidct.training.loop import NonFiniteError

    train_samples, val = _split(disc_samples)
    poisoned = train_samples[2].path
    real = default_loader("lung")

    def loader(window: str = "lung"):  # type: ignore[no-untyped-def]
        def load(path: str) -> np.ndarray:
            image = real(path)
            return np.full_like(image, np.nan) if path == poisoned else image

        return load

    monkeypatch.setattr(fit_module, "default_loader", loader)
    with pytest.raises(NonFiniteError, match="training stopped: the loss is nan") as info:
        fit(train_samples, val, CLASSES, "resnet10t", TrainConfig(**TINY), tmp_path / "run")
    assert poisoned in str(info.value) and "best.pt" not in str(info.value)
    assert not (tmp_path / "run" / "best.pt").exists()


def _plain_csv(disc_data: Path, path: Path, *, with_patients: bool = True, extra: list[str] = ()) -> Path:
    rows = [(str(p), p.parent.parent.name, p.parent.name) for p in sorted(disc_data.glob("*/*/*.png"))]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "patient_id"] if with_patients else ["path", "label"])
        for row in rows:
            writer.writerow(row if with_patients else row[:2])
        for bad in extra:
            writer.writerow([bad, "Healthy", "hea0"] if with_patients else [bad, "Healthy"])
    return path


@pytest.mark.parametrize("with_patients", [True, False])
def test_load_samples_accepts_the_plain_csv(disc_data: Path, tmp_path: Path, with_patients: bool) -> None:
    samples, classes, _ = load_samples(
        _plain_csv(disc_data, tmp_path / "data.csv", with_patients=with_patients)
    )
    assert classes == CLASSES and len(samples) == 24
    assert (samples[0].patient_id is not None) == with_patients


def test_train_reports_and_lists_unreadable_files(disc_data: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    data = _plain_csv(disc_data, tmp_path / "data.csv", extra=[str(broken)])
    cfg = TrainRunConfig(
        data=str(data), model="resnet10t", out=str(tmp_path / "run"), train=TrainConfig(**TINY)
    )
    result = train(cfg)
    assert [p for p, _ in result.skipped] == [str(broken)]
    record = json.loads((tmp_path / "run" / "warnings.json").read_text())
    assert record["skipped"][0][0] == str(broken) and "1 unreadable file(s)" in " ".join(record["warnings"])
    with open(tmp_path / "run" / "manifest.csv", newline="") as handle:
        rows = {r["path"]: r["readable"] for r in csv.DictReader(handle)}
    assert rows[str(broken)] == "false"


def test_stale_checkpoint_temps_are_removed_at_the_next_start(
    disc_samples: list[Sample], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    stale = [run / ".best.pt.k1ll3d_9.tmp", run / ".last.pt.ab12cd34.tmp"]
    for path in stale:
        path.write_bytes(b"\0" * 1024)  # what kill -9 leaves mid-torch.save
    keep = run / "notes.tmp"
    keep.write_text("the user's own file")
    train_samples, val = _split(disc_samples)
    fit(train_samples, val, CLASSES, "resnet10t", TrainConfig(**TINY), run, resume=True)
    assert not any(p.exists() for p in stale) and keep.exists()
    assert not list(run.glob(".*.tmp"))


@pytest.mark.slow  # two folds of CV (~30 s of CPU)
def test_cv_resume_removes_stale_temps_of_finished_folds(disc_data: Path, tmp_path: Path) -> None:
    from covidct.training.cv import cross_validate

    cfg = CVConfig(
        data=str(disc_data),
        model="resnet10t",
        out=str(tmp_path / "run"),
        folds=2,
        repeats=1,
        train=TrainConfig(**TINY),
    )
    cross_validate(cfg)
    stale = [
        tmp_path / "run" / "folds" / "r0_f1" / ".best.pt.k1ll3d_9.tmp",
        tmp_path / "run" / ".folds.csv.x.tmp",
    ]
    for path in stale:
        path.write_bytes(b"\0" * 64)
    result = cross_validate(cfg)  # every fold is done: only the resume sweep can remove them
    assert result.trained == 0 and not any(p.exists() for p in stale)


@pytest.mark.parametrize("size", [100000, 8])
def test_image_size_is_bounded_with_a_reason(size: int) -> None:
    with pytest.raises(ConfigError, match="image_size must be between 16 and 4096 px") as info:
        TrainConfig(image_size=size)
    assert str(size) in str(info.value)


def test_split_errors_name_the_data_path(disc_data: Path, tmp_path: Path) -> None:
    from covidct.training.cv import plan_cv

    cfg = CVConfig(data=str(disc_data), model="resnet10t", out=str(tmp_path / "run"), folds=9, repeats=1)
    with pytest.raises(DataError) as info:
        plan_cv(cfg, write=False)
    assert str(info.value).startswith(str(disc_data)) and "<dataset>" not in str(info.value)
