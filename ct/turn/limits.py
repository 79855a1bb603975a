"""Per-source rate limit of the relay's unauthenticated answers (pure; time is injected).

A spoofed UDP request makes the relay answer someone else: each source IP gets a token
bucket, and the table of buckets is bounded. Sources beyond the bound share one overflow
bucket until :meth:`SourceLimiter.prune` drops the buckets that have refilled.
"""

from __future__ import annotations

from typing import Callable

from ct.common.ratelimit import TokenBucket

OVERFLOW_FACTOR = 10  # the shared bucket of sources beyond the table allows this many more


class SourceLimiter:
    """At most ``rate`` events per second (bursts of ``burst``) per source."""

    def __init__(self, rate: float, burst: int, max_sources: int,
                 seconds: Callable[[], float]):
        self.rate = rate
        self.burst = burst
        self.max_sources = max_sources
        self._seconds = seconds
        self.buckets: dict[str, TokenBucket] = {}
        self.overflow = TokenBucket(rate * OVERFLOW_FACTOR, burst * OVERFLOW_FACTOR, seconds)

    def allow(self, source: str) -> bool:
        """Spend one token of ``source``; False when it has none left."""
        bucket = self.buckets.get(source)
        if bucket is None:
            if len(self.buckets) >= self.max_sources:
                return self.overflow.take()
            bucket = self.buckets[source] = TokenBucket(self.rate, self.burst, self._seconds)
        return bucket.take()

    def prune(self) -> int:
        """Forget sources whose bucket is full again (as good as new); return how many."""
        now = self._seconds()
        rate, burst = self.rate, self.burst
        full = [source for source, b in self.buckets.items()
                if b.tokens + (now - b.stamp) * rate >= burst]
        for source in full:
            del self.buckets[source]
        return len(full)
