"""Retention: old audit entries and metric snapshots are deleted, recent ones kept."""

from __future__ import annotations

import os

from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.trial import unittest

from ct.locator.edges import EdgeDirectory
from ct.locator.service import Locator
from ct.storage.config import sqlite_config
from ct.storage.database import Database
from ct.storage.migrations import prepare_database
from ct.storage.store import AuditEntry, LocatorStore, MetricSnapshot

DAY = 86400.0


class RetentionTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_prune_keeps_what_is_within_retention(self):
        directory = self.mktemp()
        os.makedirs(directory)
        db = Database(sqlite_config(os.path.join(directory, "l.sqlite3")), reactor)
        self.addCleanup(db.close)
        yield prepare_database(db)
        clock = Clock()
        clock.advance(1000 * DAY)
        store = LocatorStore(db, clock)
        now = clock.seconds()
        yield store.insert_audit_batch([
            AuditEntry("old", now - 400 * DAY, "session_started"),
            AuditEntry("new", now - 10 * DAY, "session_started")])
        yield store.insert_metrics_batch([
            MetricSnapshot("m-old", "e1", now - 100 * DAY),
            MetricSnapshot("m-new", "e1", now - 1 * DAY)])
        locator = Locator(clock, store, EdgeDirectory(clock), "x" * 16)
        removed = yield locator.prune(365, 90)
        self.assertEqual(removed, {"audit": 1, "metrics": 1})
        left = yield store.query_audit()
        self.assertEqual([e.entry_id for e in left], ["new"])
        removed = yield locator.prune(0, 0)  # 0: keep forever
        self.assertEqual(removed, {"audit": 0, "metrics": 0})
