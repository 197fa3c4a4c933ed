"""``compare``: every model x every (repeat, fold) of ONE shared fold plan, resumable, local or on Ray.

1. :func:`plan_study` scans the data once and fixes the folds with :func:`covidct.training.cv.plan_cv`
   (they depend on the data and the seed only), writing ``STUDY/config.json``, ``env.json``,
   ``manifest.csv``, ``folds.csv`` and ``study.json`` (the study config and its models). A rerun with other
   data or options is refused.
2. Each missing job runs :func:`covidct.training.cv.run_fold` with the model's own input size into
   ``STUDY/models/<model>/folds/r{r}_f{f}/predictions.csv`` (written atomically). Finished jobs are skipped;
   failing jobs are retried ``max_retries`` times and then listed in the result and in
   ``STUDY/failures.json``.
3. Parameters and CPU latency per model go to ``STUDY/models.json`` (measured once per model and input size).
4. Tables and figures are recomputed from the predictions (:mod:`covidct.evaluation.tables`) and written by
   :mod:`covidct.report.study_tables`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from covidct.config import config_to_dict
from covidct.errors import ConfigError
from covidct.evaluation.tables import FAILURES_FILE, MODELS_FILE, STUDY_FILE, StudyTables
from covidct.report.study_tables import save_study_outputs
from covidct.study.config import StudyConfig, train_for
from covidct.study.executors import JobFn, JobOutcome, OnResult, create_executor
from covidct.study.grid import Job, expand_grid, model_run_dir, pending_jobs, resolve_models
from covidct.study.latency import measure_cpu_latency
from covidct.utils import write_json_atomic

if TYPE_CHECKING:
    from covidct.study.executors import Executor
    from covidct.training.config import TrainConfig
    from covidct.training.cv import CVPlan

log = logging.getLogger(__name__)


@dataclass
class StudyPlan:
    """The study's models, its shared CV plan and every job."""

    cfg: StudyConfig
    study_dir: Path
    models: tuple[str, ...]
    cv_plan: CVPlan
    jobs: list[Job]


@dataclass(frozen=True)
class StudyJobRunner:
    """The job function of a study (picklable: Ray ships it to the workers once)."""

    cv_plan: CVPlan
    study_dir: str
    train: TrainConfig  # every model's, unless model_train names it
    progress: Any = field(default=None, compare=False)
    model_train: tuple[tuple[str, TrainConfig], ...] = ()  # StudyConfig.model_train

    def __call__(self, job: Job) -> Path:
        from covidct.training.cv import run_fold

        # the unresolved train config: each model gets its own input size (plan.cfg.train is the planning
        # model's)
        return run_fold(
            self.cv_plan,
            job.repeat,
            job.fold,
            model=job.model,
            train=train_for(self.train, self.model_train, job.model),
            run_dir=model_run_dir(self.study_dir, job.model),
            progress=self.progress,
        )

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["progress"] = None  # a live progress bar stays with the driver
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


@dataclass(frozen=True)
class StudyResult:
    """What a ``compare`` call did: jobs run / skipped / failed, and the recomputed tables."""

    study_dir: Path
    models: tuple[str, ...]
    total: int
    skipped: int
    outcomes: list[JobOutcome]
    tables: StudyTables | None

    @property
    def failures(self) -> list[JobOutcome]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def ran(self) -> int:
        return sum(o.ok for o in self.outcomes)

    @property
    def ok(self) -> bool:
        return not self.failures


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except ValueError:
        return None


def plan_study(cfg: StudyConfig) -> StudyPlan:
    """Resolve the models, fix the shared folds (``STUDY/folds.csv``) and record the study config.

    The CV plan is made for one *planning model* (``model`` in ``STUDY/config.json``, kept on reruns, so
    adding models to a study does not count as "other options"); the folds do not depend on it.

    Raises:
        ConfigError: unknown model names, or ``STUDY`` holds a study with other data, folds or training
        options.
    """
    from covidct.training.cv import plan_cv

    study = Path(cfg.out).resolve()
    cfg = replace(cfg, data=str(Path(cfg.data).resolve()), out=str(study))
    models = resolve_models(cfg.models)
    previous = _read_json(study / STUDY_FILE) or {}
    recorded = (_read_json(study / "config.json") or {}).get("model")
    planning_model = recorded or models[0]
    unknown = sorted({name for name, _ in cfg.model_train} - set(models))
    if unknown:
        raise ConfigError(f"model_train names {', '.join(unknown)}, not among the study's models")
    plan = plan_cv(cfg.cv_config(planning_model, study))
    all_models = tuple(dict.fromkeys([*previous.get("models", []), *models]))
    # models of earlier runs keep their recorded overrides, so study.json still replays them
    kept = tuple((name, train) for name, train in _recorded_overrides(previous) if name not in models)
    recorded_cfg = replace(cfg, models=all_models, model_train=kept + cfg.model_train)
    # replayable with `covidct compare --config STUDY/study.json`; the data facts are in env.json
    write_json_atomic(study / STUDY_FILE, config_to_dict(recorded_cfg))
    jobs = expand_grid(models, plan.jobs)
    return StudyPlan(cfg=cfg, study_dir=study, models=models, cv_plan=plan, jobs=jobs)


