"""Log lines an attacker can trigger at will, rate-limited: a flood costs a bounded log.

At most ``limit`` lines per ``interval`` seconds get through; the rest are counted, and the
first line let through after the interval says how many similar lines were suppressed
(no timer: nothing is left scheduled when the process or a test stops).
"""

from __future__ import annotations

from typing import Any


class LogThrottle:
    """Warnings through ``logger`` (a ``twisted.logger.Logger``), ``limit`` per ``interval``.

    ``limit`` 0 means no limit. ``clock`` provides ``seconds()`` (the reactor, or
    ``twisted.internet.task.Clock`` in tests).
    """

    def __init__(self, logger, clock, limit: int = 20, interval: float = 60.0,
                 what: str = "warnings"):
        self.logger = logger
        self.clock = clock
        self.limit = limit
        self.interval = interval
        self.what = what
        self.window_start: float | None = None
        self.in_window = 0
        self.suppressed = 0
        self.suppressed_total = 0

    def allow(self) -> bool:
        """Count one line; True when it may be logged (a pending summary is logged first)."""
        if self.limit <= 0:
            return True
        now = self.clock.seconds()
        if self.window_start is None or now - self.window_start >= self.interval:
            self._summarise(now)
            self.window_start = now
            self.in_window = 0
        if self.in_window < self.limit:
            self.in_window += 1
            return True
        self.suppressed += 1
        self.suppressed_total += 1
        return False

    def warn(self, format: str, **fields: Any) -> bool:
        """Log a warning unless over the limit; True when it was logged."""
        if not self.allow():
            return False
        self.logger.warn(format, **fields)
        return True

    def failure(self, format: str, **fields: Any) -> bool:
        """``Logger.failure`` (a traceback of the exception being handled), rate-limited."""
        if not self.allow():
            return False
        self.logger.failure(format, **fields)
        return True

    def _summarise(self, now: float) -> None:
        if not self.suppressed:
            return
        self.logger.warn("suppressed {count} similar {what} in the last {seconds:.0f} s",
                         count=self.suppressed, what=self.what,
                         seconds=now - self.window_start)
        self.suppressed = 0
