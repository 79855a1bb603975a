"""The edge's durable outbox: order, survival across reopen, bounded with a documented policy."""

from __future__ import annotations

import os

from twisted.internet import defer, reactor
from twisted.trial import unittest

from ct.edge.outbox import Outbox
from tests.edge.util import wait_for


class OutboxTests(unittest.TestCase):
    def make(self, path, max_records=100_000):
        box = Outbox(reactor, path, max_records)
        self.addCleanup(lambda: box.pool.running and box.close())
        return box

    @defer.inlineCallbacks
    def test_records_survive_a_reopen_in_order(self):
        path = os.path.join(self.mktemp(), "outbox.sqlite3")
        box = self.make(path)
        yield box.open()
        for i in range(50):
            box.add("audit", {"id": f"a{i}", "n": i})
        yield box.close()
        again = self.make(path)
        yield again.open()
        self.assertEqual(again.depth, 50)
        records = yield again.peek(100)
        self.assertEqual([body["n"] for _, _, body in records], list(range(50)))
        yield again.remove([seq for seq, _, _ in records[:20]])
        self.assertEqual(again.depth, 30)
        rest = yield again.peek(100)
        self.assertEqual(rest[0][2]["n"], 20)

    @defer.inlineCallbacks
    def test_full_outbox_drops_metrics_first_then_oldest_audit_and_counts(self):
        path = os.path.join(self.mktemp(), "outbox.sqlite3")
        box = self.make(path, max_records=100)
        yield box.open()
        for i in range(60):
            box.add("metrics", {"id": f"m{i}"})
        for i in range(60):
            box.add("audit", {"id": f"a{i}"})
        yield box.flush()
        yield wait_for(lambda: box.depth == 100)
        records = yield box.peek(1000)
        kinds = [kind for _, kind, _ in records]
        self.assertEqual(kinds.count("audit"), 60)  # every audit entry kept
        self.assertEqual(kinds.count("metrics"), 40)  # the 20 oldest snapshots went
        self.assertEqual(records[0][2]["id"], "m20")
        self.assertEqual(box.dropped, 20)
        for i in range(60, 100):
            box.add("audit", {"id": f"a{i}"})
        yield box.flush()
        yield wait_for(lambda: box.dropped == 60)
        records = yield box.peek(1000)
        ids = [body["id"] for _, _, body in records]
        self.assertEqual(ids, [f"a{i}" for i in range(100)])  # then nothing but audit
