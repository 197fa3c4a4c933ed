"""Executors run a list of study jobs: in-process one after another (``local``) or as Ray tasks (``ray``).

Both take the same job function ``fn(job) -> Path`` (picklable for Ray) and return one :class:`JobOutcome` per
job, in the order the jobs were given: a job that still fails after ``max_retries`` retries is reported as
failed, never dropped. Results reach the study folder through the job function itself, which writes its
predictions file atomically (temp file + ``os.replace``): a worker that dies mid-job leaves no partial file,
Ray reruns the task (``max_retries`` covers worker crashes, ``retry_exceptions`` job errors), and a rerun of
the study skips it once the file exists. Ctrl-C stops the local executor at once; finished jobs stay saved.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from covidct.errors import ConfigError
from covidct.study.grid import Job

log = logging.getLogger(__name__)

JobFn = Callable[[Job], Path]
OnResult = Callable[["JobOutcome"], None]

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class JobOutcome:
    """What happened to one job. ``attempts`` is None when the executor cannot know (Ray successes)."""

    job: Job
    ok: bool
    attempts: int | None
    path: Path | None = None
    error: str | None = None


class Executor(Protocol):
    name: str

    def run(self, jobs: Sequence[Job], fn: JobFn, *, on_result: OnResult | None = None) -> list[JobOutcome]:
        """Run every job; never raise for a failing job (report it in its outcome)."""
        ...


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


def _check_retries(max_retries: int) -> int:
    if max_retries < 0:
        raise ConfigError(f"--max-retries must be >= 0, got {max_retries}")
    return max_retries


class LocalExecutor:
    """Sequential, in-process: no extra service. A failing job is retried ``max_retries`` times."""

    name = "local"

    def __init__(self, *, max_retries: int = 1) -> None:
        self.max_retries = _check_retries(max_retries)

    def __repr__(self) -> str:
        return f"LocalExecutor(max_retries={self.max_retries})"

    def run(self, jobs: Sequence[Job], fn: JobFn, *, on_result: OnResult | None = None) -> list[JobOutcome]:
        outcomes: list[JobOutcome] = []
        for job in jobs:
            outcome: JobOutcome | None = None
            for attempt in range(1, self.max_retries + 2):
                try:
                    path = fn(job)
                except Exception as exc:  # a job's bug or data problem must not stop the other jobs
                    log.warning(
                        "job %s failed (attempt %d/%d): %s\n%s",
                        job,
                        attempt,
                        self.max_retries + 1,
                        _describe(exc),
                        traceback.format_exc(),
                    )
                    outcome = JobOutcome(job, ok=False, attempts=attempt, error=_describe(exc))
                    continue
                outcome = JobOutcome(job, ok=True, attempts=attempt, path=Path(path))
                break
            assert outcome is not None
            outcomes.append(outcome)
            if on_result is not None:
                on_result(outcome)
        return outcomes


def _ray_job(fn: JobFn, job: Job, threads: int) -> str:
    """Body of one Ray task: pin torch's thread count to the task's CPUs, run the job."""
    try:
        import torch

        torch.set_num_threads(max(1, threads))
    except ImportError:  # pragma: no cover - torch is a dependency; fake jobs in tests do not need it
        pass
    return str(fn(job))


class RayExecutor:
    """The grid as Ray tasks, ``num_cpus``/``num_gpus`` per job, retried on worker death and on job errors.

    Connects to ``address`` (``"auto"``, ``"ray://head:10001"``, ...) when given, else starts a local instance
    with ``num_cpus`` CPUs and no dashboard, and shuts down only an instance it started itself.
    """

    name = "ray"

    def __init__(
        self,
        *,
        address: str | None = None,
        cpus_per_job: float = 1.0,
        gpus_per_job: float = 0.0,
        max_retries: int = 1,
        num_cpus: int = 2,
    ) -> None:
        if cpus_per_job <= 0:
            raise ConfigError(f"--cpus-per-job must be > 0, got {cpus_per_job}")
        if gpus_per_job < 0:
            raise ConfigError(f"--gpus-per-job must be >= 0, got {gpus_per_job}")
        self.address = address
        self.cpus_per_job = float(cpus_per_job)
        self.gpus_per_job = float(gpus_per_job)
        self.max_retries = _check_retries(max_retries)
        self.num_cpus = num_cpus

    def __repr__(self) -> str:
        return (
            f"RayExecutor(address={self.address!r}, cpus_per_job={self.cpus_per_job}, "
            f"gpus_per_job={self.gpus_per_job}, max_retries={self.max_retries})"
        )

    def _connect(self) -> bool:
        """Initialise Ray if needed; True when this call started a local instance."""
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray needs Ray: pip install 'covidct[ray]'") from None
        if ray.is_initialized():
            return False
        if self.address:
            ray.init(address=self.address, log_to_driver=False)
            return False
        ray.init(num_cpus=self.num_cpus, include_dashboard=False, log_to_driver=False)
        return True

    def run(self, jobs: Sequence[Job], fn: JobFn, *, on_result: OnResult | None = None) -> list[JobOutcome]:
        if not jobs:
            return []
        import ray
        from ray.exceptions import RayError, RayTaskError

        started = self._connect()
        try:
            task = ray.remote(_ray_job).options(
                num_cpus=self.cpus_per_job,
                num_gpus=self.gpus_per_job,
                max_retries=self.max_retries,
                retry_exceptions=True,
            )
            fn_ref = ray.put(fn)  # shipped once, not once per job
            threads = max(1, int(self.cpus_per_job))
            refs: dict[Any, int] = {task.remote(fn_ref, job, threads): i for i, job in enumerate(jobs)}
            results: dict[int, JobOutcome] = {}
            waiting = list(refs)
            while waiting:
                done, waiting = ray.wait(waiting, num_returns=1)
                for ref in done:
                    job = jobs[refs[ref]]
                    try:
                        outcome = JobOutcome(job, ok=True, attempts=None, path=Path(ray.get(ref)))
                    except RayTaskError as exc:
                        cause = getattr(exc, "cause", None)
                        error = _describe(cause) if cause is not None else str(exc).splitlines()[0]
                        outcome = JobOutcome(job, ok=False, attempts=self.max_retries + 1, error=error)
                    except RayError as exc:  # worker died on every attempt, task lost, ...
                        error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                        outcome = JobOutcome(job, ok=False, attempts=self.max_retries + 1, error=error)
                    if not outcome.ok:
                        log.warning(
                            "job %s failed after %d attempt(s): %s", job, outcome.attempts, outcome.error
                        )
                    results[refs[ref]] = outcome
                    if on_result is not None:
                        on_result(outcome)
            return [results[i] for i in range(len(jobs))]
        finally:
            if started:
                ray.shutdown()


def create_executor(
    name: str,
    *,
    max_retries: int = 1,
    ray_address: str | None = None,
    cpus_per_job: float = 1.0,
    gpus_per_job: float = 0.0,
) -> LocalExecutor | RayExecutor:
    """``"local"`` or ``"ray"``, with the study's retry and resource options."""
    if name == "local":
        if ray_address:
            raise ConfigError("--ray-address needs --executor ray")
        return LocalExecutor(max_retries=max_retries)
    if name == "ray":
        return RayExecutor(
            address=ray_address or os.environ.get("RAY_ADDRESS") or None,
            cpus_per_job=cpus_per_job,
            gpus_per_job=gpus_per_job,
            max_retries=max_retries,
        )
    raise ConfigError(f"--executor must be one of {', '.join(EXECUTORS)}, got {name!r}")
