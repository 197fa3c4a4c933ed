"""The ordered, bounded prefetch pipeline: order kept, errors at their position, early close stops it."""

from __future__ import annotations

import itertools
import threading

import pytest

from covidct.data.pipeline import ordered_prefetch


def test_results_keep_job_order_when_jobs_finish_out_of_order() -> None:
    last_done = threading.Event()

    def first() -> str:
        last_done.wait()  # finishes only after the last job: the pool really runs out of order
        return "a"

    def last() -> str:
        last_done.set()
        return "c"

    assert list(ordered_prefetch([first, lambda: "b", last], workers=3, depth=3)) == ["a", "b", "c"]


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_many_jobs_in_order(workers: int) -> None:
    jobs = [lambda i=i: i * i for i in range(50)]
    assert list(ordered_prefetch(jobs, workers=workers, depth=4)) == [i * i for i in range(50)]


def test_job_error_is_raised_at_its_position() -> None:
    def bad() -> int:
        raise ValueError("boom")

    out = []
    with pytest.raises(ValueError, match="boom"):
        for value in ordered_prefetch([lambda: 1, bad, lambda: 3], workers=2, depth=2):
            out.append(value)
    assert out == [1]


def test_error_while_iterating_jobs_comes_after_earlier_results() -> None:
    def jobs():  # type: ignore[no-untyped-def]
        yield lambda: 1
        raise RuntimeError("planning failed")

    gen = ordered_prefetch(jobs(), workers=2, depth=2)
    assert next(gen) == 1
    with pytest.raises(RuntimeError, match="planning failed"):
        next(gen)


def test_early_close_stops_an_endless_feeder() -> None:
    pulled = itertools.count()

    def endless():  # type: ignore[no-untyped-def]
        for i in pulled:
            yield lambda i=i: i

    gen = ordered_prefetch(endless(), workers=2, depth=3)
    assert [next(gen) for _ in range(5)] == [0, 1, 2, 3, 4]
    gen.close()  # joins the feeder: would hang if it kept going
    stopped_at = next(pulled)
    assert next(pulled) == stopped_at + 1  # nobody else is pulling any more


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        list(ordered_prefetch([], workers=-1))
    with pytest.raises(ValueError):
        list(ordered_prefetch([], depth=0))
