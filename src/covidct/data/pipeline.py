"""Run jobs in a thread pool ahead of their consumer, results in order (#15: decoding never waits).

``ordered_prefetch(jobs, workers=W, depth=D)``: a feeder thread pulls jobs from the (lazy) iterable, so
planning done while iterating it (walking folders, reading DICOM headers) also runs ahead; it submits each job
to a pool of ``W`` threads and puts the future in a bounded queue of ``D`` entries; the consumer takes the
futures in order and waits only for the one it needs next. So at most ``D`` jobs are queued or
done-but-unconsumed at any time (bounded memory), and the consumer (the network) never waits for decoding
unless the pool is slower than it.

Decoding (pydicom/pylibjpeg, PIL) and resizing (PIL) release the GIL for their heavy parts: threads suffice.
No torch here.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from typing import TypeVar

T = TypeVar("T")

_END = object()
_POLL_S = 0.05  # how often a blocked feeder checks whether the consumer has gone away


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def ordered_prefetch(jobs: Iterable[Callable[[], T]], *, workers: int = 2, depth: int = 8) -> Iterator[T]:
    """Yield ``job()`` for every job, in order, computed by ``workers`` threads at most ``depth`` jobs ahead.

    A job's exception is raised at its position; one from iterating ``jobs`` after the jobs before it.
    Closing the generator early (``break``, an exception in the consumer) stops the feeder and cancels queued
    jobs. ``workers=0`` runs every job inline in the consumer (no threads).
    """
    if workers < 0 or depth < 1:
        raise ValueError(f"workers must be >= 0 and depth >= 1, got {workers}, {depth}")
    if workers == 0:
        for job in jobs:
            yield job()
        return
    pending: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="covidct-decode")

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                pending.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def feed() -> None:
        try:
            for job in jobs:
                if stop.is_set():
                    return
                future = pool.submit(job)
                if not put(future):
                    future.cancel()
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            put(_Raised(exc))
            return
        put(_END)

    feeder = threading.Thread(target=feed, name="covidct-feeder", daemon=True)
    feeder.start()
    try:
        while True:
            item = pending.get()
            if item is _END:
                return
            if isinstance(item, _Raised):
                raise item.exc
            assert isinstance(item, Future)
            yield item.result()
    finally:
        stop.set()
        while True:  # unblock the feeder and drop what it queued
            try:
                leftover = pending.get_nowait()
            except queue.Empty:
                break
            if isinstance(leftover, Future):
                leftover.cancel()
        feeder.join()
        pool.shutdown(wait=True, cancel_futures=True)


@lru_cache(maxsize=1)
def physical_cores() -> int:
    """Physical CPU cores available to this process (hyper-threads do not help conv inference)."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cores: set[tuple[str, str]] = set()
    try:
        base = "/sys/devices/system/cpu"
        cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(available)
        for cpu in cpus:
            with open(f"{base}/cpu{cpu}/topology/core_id") as fh:
                core = fh.read().strip()
            with open(f"{base}/cpu{cpu}/topology/physical_package_id") as fh:
                pkg = fh.read().strip()
            cores.add((pkg, core))
    except OSError:
        return max(1, available)
    return max(1, min(len(cores), available))


def decode_workers() -> int:
    """Decoding threads: ``COVIDCT_DECODE_WORKERS`` or the physical cores (at least 2)."""
    env = os.environ.get("COVIDCT_DECODE_WORKERS", "")
    return max(0, int(env)) if env.isdigit() else max(2, physical_cores())
