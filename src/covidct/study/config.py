"""``StudyConfig``: one frozen, validated config for ``covidct compare`` (composes the training options)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from covidct.config import config_from_dict
from covidct.errors import ConfigError
from covidct.study.executors import EXECUTORS
from covidct.training.config import CVConfig, TrainConfig, check_near_duplicate_threshold


@dataclass(frozen=True, kw_only=True)
class StudyConfig:
    """Every model of ``models`` x every (repeat, fold) of one shared fold plan, run by ``executor``.

    ``models`` may hold the keywords ``paper`` / ``all`` (expanded by ``covidct.study.grid.resolve_models``).
    ``train`` trains every model except those named in ``model_train``: ``((model, TrainConfig), ...)``
    per-model overrides (e.g. a pretrained model beside from-scratch ones); :meth:`train_for` picks.
    A mapping or JSON pairs (``[[name, {...}], ...]``) are accepted too.
    """

    data: str
    out: str
    models: tuple[str, ...] = ("paper",)
    folds: int = 5
    repeats: int = 5
    seed: int = 0  # fold assignment, shared by all models
    group_near_duplicates: bool = False  # see CVConfig
    near_duplicate_threshold: int = 32
    train: TrainConfig = field(default_factory=TrainConfig)
    model_train: tuple[tuple[str, TrainConfig], ...] = ()
    executor: str = "local"
    ray_address: str | None = None
    cpus_per_job: float = 1.0
    gpus_per_job: float = 0.0
    max_retries: int = 1
    latency: bool = True  # measure CPU latency (batch 1) per model
    latency_runs: int = 5
    latency_threads: int = 1

    def __post_init__(self) -> None:
        for name in ("data", "out"):
            value = getattr(self, name)
            if isinstance(value, (Path, os.PathLike)):
                object.__setattr__(self, name, str(value))
        if isinstance(self.models, str):
            object.__setattr__(self, "models", tuple(m.strip() for m in self.models.split(",") if m.strip()))
        else:
            object.__setattr__(self, "models", tuple(self.models))
        if not self.models:
            raise ConfigError("--models: give 'paper', 'all' or a comma-separated list of model names")
        check_near_duplicate_threshold(self.near_duplicate_threshold)
        object.__setattr__(self, "model_train", model_train_pairs(self.model_train))
        for model, train in self.model_train:
            if (
                train.val_fraction != self.train.val_fraction
            ):  # the shared fold plan fixes the validation split
                raise ConfigError(
                    f"model_train[{model}]: val_fraction {train.val_fraction} differs from the study's "
                    f"{self.train.val_fraction}; all models share one fold plan"
                )
        if self.folds < 2:
            raise ConfigError(f"folds must be >= 2, got {self.folds}")
        if self.repeats < 1:
            raise ConfigError(f"repeats must be >= 1, got {self.repeats}")
        if self.executor not in EXECUTORS:
            raise ConfigError(f"--executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.ray_address and self.executor != "ray":
            raise ConfigError("--ray-address needs --executor ray")
        if self.cpus_per_job <= 0:
            raise ConfigError(f"--cpus-per-job must be > 0, got {self.cpus_per_job}")
        if self.gpus_per_job < 0:
            raise ConfigError(f"--gpus-per-job must be >= 0, got {self.gpus_per_job}")
        if self.max_retries < 0:
            raise ConfigError(f"--max-retries must be >= 0, got {self.max_retries}")
        if self.latency_runs < 1 or self.latency_threads < 1:
            raise ConfigError("latency_runs and latency_threads must be >= 1")

    def train_for(self, model: str) -> TrainConfig:
        """The training options of ``model``: its ``model_train`` override, else ``train``."""
        return train_for(self.train, self.model_train, model)

    def cv_config(self, model: str, out: str | os.PathLike[str]) -> CVConfig:
        """A CV config of the study: its data, folds, repeats and seed, and the model's training options."""
        return CVConfig(
            data=self.data,
            model=model,
            out=str(out),
            folds=self.folds,
            repeats=self.repeats,
            seed=self.seed,
            group_near_duplicates=self.group_near_duplicates,
            near_duplicate_threshold=self.near_duplicate_threshold,
            train=self.train_for(model),
        )


def train_for(
    default: TrainConfig, model_train: tuple[tuple[str, TrainConfig], ...], model: str
) -> TrainConfig:
    """``model``'s override in ``model_train``, else ``default``."""
    return next((train for name, train in model_train if name == model), default)


def model_train_pairs(value: Mapping[str, Any] | Iterable[Any]) -> tuple[tuple[str, TrainConfig], ...]:
    """Per-model training overrides as ``((model, TrainConfig), ...)``, from a mapping or pairs whose configs
    may be dicts (JSON). Raises ConfigError on a malformed entry or a model named twice."""
    items = list(value.items()) if isinstance(value, Mapping) else list(value)
    pairs: list[tuple[str, TrainConfig]] = []
    for item in items:
        if not isinstance(item, (list, tuple)) or len(item) != 2 or not isinstance(item[0], str):
            raise ConfigError(f"model_train: expected [model, train options] pairs, got {item!r}")
        name, train = item
        if isinstance(train, Mapping):
            train = config_from_dict(TrainConfig, dict(train))
        if not isinstance(train, TrainConfig):
            raise ConfigError(f"model_train[{name}]: expected train options, got {type(train).__name__}")
        pairs.append((name, train))
    names = [name for name, _ in pairs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"model_train: {', '.join(twice)} named more than once")
    return tuple(pairs)
