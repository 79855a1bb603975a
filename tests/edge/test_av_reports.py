"""The clients' call counters (``av-report``, ct/edge/av.py): checks, rate, sums."""

from __future__ import annotations

import unittest
from types import SimpleNamespace

from ct.edge.av import AvReports, parse_av_report
from ct.protocol.errors import ProtocolError


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


LEFT = {"type": "av-report", "inCall": False}


def report(in_call=True, peers=2, relayed=1, direct=1):
    return {"type": "av-report", "inCall": in_call, "peers": peers, "relayed": relayed,
            "direct": direct}


class ParseTests(unittest.TestCase):
    def test_good_report(self):
        self.assertEqual(parse_av_report(report()),
                         {"in_call": True, "peers": 2, "relayed": 1, "direct": 1})
        self.assertEqual(parse_av_report({"type": "av-report"}),
                         {"in_call": False, "peers": 0, "relayed": 0, "direct": 0})

    def test_bad_reports_are_refused(self):
        for bad in ({**report(), "name": "Ada"}, report(peers=16, relayed=0, direct=0),
                    report(peers=-1, relayed=0, direct=0), report(peers=1.5, relayed=0, direct=0),
                    report(peers=True, relayed=0, direct=0), report(peers=1, relayed=1, direct=1),
                    report(in_call="yes"), report(in_call=False)):
            with self.subTest(bad=bad), self.assertRaises(ProtocolError) as caught:
                parse_av_report(bad)
            self.assertEqual(caught.exception.code.name, "bad-message")


class ReportsTests(unittest.TestCase):
    def test_sums_rate_limit_and_departures(self):
        clock = Clock()
        reports = AvReports(clock)
        self.assertEqual(reports.snapshot()["calls"], 0)
        self.assertTrue(reports.report("s1", 2, report()))
        self.assertTrue(reports.report("s1", 3, report(relayed=0, direct=2)))
        self.assertTrue(reports.report("s2", 2, report(peers=0, relayed=0, direct=0)))
        snap = reports.snapshot()
        self.assertEqual((snap["calls"], snap["participants_in_calls"]), (1, 3))
        self.assertEqual(snap["peer_connections"], {"relayed": 1, "direct": 3})
        # Too soon: ignored; later: taken.
        self.assertFalse(reports.report("s1", 2, LEFT))
        self.assertEqual(reports.snapshot()["reports_ignored"], 1)
        clock.now += 2.5
        self.assertTrue(reports.report("s1", 2, LEFT))
        self.assertEqual(reports.snapshot()["participants_in_calls"], 2)
        # A leaver's and an ended session's reports go.
        session = SimpleNamespace(id="s1")
        reports.on_relay_event("participant-left", session, SimpleNamespace(id=3), "left")
        reports.on_relay_event("session-ended", SimpleNamespace(id="s2"), None, "ended-by-host")
        snap = reports.snapshot()
        self.assertEqual((snap["calls"], snap["participants_in_calls"]), (0, 0))
        self.assertEqual(snap["reports_total"], 4)


class EdgeSnapshotTests(unittest.TestCase):
    def test_the_edge_snapshot_carries_the_call_counts_for_the_metric_record(self):
        from twisted.internet.task import Clock as TwistedClock

        from ct.edge.link import metric_record
        from ct.edge.server import Edge

        edge = Edge(TwistedClock())
        self.assertEqual(edge.av_counts(), {"av_participants": 0, "av_calls": 0,
                                            "av_relayed": 0, "av_direct": 0})  # A/V off
        clock = Clock()
        edge.av_reports = AvReports(clock)
        edge.av_reports.report("s1", 1, report(peers=2, relayed=1, direct=1))
        edge.av_reports.report("s1", 2, report(peers=2, relayed=0, direct=2))
        edge.av_reports.report("s2", 1, report(peers=0, relayed=0, direct=0))
        downloads = SimpleNamespace(counts=lambda: {"vscode": 2})
        record = metric_record(edge, downloads, edge.clock)
        self.assertEqual((record.av_participants, record.av_calls, record.av_relayed,
                          record.av_direct, record.downloads_total), (3, 1, 1, 3, 2))
