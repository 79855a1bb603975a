"""The per-source limit of unauthenticated answers (pure, with a Clock)."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial import unittest

from ct.turn.limits import OVERFLOW_FACTOR, SourceLimiter


class SourceLimiterTests(unittest.TestCase):
    def test_finding_13_bucket_per_source_refills_with_time(self):
        clock = Clock()
        limiter = SourceLimiter(rate=2, burst=4, max_sources=10, seconds=clock.seconds)
        self.assertEqual([limiter.allow("a") for _ in range(5)], [True] * 4 + [False])
        self.assertTrue(limiter.allow("b"))
        clock.advance(0.5)
        self.assertEqual([limiter.allow("a") for _ in range(2)], [True, False])

    def test_finding_13_table_is_bounded_and_pruned(self):
        clock = Clock()
        limiter = SourceLimiter(rate=1, burst=2, max_sources=3, seconds=clock.seconds)
        for source in ("a", "b", "c"):
            limiter.allow(source)
        # Sources beyond the table share one overflow bucket.
        shared = [limiter.allow(f"x{i}") for i in range(2 * OVERFLOW_FACTOR + 1)]
        self.assertEqual(shared, [True] * (2 * OVERFLOW_FACTOR) + [False])
        self.assertEqual(len(limiter.buckets), 3)
        self.assertEqual(limiter.prune(), 0)  # none refilled yet
        clock.advance(1)
        self.assertEqual(limiter.prune(), 3)
        self.assertEqual(limiter.buckets, {})
        self.assertTrue(limiter.allow("d"))
        self.assertIn("d", limiter.buckets)
