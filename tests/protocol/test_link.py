"""The edge↔locator link contract (pure): every record round-trips, every flaw is refused."""

from __future__ import annotations

import math

from twisted.trial import unittest

from ct.protocol import link
from ct.protocol.errors import ProtocolError


class RoundTripTests(unittest.SynchronousTestCase):
    def test_records_and_messages_survive_to_json_and_back(self):
        cases = [
            (link.Report, link.Report(lag_ms=1.5, connections=3, sessions=1, users=2, cpu=0.25,
                                      outbox=7, sessions_hosted=4, downloads={"vscode": 2})),
            (link.SessionUpdate, link.SessionUpdate("s1", "team", 12.5)),
            (link.SessionUpdate, link.SessionUpdate("s1", ended=20.0)),
            (link.AuditRecord, link.AuditRecord("a" * 32, 1.0, "e1", "session_started", "s1",
                                                "alice", {"team": None})),
            (link.MetricRecord, link.MetricRecord("m1", 2.0, 0.5, 3, 1, 4, 9, 2)),
            (link.MetricRecord, link.MetricRecord("m2", 2.0, 0.5, 3, 1, 4, 9, 2, av_participants=3,
                                                  av_calls=1, av_relayed=2, av_direct=4)),
            (link.Records, link.Records(3, ({"id": "x"},), ())),
            (link.Draining, link.Draining(1000.0, 1030.5)),
        ]
        for cls, value in cases:
            with self.subTest(value=value):
                self.assertEqual(cls.from_json(value.to_json()), value)

    def test_register_carries_the_secret_but_does_not_keep_it(self):
        hello = link.Register("e1", "http://e:1", "eu", "1.0", 10,
                              (link.SessionInfo("s1", None, 1.0),), ("t",))
        wire = hello.to_json("secret")
        self.assertEqual((wire["type"], wire["v"], wire["secret"]), ("register", 1, "secret"))
        self.assertEqual(link.Register.from_json(wire), hello)

    def test_a_register_made_while_draining_says_so(self):
        hello = link.Register("e1", "http://e:1", "eu", "1.0",
                              draining=link.Draining(1000.0, 1003.0))
        wire = hello.to_json("secret")
        self.assertEqual(wire["draining"], {"since": 1000.0, "until": 1003.0})
        self.assertEqual(link.Register.from_json(wire), hello)
        self.assertNotIn("draining", link.Register("e1", "u", "eu", "1").to_json("s"))
        self.assertEqual(link.Draining(1.0, 2.0).to_json()["type"], link.DRAINING)

    def test_session_updates_are_not_record_batches(self):
        self.assertEqual(link.SessionUpdate("s1", ended=2.0).to_json()["type"], "session-update")
        with self.assertRaises(ProtocolError) as caught:
            link.Records.from_json({"type": "records", "sessions": [{"session": "s1"}]})
        self.assertIn("session-update", caught.exception.message)


class RefusalTests(unittest.SynchronousTestCase):
    def refused(self, cls, raw):
        with self.assertRaises(ProtocolError) as caught:
            cls.from_json(raw)
        self.assertEqual(caught.exception.code.name, "bad-message")
        return caught.exception.message

    def test_report_fields_are_checked_and_bounded(self):
        for change in [{"connections": "5"}, {"connections": -1}, {"sessions": 1.5},
                       {"users": True}, {"users": 2**60}, {"lagMs": "slow"},
                       {"lagMs": math.inf}, {"cpu": -0.1}, {"cpu": 1e6}, {"cpu": "high"},
                       {"suspended": "no"},
                       {"downloads": []}, {"downloads": {"vscode": "1"}},
                       {"downloads": {str(n): 1 for n in range(100)}}]:
            with self.subTest(change=change):
                self.refused(link.Report, {"type": "report", **change})

    def test_a_metric_snapshot_of_an_older_edge_has_no_calls(self):
        record = link.MetricRecord.from_json({"id": "m1", "time": 1.0, "users_online": 2})
        self.assertEqual((record.users_online, record.av_participants, record.av_calls,
                          record.av_relayed, record.av_direct), (2, 0, 0, 0, 0))

    def test_a_report_of_an_older_edge_is_taken(self):
        # Edges before 'cpu' sent 'load' (people / capacity): ignored, not refused.
        report = link.Report.from_json({"type": "report", "load": 0.5, "connections": 2})
        self.assertEqual((report.cpu, report.connections), (None, 2))

    def test_records_are_checked(self):
        good_audit = {"id": "a1", "time": 1.0, "kind": "session_started"}
        for change in [{"id": ""}, {"id": 5}, {"id": "x" * 65}, {"time": "1.0"},
                       {"time": None}, {"kind": None}, {"details": []}, {"user": 7}]:
            with self.subTest(change=change):
                self.refused(link.AuditRecord, {**good_audit, **change})
        self.refused(link.AuditRecord, ["not", "an", "object"])
        for change in [{"users_online": -1}, {"lag_ms": "x"}, {"time": -5},
                       {"av_calls": -1}, {"av_participants": 2**31}, {"av_relayed": "1"},
                       {"av_direct": True}, {"av_direct": 1.5}]:
            with self.subTest(change=change):
                self.refused(link.MetricRecord, {"id": "m1", "time": 1.0, **change})
        for batch in [None, 0, "1", True]:
            with self.subTest(batch=batch):
                self.refused(link.Records, {"type": "records", "batch": batch})
        self.refused(link.Records, {"type": "records", "batch": 1, "audit": {}})

    def test_a_drain_is_checked(self):
        for raw in [{}, {"since": 1.0}, {"until": 2.0}, {"since": "now", "until": 2.0},
                    {"since": 1.0, "until": math.inf}, {"since": -1.0, "until": 2.0},
                    {"since": 5.0, "until": 2.0}, {"since": True, "until": 2.0}]:
            with self.subTest(raw=raw):
                self.refused(link.Draining, {"type": "draining", **raw})
        wire = link.Register("e1", "u", "eu", "1").to_json("s")
        for bad in ["yes", [], {"since": 1.0}]:
            with self.subTest(register=bad):
                self.assertIn("register: 'draining'",
                              self.refused(link.Register, {**wire, "draining": bad}))

    def test_session_update_needs_a_session(self):
        self.refused(link.SessionUpdate, {"type": "session-update"})
        self.refused(link.SessionUpdate, {"type": "session-update", "session": "s",
                                          "ended": "now"})

    def test_answers_need_a_request_number(self):
        self.assertEqual(link.answer_request({"type": "done", "request": 3}), 3)
        with self.assertRaises(ProtocolError):
            link.answer_request({"type": "done", "request": [1]})

    def test_decode_needs_an_object_with_a_type(self):
        self.assertEqual(link.decode_link_message(b'{"type": "ping"}'), {"type": "ping"})
        for payload in [b"[]", b'{"kind": 1}', b"{", b'{"type": 5}']:
            with self.subTest(payload=payload):
                with self.assertRaises(ProtocolError):
                    link.decode_link_message(payload)


