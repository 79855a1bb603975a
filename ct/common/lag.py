"""Reactor lag: how late a timer fires. A busy or blocked reactor shows up here first."""

from __future__ import annotations

from twisted.internet.task import LoopingCall


class LagMonitor:
    """Schedules a tick every ``interval`` seconds and records how late it ran."""

    def __init__(self, clock, interval: float = 1.0, window: int = 10):
        self.clock = clock
        self.interval = interval
        self.window = window
        self.samples: list[float] = []
        self._expected = None
        self._loop = LoopingCall(self._tick)
        self._loop.clock = clock

    def start(self) -> None:
        self._expected = self.clock.seconds() + self.interval
        self._loop.start(self.interval, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def _tick(self) -> None:
        now = self.clock.seconds()
        late = max(0.0, now - self._expected)
        self.samples.append(late)
        del self.samples[:-self.window]
        self._expected = now + self.interval

    @property
    def lag_ms(self) -> float:
        """Average lateness over the recent window, in milliseconds."""
        if not self.samples:
            return 0.0
        return 1000.0 * sum(self.samples) / len(self.samples)

    @property
    def max_lag_ms(self) -> float:
        return 1000.0 * max(self.samples, default=0.0)
