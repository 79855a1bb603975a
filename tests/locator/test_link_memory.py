"""The edge↔locator link in memory: the edge's ``LocatorLink`` against the locator's
``EdgeLinkFactory`` over ``twisted.test.iosim``, a ``MemoryReactorClock``, a fake outbox
and a fake store (no sockets, threads or database; the real-socket tests are
``test_hardening_link.py`` and ``tests/deployment``)."""

from __future__ import annotations

from types import SimpleNamespace

import txaio
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.test import iosim
from twisted.trial import unittest

from ct.edge.link import LocatorLink
from ct.edge.server import Edge
from ct.locator.edges import EdgeDirectory
from ct.locator.link import DATABASE_RETRY_AFTER, EdgeLinkFactory
from ct.locator.service import Locator
from ct.storage.database import DatabaseUnavailable
from tests.edge.test_relay import FakeConnection

SECRET = "s" * 32


class FakeOutbox:
    """The edge's outbox in a dict: what ``LocatorLink`` reads, adds and removes."""

    def __init__(self):
        self.records: dict[int, tuple[str, dict]] = {}
        self._seq = 0
        self.on_added = None

    @property
    def depth(self) -> int:
        return len(self.records)

    def add(self, kind, body):
        self._seq += 1
        self.records[self._seq] = (kind, body)
        if self.on_added is not None:
            self.on_added()

    def peek(self, limit=500):
        return defer.succeed([(seq, kind, body) for seq, (kind, body)
                              in sorted(self.records.items())][:limit])

    def remove(self, seqs):
        for seq in seqs:
            self.records.pop(seq, None)
        return defer.succeed(self.depth)


class FakeStore:
    """What the locator's link handling stores; ``down`` makes batch inserts fail."""

    def __init__(self):
        self.edges: dict[str, tuple] = {}
        self.sessions: dict[str, dict] = {}
        self.teams: dict[str, str] = {}
        self.audit: dict[str, object] = {}
        self.metrics: dict[str, object] = {}
        self.down = False

    def register_edge(self, edge_id, url, region, version):
        self.edges[edge_id] = (url, region, version)
        return defer.succeed(SimpleNamespace(suspended=False))

    def list_sessions(self, active_only=True, edge_id=None, limit=1000):
        return defer.succeed([SimpleNamespace(session_id=sid) for sid, s in self.sessions.items()
                              if s["edge"] == edge_id and s["ended"] is None])

    def session_started(self, session_id, edge_id, team, started):
        self.sessions[session_id] = {"edge": edge_id, "team": team, "started": started,
                                     "ended": None}
        return defer.succeed(None)

    def session_ended(self, session_id, edge_id, at=None):
        self.sessions.setdefault(session_id, {"edge": edge_id})["ended"] = at or 0.0
        return defer.succeed(None)

    def get_team_edge(self, team):
        return defer.succeed(self.teams.get(team))

    def assign_team(self, team, edge_id):
        self.teams[team] = edge_id
        return defer.succeed(None)

    def update_edge_stats(self, edge_id, load, lag_ms, connections, sessions, users):
        self.stats = (load, lag_ms, connections, sessions, users)
        return defer.succeed(True)

    def insert_audit_batch(self, entries):
        if self.down:
            return defer.fail(DatabaseUnavailable("the database is away"))
        new = [e for e in entries if e.entry_id not in self.audit]
        self.audit.update((e.entry_id, e) for e in new)
        return defer.succeed(len(new))

    def insert_metrics_batch(self, snapshots):
        self.metrics.update((s.snapshot_id, s) for s in snapshots)
        return defer.succeed(len(snapshots))


