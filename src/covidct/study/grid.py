"""The study grid: which models, which (repeat, fold) pairs, and where each job's result lives.

A study folder is laid out as::

    STUDY/study.json                      resolved study config (models, folds, repeats, seed, train options)
    STUDY/folds.csv                       the one fold assignment every model shares (paired comparison)
    STUDY/models/<model>/                 one CV run folder per model (config.json, env.json, manifest,
    folds.csv)
    STUDY/models/<model>/folds/r{r}_f{f}/predictions.csv   one job's output, written atomically

A job is done exactly when its ``predictions.csv`` exists: the file is written with ``os.replace``, so a job
killed mid-way leaves nothing behind and simply reruns (issue 6).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from covidct.errors import ConfigError
from covidct.evaluation.predictions import model_dirname

PathLike = str | os.PathLike[str]

#: ``--models`` keywords: the paper's 20 backbones, or every registered model.
MODEL_SETS = ("paper", "all")


@dataclass(frozen=True, order=True)
class Job:
    """One unit of work: train ``model`` on the training part of (repeat, fold), predict its test part."""

    model: str
    repeat: int
    fold: int

    @property
    def key(self) -> str:
        return f"{self.model}/r{self.repeat}_f{self.fold}"

    def __str__(self) -> str:
        return self.key


def model_run_dir(study_dir: PathLike, model: str) -> Path:
    """``STUDY/models/<model>``: the model's CV run folder."""
    return Path(study_dir) / "models" / model_dirname(model)


def job_dir(study_dir: PathLike, job: Job) -> Path:
    """``STUDY/models/<model>/folds/r{repeat}_f{fold}``."""
    return model_run_dir(study_dir, job.model) / "folds" / f"r{job.repeat}_f{job.fold}"


def predictions_path(study_dir: PathLike, job: Job) -> Path:
    """Where the job's predictions table is written."""
    return job_dir(study_dir, job) / "predictions.csv"


def job_done(study_dir: PathLike, job: Job) -> bool:
    """True when the job's predictions file exists (it is only ever written atomically)."""
    return predictions_path(study_dir, job).is_file()


def resolve_models(models: str | Sequence[str]) -> tuple[str, ...]:
    """``"paper"`` -> the paper's 20 names, ``"all"`` -> every registered model, ``"a,b"`` -> ``("a", "b")``.

    Names are checked against the registry (paper names or any timm architecture) and deduplicated, keeping
    order.

    Raises:
        ConfigError: an empty list; UnknownModelError: a name that is neither a paper model nor a timm model.
    """
    from covidct.models.registry import get_spec, list_models
    from covidct.models.zoo import PAPER_MODELS

    items = (
        [m.strip() for m in models.split(",")]
        if isinstance(models, str)
        else [str(m).strip() for m in models]
    )
    items = [m for m in items if m]
    if not items:
        raise ConfigError("--models: give 'paper', 'all' or a comma-separated list of model names")
    names: list[str] = []
    for item in items:
        if item.lower() == "paper":
            names += [s.name for s in PAPER_MODELS]
        elif item.lower() == "all":
            names += [s.name for s in list_models()]
        else:
            get_spec(item)  # raises UnknownModelError with close matches
            names.append(item)
    unique = list(dict.fromkeys(names))
    dirs = [model_dirname(n) for n in unique]
    clash = {d for d in dirs if dirs.count(d) > 1}
    if clash:
        raise ConfigError(f"--models: names map to the same folder {sorted(clash)}")
    return tuple(unique)


def expand_grid(models: Iterable[str], pairs: Iterable[tuple[int, int]]) -> list[Job]:
    """Every (model, repeat, fold) job, models outermost (one model's folds finish together)."""
    pairs = sorted(set(pairs))
    return [Job(model, repeat, fold) for model in models for repeat, fold in pairs]


def pending_jobs(study_dir: PathLike, jobs: Iterable[Job]) -> tuple[list[Job], list[Job]]:
    """Split ``jobs`` into (to run, already done)."""
    todo: list[Job] = []
    done: list[Job] = []
    for job in jobs:
        (done if job_done(study_dir, job) else todo).append(job)
    return todo, done
