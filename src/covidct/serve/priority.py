"""Light requests first: heavy work (a ZIP series, a huge image) pauses while a light request is in progress.

The model already goes to light requests first (:class:`covidct.serve.model.ServedModel`); this covers the
rest of a heavy request (inflating a ZIP, decoding slices), which otherwise takes the cores from a normal
request. A pause is capped (``max_pause_s``), and so is the total one heavy request spends paused
(:class:`Allowance`, a share of its time budget): under a steady light load heavy work still moves on and
finishes within its budget.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

MAX_PAUSE_S = 0.1  # at most this long per pause point: heavy work keeps at least a step per 100 ms
PAUSE_SHARE = 0.5  # a heavy request spends at most this share of its time budget paused, all pauses together


class LightFirst:
    """Counts light requests in progress; :meth:`pause` holds a heavy request's thread while there are any."""

    def __init__(self, max_pause_s: float = MAX_PAUSE_S) -> None:
        if not max_pause_s >= 0:
            raise ValueError(f"max_pause_s must be >= 0, got {max_pause_s}")
        self.max_pause_s = max_pause_s
        self._cond = threading.Condition()
        self._light = 0
        self.paused_s = 0.0  # total time heavy work spent paused (reported by tests and benchmarks)

    @property
    def light_in_progress(self) -> int:
        return self._light

    @contextlib.contextmanager
    def light(self) -> Iterator[None]:
        """Mark a light request in progress for the duration of the block."""
        with self._cond:
            self._light += 1
        try:
            yield
        finally:
            with self._cond:
                self._light -= 1
                if not self._light:
                    self._cond.notify_all()

    def pause(self, limit_s: float | None = None) -> bool:
        """Wait until no light request is in progress, at most ``min(max_pause_s, limit_s)`` seconds.

        Returns True when none is (any more), False when the wait ran out with light work still going.
        """
        timeout = self.max_pause_s if limit_s is None else max(0.0, min(self.max_pause_s, limit_s))
        with self._cond:
            if not self._light:
                return True
            began = time.monotonic()
            done = self._cond.wait_for(lambda: not self._light, timeout=timeout)
            self.paused_s += time.monotonic() - began
            return done


class Allowance:
    """One heavy request's pauses: each as :meth:`LightFirst.pause`, all together at most ``total_s`` seconds.

    Without it a request with thousands of pause points (a large series under a steady light load) could spend
    its whole time budget paused and end in a 408.
    """

    def __init__(self, gate: LightFirst, total_s: float) -> None:
        if not total_s >= 0:
            raise ValueError(f"total_s must be >= 0, got {total_s}")
        self.gate, self.total_s = gate, total_s
        self.paused_s = 0.0

    def pause(self, limit_s: float | None = None) -> bool:
        """:meth:`LightFirst.pause` within what is left of the allowance; False when it is used up."""
        left = self.total_s - self.paused_s
        if left <= 0:
            return not self.gate.light_in_progress
        began = time.monotonic()
        done = self.gate.pause(left if limit_s is None else min(limit_s, left))
        self.paused_s += time.monotonic() - began
        return done
