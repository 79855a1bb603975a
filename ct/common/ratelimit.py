"""Token bucket rate limiting with an injected clock."""

from __future__ import annotations


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
