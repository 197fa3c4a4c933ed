"""Executors: retries, failure reports, Ray tasks (local instance, 2 CPUs), worker death, job errors."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from covidct.errors import ConfigError
from covidct.study.executors import LocalExecutor, RayExecutor, create_executor
from covidct.study.grid import Job
from covidct.utils import write_text_atomic


@dataclass(frozen=True)
class FakeJob:
    """Writes ``<root>/<model>_r<r>_f<f>.txt`` atomically; counts attempts in marker files.

    ``fail`` models raise every time; ``flaky`` models raise on the first attempt; ``crash`` models kill their
    process (a dying worker) on the first attempt.
    """

    root: Path
    fail: tuple[str, ...] = ()
    flaky: tuple[str, ...] = ()
    crash: tuple[str, ...] = ()

    def attempts(self, job: Job) -> int:
        return len(list(self.root.glob(f"attempt_{job.model}_r{job.repeat}_f{job.fold}_*")))

    def __call__(self, job: Job) -> Path:
        n = self.attempts(job) + 1
        (self.root / f"attempt_{job.model}_r{job.repeat}_f{job.fold}_{n}").touch()
        if job.model in self.fail:
            raise RuntimeError(f"boom in {job}")
        if job.model in self.flaky and n == 1:
            raise RuntimeError("transient")
        if job.model in self.crash and n == 1:
            os._exit(1)
        out = self.root / f"{job.model}_r{job.repeat}_f{job.fold}.txt"
        write_text_atomic(out, f"{job.model} {job.repeat} {job.fold}\n")
        return out


JOBS = [Job("a", 0, 0), Job("a", 0, 1), Job("b", 0, 0), Job("b", 0, 1)]


def test_local_retries_then_reports(tmp_path: Path) -> None:
    fn = FakeJob(tmp_path, fail=("b",), flaky=("a",))
    seen = []
    outcomes = LocalExecutor(max_retries=2).run(JOBS, fn, on_result=seen.append)
    assert [o.job for o in outcomes] == JOBS and seen == outcomes
    assert [o.ok for o in outcomes] == [True, True, False, False]
    assert [o.attempts for o in outcomes] == [2, 2, 3, 3]
    assert "boom in b/r0_f0" in outcomes[2].error
    assert fn.attempts(Job("b", 0, 1)) == 3  # retried max_retries times, then reported
    assert outcomes[0].path.read_text() == "a 0 0\n"


def test_no_retry(tmp_path: Path) -> None:
    fn = FakeJob(tmp_path, flaky=("a",))
    outcomes = LocalExecutor(max_retries=0).run(JOBS[:1], fn)
    assert not outcomes[0].ok and outcomes[0].attempts == 1


def test_create_executor_validates() -> None:
    assert isinstance(create_executor("local", max_retries=0), LocalExecutor)
    assert isinstance(create_executor("ray", cpus_per_job=1), RayExecutor)
    with pytest.raises(ConfigError, match="executor"):
        create_executor("dask")
    with pytest.raises(ConfigError, match="max-retries"):
        create_executor("local", max_retries=-1)
    with pytest.raises(ConfigError, match="ray-address"):
        create_executor("local", ray_address="auto")
    with pytest.raises(ConfigError, match="cpus-per-job"):
        create_executor("ray", cpus_per_job=0)


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray instance (2 CPUs, no dashboard) shared by this module's tests."""
    ray = pytest.importorskip("ray")
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import test modules
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_retries_worker_death_and_reports_failures(tmp_path: Path, ray_local) -> None:
    fn = FakeJob(tmp_path, fail=("b",), crash=("a",))
    seen = []
    outcomes = RayExecutor(max_retries=1, cpus_per_job=1).run(JOBS, fn, on_result=seen.append)
    assert [o.job for o in outcomes] == JOBS and sorted(seen, key=lambda o: o.job) == sorted(
        outcomes, key=lambda o: o.job
    )
    assert [o.ok for o in outcomes] == [True, True, False, False]
    # the crashed worker left no output; the retry wrote the whole file
    assert (tmp_path / "a_r0_f1.txt").read_text() == "a 0 1\n"
    assert fn.attempts(Job("a", 0, 0)) == 2
    assert fn.attempts(Job("b", 0, 0)) == 2  # job errors are retried too (retry_exceptions)
    assert "boom in b/r0_f0" in outcomes[2].error
    assert not list(tmp_path.glob(".*.tmp"))
