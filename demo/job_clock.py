"""A sampling job's deadline: the studio's limit on one run, counted in steps at the pace of its first step.

    clock = JobClock(lambda projected_s, deadline_s: f"This edit would take about {projected_s / 60:.1f} minutes")
    for out in pipe.iter(settings):
        elapsed_s = clock.step(out.step + 1, out.num_steps)     # LimitError once past, or projected past, it

The deadline is set when the first step is done: ``limits.job_deadline_s`` of how long that step took, so the
limit scales with the machine. After every later step but the last, the run's total is projected at the pace
of the steps since the first, and the run is stopped between steps (a ``LimitError`` with the caller's message)
once the projection, or the time already spent, is past the deadline. ``now`` is the time source (seconds,
``time.perf_counter`` by default): tests pass a fake one instead of sleeping.
"""
from __future__ import annotations

import time
from typing import Callable

from . import limits as L
from .limits import LimitError


class JobClock:
    """The deadline of one sampling run, started when the clock is made (see the module docstring).

    ``message(projected_s, deadline_s)``: the text of the ``LimitError`` that stops the run."""

    def __init__(self, message: Callable[[float, float], str], now: Callable[[], float] = time.perf_counter):
        self.message = message
        self.now = now
        self.start = now()
        self.first_done: float | None = None          # when the first step was done
        self.deadline_s: float | None = None          # seconds from the start, set by the first step

    def elapsed_s(self) -> float:
        """Seconds since the clock was made."""
        return self.now() - self.start

    def projected_s(self, k: int, n: int, now: float) -> float:
        """The run's total seconds if its steps after the first keep the pace they have had, ``k`` of ``n`` done."""
        return now - self.start + (now - self.first_done) / (k - 1) * (n - k)

    def step(self, k: int, n: int) -> float:
        """Step ``k`` of ``n`` (counted from 1) is done: the first sets the deadline, the others until the last
        are checked against it. Returns the seconds since the start; raises ``LimitError`` past the deadline."""
        now = self.now()
        elapsed = now - self.start
        if self.first_done is None:
            self.first_done, self.deadline_s = now, L.job_deadline_s(elapsed, n)
        elif 1 < k < n:
            projected = self.projected_s(k, n, now)
            if projected > self.deadline_s or elapsed > self.deadline_s:
                raise LimitError(self.message(projected, self.deadline_s))
        return elapsed
