"""CPU latency per model: median wall time of a batch-1 forward pass at the study's image size.

A small, honest timing for the accuracy-vs-latency plot, not a benchmark suite: an untrained model
(``pretrained=False``; weights do not change the cost), eval mode, ``torch.inference_mode``, a fixed number of
threads (1 by default, so numbers from a busy shared machine stay comparable between models), ``warmup``
untimed passes, then the median of ``runs`` timed ones (the timing loop of :mod:`covidct.inference.bench`).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

from covidct.inference.bench import _time as time_calls  # the benchmark's timing loop (warmup, then runs)


@dataclass(frozen=True)
class Latency:
    """A CPU latency measurement."""

    model: str
    image_size: int
    latency_ms: float  # median of ``runs``
    min_ms: float
    runs: int
    threads: int
    batch_size: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_cpu_latency(
    model: str, image_size: int, *, num_classes: int = 3, runs: int = 5, warmup: int = 1, threads: int = 1
) -> Latency:
    """Time ``model`` (a paper name or timm name) on one ``3 x image_size x image_size`` input on the CPU."""
    import torch

    from covidct.models.factory import create_model

    net = create_model(model, num_classes, pretrained=False).eval()
    x = torch.randn(1, 3, image_size, image_size)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            times = [1000.0 * t for t in time_calls(lambda: net(x), runs, warmup)]
    finally:
        torch.set_num_threads(previous)
    return Latency(
        model=model,
        image_size=image_size,
        latency_ms=float(statistics.median(times)),
        min_ms=float(min(times)),
        runs=runs,
        threads=threads,
    )
