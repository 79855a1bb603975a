"""Process CPU: the share of one core this process used over the last interval.

The reactor runs on one thread, so one core is what an edge can use for relaying; threads
(database pools, the outbox) count too, so the figure may pass 1.0 briefly.
"""

from __future__ import annotations

import time
from typing import Callable

from twisted.internet.task import LoopingCall


class CpuMeter:
    """Every ``interval`` seconds, the CPU seconds (user + system) this process used since
    the previous sample, divided by the wall-clock seconds between them."""

    def __init__(self, clock, interval: float = 2.0,
                 cpu_seconds: Callable[[], float] = time.process_time):
        self.clock = clock
        self.interval = interval
        self.cpu_seconds = cpu_seconds
        self.fraction: float | None = None  # None until the first whole interval
        self._last: tuple[float, float] | None = None
        self._loop = LoopingCall(self.sample)
        self._loop.clock = clock

    def start(self) -> None:
        self._last = (self.clock.seconds(), self.cpu_seconds())
        self._loop.start(self.interval, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def sample(self) -> None:
        now, used = self.clock.seconds(), self.cpu_seconds()
        if self._last is not None:
            wall = now - self._last[0]
            if wall > 0:
                self.fraction = round(max(0.0, used - self._last[1]) / wall, 4)
        self._last = (now, used)
