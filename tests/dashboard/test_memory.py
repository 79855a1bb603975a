"""Single-server audit ring and metric history; SVG charts."""

from __future__ import annotations

from twisted.trial import unittest


class MemoryAndChartTests(unittest.TestCase):
    """Single-server audit ring and metric history; chart scale."""

    def test_audit_ring_filters_newest_first_and_is_bounded(self):
        from ct.dashboard.memory import AuditRing

        ring = AuditRing(capacity=5)
        for i in range(7):
            ring({"id": f"e{i}", "time": 100.0 + i, "kind": "k_even" if i % 2 == 0 else "k_odd",
                  "edge": "x", "session": None, "user": f"u{i % 3}", "details": {}})
        ring({"time": "not a time", "kind": "bad"})  # ignored, never raises
        self.assertEqual([e.entry_id for e in ring.query()], ["e6", "e5", "e4", "e3", "e2"])
        self.assertEqual([e.entry_id for e in ring.query(kind="k_even")], ["e6", "e4", "e2"])
        self.assertEqual([e.entry_id for e in ring.query(kind=["k_odd"], user="u2")], ["e5"])
        self.assertEqual([e.entry_id for e in ring.query(since=103, until=105)], ["e4", "e3"])
        self.assertEqual([e.entry_id for e in ring.query(limit=2, offset=1)], ["e5", "e4"])

    def test_history_buckets_peak_and_mean_lag(self):
        from ct.dashboard.memory import MetricHistory

        history = MetricHistory(interval=10, keep=60)
        for i, (users, lag) in enumerate([(1, 2.0), (3, 4.0), (2, None), (5, 10.0)]):
            history.add(1000 + 10 * i, {"users_online": users, "sessions": users,
                                        "connections": users, "lag_ms": lag,
                                        "sessions_hosted_total": i}, downloads_total=i)
        buckets = history.buckets(1000, 1040, 20)
        self.assertEqual([(b.start, b.users_online, b.lag_ms, b.downloads_total)
                          for b in buckets], [(1000, 3, 3.0, 1), (1020, 5, 10.0, 3)])
        for i in range(20):
            history.add(2000 + i, {})
        self.assertEqual(len(history.points), 7)  # about `keep` seconds of points

    def test_chart_scale_and_gaps(self):
        from twisted.web.template import flattenString

        from ct.dashboard.charts import line_chart, nice_ceiling

        self.assertEqual([nice_ceiling(v) for v in (0, 3, 6.9, 10.8, 101)],
                         [2, 4, 8, 20, 200])
        svg = self.successResultOf(flattenString(None, line_chart(
            [(0, 1), (10, 2), (20, None), (30, 3), (40, 3)], 0, 40, "users <online>")))
        self.assertEqual(svg.count(b"<polyline"), 2)  # the gap splits the line
        self.assertIn(b"users &lt;online&gt;", svg)
        empty = self.successResultOf(flattenString(None, line_chart([], 0, 40, "x")))
        self.assertIn(b"no data yet", empty)