def _recorded_overrides(study_json: dict[str, Any]) -> tuple[tuple[str, TrainConfig], ...]:
    """The ``model_train`` overrides of a recorded ``study.json`` (none when absent or unreadable)."""
    from covidct.study.config import model_train_pairs

    try:
        return model_train_pairs(study_json.get("model_train") or ())
    except (ConfigError, TypeError):
        return ()


def _write_model_configs(plan: StudyPlan) -> None:
    """``STUDY/models/<model>/config.json``: each model's resolved CV config (``covidct metrics`` works).

    Raises:
        ConfigError: a model's folder holds a config with other options (its own ``model_train`` changed).
    """
    from covidct.models.registry import get_spec
    from covidct.training.cv import comparable_config

    configs: dict[Path, dict[str, Any]] = {}
    for model in plan.models:
        run = model_run_dir(plan.study_dir, model)
        cv = plan.cfg.cv_config(model, run)
        resolved = config_to_dict(replace(cv, train=cv.train.resolve(get_spec(model))))
        previous = _read_json(run / "config.json")
        if isinstance(previous, dict):
            previous = {k: v for k, v in previous.items() if k not in ("study", "warnings")}
        if isinstance(previous, dict) and comparable_config(previous) != comparable_config(resolved):
            raise ConfigError(
                f"{plan.study_dir}: {model} was trained with other options; use another --out (or --config "
                f"{plan.study_dir / STUDY_FILE} to resume it)"
            )
        configs[run] = resolved
    for run, resolved in configs.items():
        write_json_atomic(
            run / "config.json",
            {**resolved, "study": str(plan.study_dir), "warnings": plan.cv_plan.warnings},
        )


def measure_models(plan: StudyPlan) -> dict[str, Any]:
    """Parameters, input size and CPU latency per model into ``STUDY/models.json`` (cached per input size)."""
    from covidct.models.factory import count_parameters
    from covidct.models.registry import get_spec

    path = plan.study_dir / MODELS_FILE
    info: dict[str, Any] = _read_json(path) or {}
    n_classes = len(plan.cv_plan.classes)
    for model in plan.models:
        spec = get_spec(model)
        size = plan.cfg.train_for(model).image_size or spec.input_size
        entry = info.get(model, {})
        if (
            entry.get("image_size") == size
            and entry.get("params") is not None
            and (entry.get("latency_ms") is not None or not plan.cfg.latency)
        ):
            continue
        entry = {
            "timm_name": spec.timm_name,
            "family": spec.family,
            "image_size": size,
            "params": count_parameters(model, n_classes),
            "latency_ms": None,
        }
        if plan.cfg.latency:
            lat = measure_cpu_latency(
                model,
                size,
                num_classes=n_classes,
                runs=plan.cfg.latency_runs,
                threads=plan.cfg.latency_threads,
            )
            entry.update(
                latency_ms=lat.latency_ms,
                latency_min_ms=lat.min_ms,
                latency_runs=lat.runs,
                latency_threads=lat.threads,
                latency_batch_size=lat.batch_size,
            )
        info[model] = entry
        write_json_atomic(path, info)
    return info


def compare(
    cfg: StudyConfig,
    *,
    executor: Executor | None = None,
    job_fn: JobFn | None = None,
    progress: Any = None,
    on_result: OnResult | None = None,
) -> StudyResult:
    """Run the comparison study described by ``cfg`` (see the module docstring).

    Args:
        executor: overrides the one named by ``cfg.executor`` (tests).
        job_fn: overrides the job function (tests inject failures); default :class:`StudyJobRunner`.
        progress: a rich ``Progress`` for the local executor's per-job bars.
        on_result: called in the driver with each job's outcome as it arrives.

    Raises:
        ConfigError / DataError: bad options or data (before any job runs).
    """
    plan = plan_study(cfg)
    _write_model_configs(plan)
    todo, done = pending_jobs(plan.study_dir, plan.jobs)
    if executor is None:
        executor = create_executor(
            cfg.executor,
            max_retries=cfg.max_retries,
            ray_address=cfg.ray_address,
            cpus_per_job=cfg.cpus_per_job,
            gpus_per_job=cfg.gpus_per_job,
        )
    if job_fn is None:
        local = getattr(executor, "name", "") == "local"
        job_fn = StudyJobRunner(
            plan.cv_plan,
            str(plan.study_dir),
            plan.cfg.train,
            progress if local else None,
            model_train=plan.cfg.model_train,
        )
    log.info(
        "study %s: %d jobs, %d done, %d to run on %r",
        plan.study_dir,
        len(plan.jobs),
        len(done),
        len(todo),
        executor,
    )
    outcomes = executor.run(todo, job_fn, on_result=on_result)
    write_json_atomic(
        plan.study_dir / FAILURES_FILE,
        [
            {
                "job": o.job.key,
                "model": o.job.model,
                "repeat": o.job.repeat,
                "fold": o.job.fold,
                "attempts": o.attempts,
                "error": o.error,
            }
            for o in outcomes
            if not o.ok
        ],
    )
    measure_models(plan)
    tables = None
    if len(done) + sum(o.ok for o in outcomes) > 0:
        tables = save_study_outputs(plan.study_dir)
    elif not plan.jobs:
        raise ConfigError("the study has no jobs")
    return StudyResult(
        study_dir=plan.study_dir,
        models=plan.models,
        total=len(plan.jobs),
        skipped=len(done),
        outcomes=outcomes,
        tables=tables,
    )
