"""Token bucket rate limiting with an injected clock."""

from __future__ import annotations

from collections import OrderedDict


class TokenBucket:
    """Allows ``rate`` events per second on average and bursts of up to ``burst``."""

    __slots__ = ("rate", "burst", "tokens", "stamp", "_seconds")

    def __init__(self, rate: float, burst: int, seconds):
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self._seconds = seconds
        self.stamp = seconds()

    def take(self, n: float = 1.0) -> bool:
        """Spend ``n`` tokens; False when the bucket does not hold them."""
        tokens = self.tokens
        if tokens < n:
            now = self._seconds()
            tokens = min(self.burst, tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if tokens < n:
                self.tokens = tokens
                return False
        self.tokens = tokens - n
        return True


class KeyedLimiter:
    """One :class:`TokenBucket` per key (a client address), in a table of at most
    ``max_keys``: the least recently seen key is forgotten first (it starts afresh with a
    full bucket, so the bound never blocks anyone). ``rate <= 0`` allows everything."""

    def __init__(self, rate: float, burst: int, seconds, max_keys: int = 10000):
        self.rate = rate
        self.burst = max(1, int(burst))
        self.max_keys = max(1, max_keys)
        self._seconds = seconds
        self._buckets: OrderedDict[object, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key) -> float:
        """Spend one token of ``key``: 0.0 when allowed, else seconds until it would be."""
        if self.rate <= 0:
            return 0.0
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, self._seconds)
            while len(self._buckets) >= self.max_keys:
                self._buckets.popitem(last=False)
        self._buckets[key] = bucket  # most recently seen last
        if bucket.take():
            return 0.0
        return (1.0 - bucket.tokens) / self.rate