class RetryDelayTests(unittest.SynchronousTestCase):
    def test_the_delay_asked_for_is_kept_within_bounds(self):
        for after, delay in [(5, 5), (0.1, 1.0), (600, 60.0), (None, 5.0), ("3", 5.0),
                             (True, 5.0), (math.nan, 5.0)]:
            with self.subTest(after=after):
                self.assertEqual(link.retry_delay({"type": "retry", "after": after}), delay)


class LogAnswerTests(unittest.SynchronousTestCase):
    """``log-lines`` / ``log``: an edge's recent log over the link, bounded both ways."""

    def test_round_trip(self):
        answer = link.LogAnswer(("one", "two"), "memory", False)
        wire = answer.to_json(7)
        self.assertEqual((wire["type"], wire["request"]), ("log", 7))
        self.assertEqual(link.LogAnswer.from_json(wire), answer)
        self.assertEqual(link.answer_request(wire), 7)
        self.assertIn(link.LOG, link.ADMIN_ANSWERS)
        self.assertIn(link.LOG_LINES, link.ADMIN_REQUESTS)
        self.assertEqual(link.log_lines(20), {"type": "log-lines", "lines": 20})

    def test_the_tail_keeps_the_newest_within_lines_and_bytes(self):
        lines = [f"line {n}" for n in range(10)]
        self.assertEqual(link.log_tail(lines, 3), (["line 7", "line 8", "line 9"], True))
        self.assertEqual(link.log_tail(lines, 50), (lines, False))
        self.assertEqual(link.log_tail(lines, 50, max_bytes=14), (["line 8", "line 9"], True))
        self.assertEqual(link.log_tail(lines, 50, max_bytes=13), (["line 9"], True))
        self.assertEqual(link.log_tail([], 5), ([], False))

    def test_the_tail_cuts_long_lines_and_fits_any_log(self):
        kept, truncated = link.log_tail(["x" * 10_000, "é" * 5000], 10)
        self.assertTrue(truncated)
        self.assertEqual([len(line) for line in kept], [link.MAX_LOG_LINE] * 2)
        self.assertTrue(kept[0].endswith("…"))
        huge = ["y" * 4000] * 5000
        kept, truncated = link.log_tail(huge, 10**9)
        self.assertTrue(truncated)
        self.assertLessEqual(len(kept), link.MAX_LOG_LINES)
        answer = link.LogAnswer(tuple(kept), "memory", truncated)
        self.assertEqual(link.LogAnswer.from_json(answer.to_json(1)), answer)

    def test_the_request_is_bounded(self):
        for lines, expected in [(10, 10), (0, 1), (-5, 1), (10**9, link.MAX_LOG_LINES),
                                ("10", link.DEFAULT_LOG_LINES), (True, link.DEFAULT_LOG_LINES),
                                (None, link.DEFAULT_LOG_LINES)]:
            with self.subTest(lines=lines):
                self.assertEqual(link.requested_log_lines({"lines": lines}), expected)

    def test_a_bad_answer_is_refused(self):
        good = {"type": "log", "request": 1, "lines": ["a"], "source": "memory"}
        for change in [{"lines": "a"}, {"lines": [1]}, {"lines": ["a" * 5000]},
                       {"lines": ["a"] * (link.MAX_LOG_LINES + 1)},
                       {"lines": ["é" * 4000] * 40}, {"source": ""}, {"source": None},
                       {"truncated": "yes"}]:
            with self.subTest(change=change):
                with self.assertRaises(ProtocolError):
                    link.LogAnswer.from_json({**good, **change})
