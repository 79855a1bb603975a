"""Log lines an attacker can trigger at will, rate-limited: a flood costs a bounded log.

:class:`LogThrottle`: at most ``limit`` lines per ``interval`` seconds get through; the rest
are counted, and the first line let through after the interval says how many similar lines
were suppressed. :class:`RateLimitedLog`: a token bucket per kind of line. Neither keeps a
timer: nothing is left scheduled when the process or a test stops.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from ct.common.ratelimit import TokenBucket


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


class RateLimitedLog:
    """Warnings about what peers can repeat at will: per ``kind`` (a fixed word chosen by
    the caller) a burst, then ``rate`` lines a second; what was left out is counted in the
    next line of that kind."""

    def __init__(self, logger: Logger, seconds, rate: float = 0.2, burst: int = 10):
        self._logger = logger
        self._seconds = seconds
        self._rate = rate
        self._burst = burst
        self._buckets: dict[str, TokenBucket] = {}
        self._suppressed: dict[str, int] = {}

    def warn(self, kind: str, fmt: str, **fields) -> None:
        bucket = self._buckets.get(kind)
        if bucket is None:
            bucket = self._buckets[kind] = TokenBucket(self._rate, self._burst, self._seconds)
        if not bucket.take():
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        suppressed = self._suppressed.pop(kind, 0)
        if suppressed:
            fmt += " ({suppressed} more suppressed)"
            fields["suppressed"] = suppressed
        self._logger.warn(fmt, **fields)
