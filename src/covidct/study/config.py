"""``StudyConfig``: one frozen, validated config for ``covidct compare`` (composes the training options)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from covidct.errors import ConfigError
from covidct.study.executors import EXECUTORS
from covidct.training.config import CVConfig, TrainConfig, check_near_duplicate_threshold


@dataclass(frozen=True, kw_only=True)
class StudyConfig:
    """Every model of ``models`` x every (repeat, fold) of one shared fold plan, run by ``executor``.

    ``models`` may hold the keywords ``paper`` / ``all`` (expanded by ``covidct.study.grid.resolve_models``).
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

    def cv_config(self, model: str, out: str | os.PathLike[str]) -> CVConfig:
        """The CV config of one model of the study (same data, folds, repeats, seed and training options)."""
        return CVConfig(
            data=self.data,
            model=model,
            out=str(out),
            folds=self.folds,
            repeats=self.repeats,
            seed=self.seed,
            group_near_duplicates=self.group_near_duplicates,
            near_duplicate_threshold=self.near_duplicate_threshold,
            train=self.train,
        )
