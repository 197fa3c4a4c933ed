"""The comparison study on phantoms: shared folds, resume, failures retried and reported, Ray == local."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from covidct.errors import ConfigError
from covidct.evaluation.predictions import read_predictions
from covidct.study.compare import StudyJobRunner, compare
from covidct.study.config import StudyConfig
from covidct.study.executors import LocalExecutor
from covidct.study.grid import Job, job_done, predictions_path, resolve_models
from covidct.training.config import TrainConfig

MODELS = ("resnet10t", "mobilenetv3_small_050")
JOBS = [Job(m, 0, f) for m in MODELS for f in (0, 1)]


def tiny_config(data: Path, out: Path, **kw) -> StudyConfig:
    train = TrainConfig(epochs=1, image_size=32, batch_size=8, pretrained=False, seed=0)
    return StudyConfig(
        data=str(data),
        out=str(out),
        models=MODELS,
        folds=2,
        repeats=1,
        seed=0,
        train=train,
        latency_runs=1,
        **kw,
    )


@pytest.fixture(scope="module")
def local_study(phantoms, tmp_path_factory) -> tuple[StudyConfig, object]:
    cfg = tiny_config(phantoms.images_dir, tmp_path_factory.mktemp("study") / "local")
    return cfg, compare(cfg)


def _stamp(study: Path) -> dict[Job, int]:
    return {job: predictions_path(study, job).stat().st_mtime_ns for job in JOBS}


def test_every_job_runs_on_the_same_folds(local_study) -> None:
    cfg, result = local_study
    study = Path(cfg.out)
    assert result.ok and result.total == 4 and result.ran == 4 and result.skipped == 0
    assert all(job_done(study, job) for job in JOBS)
    folds = pd.read_csv(study / "folds.csv")
    for model in MODELS:
        df = read_predictions(sorted((study / "models" / model / "folds").glob("*/predictions.csv")))
        assert set(df["model"]) == {model}
        for fold in (0, 1):
            expected = set(folds[(folds["fold"] == fold) & (folds["split"] == "test")]["path"])
            assert set(df[df["fold"] == fold]["path"]) == expected  # paired: identical test sets
    info = json.loads((study / "models.json").read_text())
    assert set(info) == set(MODELS) and all(
        info[m]["latency_ms"] > 0 and info[m]["params"] > 0 for m in MODELS
    )
    assert result.tables is not None and result.tables.models == list(MODELS)
    assert len(result.tables.wilcoxon) == 2
    assert json.loads((study / "failures.json").read_text()) == []
    assert json.loads((study / "study.json").read_text())["models"] == list(MODELS)


def test_rerun_reruns_only_the_removed_job(local_study) -> None:
    cfg, _ = local_study
    study = Path(cfg.out)
    before = _stamp(study)
    removed = JOBS[3]
    kept = pd.read_csv(predictions_path(study, removed))
    predictions_path(study, removed).unlink()  # as if its worker died before the atomic rename
    (predictions_path(study, removed).parent / ".predictions.csv.x.tmp").write_text("partial")
    result = compare(cfg)
    assert result.ok and result.ran == 1 and result.skipped == 3
    assert [o.job for o in result.outcomes] == [removed]
    after = _stamp(study)
    assert all(after[j] == before[j] for j in JOBS if j != removed)
    redone = pd.read_csv(predictions_path(study, removed))
    np.testing.assert_allclose(
        redone.filter(like="prob_").to_numpy(), kept.filter(like="prob_").to_numpy(), atol=1e-5
    )  # same seed, same result


class Interrupt(StudyJobRunner):
    """Ctrl-C in the middle of the second job."""

    def __call__(self, job: Job) -> Path:
        if job == JOBS[1]:
            raise KeyboardInterrupt
        return super().__call__(job)


def test_resume_after_interrupt(phantoms, tmp_path: Path) -> None:
    from dataclasses import replace

    from covidct.study.compare import plan_study

    cfg = replace(tiny_config(phantoms.images_dir, tmp_path / "s", latency=False), models=MODELS[:1])
    plan = plan_study(cfg)
    runner = Interrupt(plan.cv_plan, str(plan.study_dir), cfg.train)
    with pytest.raises(KeyboardInterrupt):
        compare(cfg, job_fn=runner)
    study = Path(cfg.out)
    assert [job_done(study, j) for j in JOBS[:2]] == [True, False]
    assert not list(study.rglob(".predictions.csv.*"))  # nothing half-written
    before = _stamp_some(study, JOBS[:1])
    result = compare(cfg)
    assert result.ok and result.skipped == 1 and [o.job for o in result.outcomes] == [JOBS[1]]
    assert _stamp_some(study, JOBS[:1]) == before


def _stamp_some(study: Path, jobs) -> list[int]:
    return [predictions_path(study, j).stat().st_mtime_ns for j in jobs]


@dataclass(frozen=True)
class Broken:
    """A job function whose mobilenet jobs always fail; counts attempts."""

    inner: StudyJobRunner
    calls: list

    def __call__(self, job: Job) -> Path:
        self.calls.append(job)
        if job.model == MODELS[1]:
            raise RuntimeError(f"out of memory in {job}")
        return self.inner(job)


def test_failing_job_is_retried_then_reported(local_study, tmp_path: Path) -> None:
    cfg, _ = local_study
    from covidct.study.compare import plan_study

    predictions_path(cfg.out, JOBS[3]).unlink()
    plan = plan_study(cfg)
    calls: list = []
    fn = Broken(StudyJobRunner(plan.cv_plan, str(plan.study_dir), cfg.train), calls)
    result = compare(cfg, executor=LocalExecutor(max_retries=2), job_fn=fn)
    assert not result.ok and [o.job for o in result.failures] == [JOBS[3]]
    assert calls == [JOBS[3]] * 3  # 1 try + 2 retries; finished jobs are not rerun
    assert all(o.attempts == 3 and "out of memory" in o.error for o in result.failures)
    failures = json.loads((Path(cfg.out) / "failures.json").read_text())
    assert [f["job"] for f in failures] == [JOBS[3].key]
    assert result.tables is not None
    assert result.tables.missing == [f"{MODELS[1]}: 1 of 2 jobs have no predictions"]
    # the next run retries it and succeeds
    result = compare(cfg)
    assert result.ok and result.ran == 1 and json.loads((Path(cfg.out) / "failures.json").read_text()) == []


def test_study_refuses_other_options(local_study) -> None:
    cfg, _ = local_study
    from dataclasses import replace

    with pytest.raises(ConfigError, match="other options"):
        compare(replace(cfg, train=replace(cfg.train, epochs=2)))


def test_resolve_models() -> None:
    paper = resolve_models("paper")
    assert len(paper) == 20 and paper[0] == "EfficientNetB0"
    assert resolve_models("resnet10t, resnet10t,EfficientNetB0") == ("resnet10t", "EfficientNetB0")
    with pytest.raises(ConfigError):
        resolve_models(" , ")
    with pytest.raises(ConfigError, match="unknown model"):
        resolve_models("resnet10t,EfficientNetB9")


@pytest.mark.slow
def test_ray_gives_the_same_predictions(local_study, phantoms, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    cfg, _ = local_study
    ray_cfg = tiny_config(
        phantoms.images_dir, tmp_path / "ray", executor="ray", cpus_per_job=2, latency=False
    )
    result = compare(ray_cfg)
    assert result.ok and result.ran == 4
    for job in JOBS:
        ours = pd.read_csv(predictions_path(ray_cfg.out, job))
        theirs = pd.read_csv(predictions_path(cfg.out, job))
        assert ours["path"].tolist() == theirs["path"].tolist()
        ours_p, theirs_p = ours.filter(like="prob_").to_numpy(), theirs.filter(like="prob_").to_numpy()
        # same seed, same folds, same data order: equal up to float32 reduction order (measured <= 1.3e-5
        # after training; a Ray worker's BLAS may split sums differently), and the same predicted classes
        np.testing.assert_allclose(ours_p, theirs_p, atol=1e-4)
        assert (ours_p.argmax(1) == theirs_p.argmax(1)).all()
    import ray

    assert not ray.is_initialized()  # the local instance it started is shut down
    assert (Path(ray_cfg.out) / "folds.csv").read_text() == (Path(cfg.out) / "folds.csv").read_text()


def test_model_train_overrides_reach_each_model_and_round_trip(
    phantoms, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pickle
    from dataclasses import replace

    import covidct.study.compare as compare_module
    from covidct.config import load_config

    base = tiny_config(phantoms.images_dir, tmp_path / "s", latency=False)
    tuned = replace(base.train, pretrained=True, lr=1e-3, image_size=48, head_warmup=1)
    cfg = replace(base, model_train=((MODELS[1], tuned),))
    assert cfg.train_for(MODELS[0]) == base.train and cfg.train_for(MODELS[1]) == tuned
    seen: dict[str, TrainConfig] = {}

    def fake_run_fold(plan, repeat, fold, *, model, train, run_dir, progress):  # noqa: ANN001, ANN202
        seen[model] = train  # what the job would train with
        return Path(run_dir)

    monkeypatch.setattr("covidct.training.cv.run_fold", fake_run_fold)
    monkeypatch.setattr(compare_module, "save_study_outputs", lambda study: None)  # no predictions here
    result = compare(cfg)
    assert result.ok and seen == {MODELS[0]: base.train, MODELS[1]: tuned}
    study = Path(cfg.out)
    resolved = {m: json.loads((study / "models" / m / "config.json").read_text())["train"] for m in MODELS}
    assert [resolved[m]["pretrained"] for m in MODELS] == [False, True]
    assert [resolved[m]["lr"] for m in MODELS] == [base.train.lr, 1e-3]
    assert [resolved[m]["head_warmup"] for m in MODELS] == [0, 1]
    info = json.loads((study / "models.json").read_text())
    assert [info[m]["image_size"] for m in MODELS] == [32, 48]  # each model's own input size

    # study.json replays the overrides (`covidct compare --config STUDY/study.json`); the replay is a rerun
    loaded = load_config(StudyConfig, study / "study.json")
    assert loaded.model_train == cfg.model_train and loaded.train_for(MODELS[1]) == tuned
    assert compare(loaded).ok
    # the runner ships to Ray workers with its overrides
    plan = compare_module.plan_study(loaded)
    runner = StudyJobRunner(plan.cv_plan, str(plan.study_dir), loaded.train, model_train=loaded.model_train)
    assert pickle.loads(pickle.dumps(runner)).model_train == ((MODELS[1], tuned),)
    # a rerun of one model keeps the other's recorded override; a changed override of a trained model: refused
    compare(replace(base, models=MODELS[:1]))
    assert load_config(StudyConfig, study / "study.json").model_train == cfg.model_train
    with pytest.raises(ConfigError, match=f"{MODELS[1]} was trained with other options"):
        compare(replace(cfg, model_train=((MODELS[1], replace(tuned, lr=5e-4)),)))
    with pytest.raises(ConfigError, match="not among the study's models"):
        compare(replace(base, model_train=(("resnet18", tuned),)))


def test_model_train_is_validated(tmp_path: Path) -> None:
    train = TrainConfig(pretrained=False)
    as_json = StudyConfig(data="d", out="o", models=("a",), model_train=[["a", {"lr": 0.01}]])
    assert as_json.train_for("a") == TrainConfig(lr=0.01) and as_json.train_for("b") == TrainConfig()
    assert StudyConfig(data="d", out="o", model_train={"a": train}).model_train == (("a", train),)
    with pytest.raises(ConfigError, match="more than once"):
        StudyConfig(data="d", out="o", model_train=(("a", train), ("a", train)))
    with pytest.raises(ConfigError, match="one fold plan"):
        StudyConfig(data="d", out="o", model_train={"a": TrainConfig(val_fraction=0.3)})
    with pytest.raises(ConfigError, match="unknown option"):
        StudyConfig(data="d", out="o", model_train={"a": {"learning_rate": 0.1}})
