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

    def test_usage_of_calls_from_the_history(self):
        from ct.dashboard.memory import MetricHistory, usage_counts
        from ct.storage.store import DAY

        history = MetricHistory(interval=10)
        day0 = 1_700_006_400.0  # a UTC midnight
        for at, in_calls, calls, relayed, direct in [
                (day0 - DAY + 10, 4, 2, 2, 2), (day0 - DAY + 20, 2, 1, 0, 2),
                (day0 + 10, 2, 1, 0, 0), (day0 + 20, 0, 0, 0, 0), (day0 - 9 * DAY, 9, 9, 9, 0)]:
            history.add(at, {"av_participants": in_calls, "av_calls": calls,
                             "av_relayed": relayed, "av_direct": direct})
        history.add(day0 + 30, {"users_online": 1})  # a snapshot without call counts
        report = usage_counts((), history, day0 - DAY, day0 + 100).report(day0 - DAY,
                                                                           day0 + 100)
        self.assertEqual([(d.peak_in_calls, d.peak_calls) for d in report.days],
                         [(4, 2), (2, 1)])
        self.assertEqual(report.to_json()["av"], {"peakInCalls": 4, "peakCalls": 2,
                                                  "relayedShare": round(2 / 6, 4)})

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