class LinkInMemoryTests(unittest.SynchronousTestCase):
    def setUp(self):
        self.clock = MemoryReactorClock()
        # Autobahn schedules its timers through txaio's loop: the clock, for this test.
        loop, txaio.config.loop = txaio.config.loop, self.clock
        self.addCleanup(setattr, txaio.config, "loop", loop)
        self.store = FakeStore()
        self.locator = Locator(self.clock, self.store, EdgeDirectory(self.clock), SECRET)
        self.factory = EdgeLinkFactory("ws://locator.test/ws/edge", self.locator, self.clock)
        self.edge = Edge(self.clock)
        self.outbox = FakeOutbox()
        self.edge.audit_sinks.append(lambda entry: self.outbox.add("audit", entry))
        self.link = LocatorLink(self.clock, self.edge, self.outbox, "http://locator.test",
                                SECRET, lambda: "http://edge.test:8080")
        self.addCleanup(self.disconnect)

    def connect(self):
        """A new link (what ``ClientService`` does on each reconnect), pumped until quiet."""
        server = self.factory.buildProtocol(None)
        client = self.link.factory.buildProtocol(None)
        self.pump = iosim.connect(server, iosim.FakeTransport(server, isServer=True),
                                  client, iosim.FakeTransport(client, isServer=False),
                                  clock=self.clock)
        return server

    def disconnect(self):
        if getattr(self, "pump", None) is not None:
            self.pump.clientIO.loseConnection()
            self.pump.flush()
            self.pump = None

    def host_session(self):
        return self.edge.relay.host(FakeConnection(), {"type": "host", "name": "alice"})

    def test_register_lists_running_sessions_and_the_locator_sees_the_edge(self):
        host = self.host_session()
        self.connect()
        self.assertTrue(self.link.registered)
        info = self.locator.directory.edges[self.edge.edge_id]
        self.assertEqual(info.url, "http://edge.test:8080")
        self.assertIsNone(self.store.sessions[host.session.id]["ended"])

    def test_report_reaches_directory_and_store(self):
        self.host_session()
        self.connect()
        self.link.report()
        self.pump.flush()
        info = self.locator.directory.edges[self.edge.edge_id]
        self.assertEqual(info.stats["sessionsHosted"], 1)
        self.assertEqual(self.store.stats[2:], (1, 1, 1))  # connections, sessions, users

    def test_session_updates_are_their_own_message(self):
        self.connect()
        host = self.host_session()
        self.pump.flush()
        self.assertIsNone(self.store.sessions[host.session.id]["ended"])
        self.edge.relay.end(host.session, "host-left")
        self.pump.flush()
        self.assertIsNotNone(self.store.sessions[host.session.id]["ended"])

    def test_a_batch_is_stored_exactly_once_and_leaves_the_outbox(self):
        self.connect()
        self.host_session()
        self.pump.flush()
        self.assertEqual(len(self.store.audit), 1)
        self.assertEqual(self.outbox.depth, 0)
        self.assertEqual(self.locator.records_stored, 1)

    def test_retry_after_a_database_outage(self):
        self.connect()
        self.store.down = True
        self.host_session()
        self.pump.flush()
        self.assertEqual((self.outbox.depth, len(self.store.audit)), (1, 0))
        self.assertTrue(self.link.registered)  # the link stays up
        self.store.down = False
        self.clock.advance(DATABASE_RETRY_AFTER - 0.5)
        self.pump.flush()
        self.assertEqual(self.outbox.depth, 1)  # not before the delay asked for
        self.clock.advance(0.5)
        self.pump.flush()
        self.assertEqual((self.outbox.depth, len(self.store.audit)), (0, 1))

    def test_acknowledgement_lost_in_a_reconnect_stores_nothing_twice(self):
        self.connect()
        self.host_session()
        self.pump.pump()  # the batch reaches the locator, its "stored" is still on the way
        self.assertEqual(len(self.store.audit), 1)
        self.pump.serverIO.getOutBuffer()  # ... and is lost with the connection
        self.disconnect()
        self.assertFalse(self.link.registered)
        self.assertEqual(self.outbox.depth, 1)
        self.connect()  # registers again and sends the batch afresh
        self.assertEqual((self.outbox.depth, len(self.store.audit)), (0, 1))
        self.assertEqual(self.link.batches_sent, 2)

    def test_an_acknowledgement_of_an_earlier_batch_removes_nothing(self):
        self.connect()
        self.host_session()
        self.pump.flush()  # batch 1 stored
        self.host_session()
        self.pump.pump()  # batch 2 reaches the locator; its answer is on the way
        self.link._received(self.link.proto, {"type": "stored", "batch": 1, "stored": 1})
        self.assertEqual((self.outbox.depth, self.link.batches_sent), (1, 2))
        self.pump.flush()
        self.assertEqual((self.outbox.depth, self.link.batches_sent), (0, 2))
        self.assertEqual(len(self.store.audit), 2)

    def test_garbage_from_an_edge_is_refused_without_a_traceback(self):
        server = self.connect()
        server.onMessage(b'{"type": "report", "connections": "many"}', False)
        self.pump.flush()
        self.assertEqual(self.link.last_error,
                         "bad-message: report: 'connections' must be a whole number "
                         "from 0 to 9007199254740992")
        self.assertFalse(self.link.registered)
