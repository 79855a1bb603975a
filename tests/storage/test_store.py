"""One storage behaviour suite, run against SQLite, PostgreSQL and MariaDB/MySQL."""

from __future__ import annotations

import time

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from ct.storage.database import Database
from ct.storage.migrations import SCHEMA_VERSION, SchemaTooNew, prepare_database
from ct.storage.store import AuditEntry, LocatorStore, MetricSnapshot
from tests.storage import dbs

T0 = 1_700_000_000.0


def audit(n: int, **kw) -> AuditEntry:
    fields = dict(entry_id=f"00000000-0000-4000-8000-{n:012d}", at=T0 + n, kind="participant_joined",
                  edge_id="edge-a", session_id="s1", user=f"user{n % 7}", details={"n": n})
    fields.update(kw)
    return AuditEntry(**fields)


class StoreSuite:
    """Mixin: set ``dialect``; every test gets a fresh, migrated database."""

    dialect = ""

    @defer.inlineCallbacks
    def setUp(self):
        self.config = dbs.fresh_database(self, self.dialect)
        self.clock = task.Clock()
        self.clock.advance(T0)
        self.db = self.open()
        yield prepare_database(self.db, self.clock)
        self.store = LocatorStore(self.db, self.clock)

    def open(self, config=None, retries=1) -> Database:
        db = Database(config or self.config, reactor, retries=retries)
        self.addCleanup(db.close)
        return db

    def sql(self, sql, *args):
        def run(txn):
            txn.execute(sql, args)
            return txn.fetchall() if txn.description else None

        return self.db.runInteraction("test sql", run)

    # ---------------------------------------------------------- migrations

    @defer.inlineCallbacks
    def test_migrations_are_idempotent(self):
        again = yield prepare_database(self.db, self.clock)
        self.assertEqual(again, SCHEMA_VERSION)
        third = yield prepare_database(self.open(), self.clock)
        self.assertEqual(third, SCHEMA_VERSION)
        rows = yield self.sql("SELECT version FROM applied_migrations ORDER BY version")
        self.assertEqual([r[0] for r in rows], list(range(1, SCHEMA_VERSION + 1)))
        rows = yield self.sql("SELECT version, compat_version FROM schema_version")
        self.assertEqual([tuple(r) for r in rows], [(SCHEMA_VERSION, 1)])

    @defer.inlineCallbacks
    def test_concurrent_start_ups_on_an_empty_database(self):
        config = dbs.fresh_database(self, self.dialect)
        results = yield defer.gatherResults(
            [prepare_database(self.open(config), self.clock) for _ in range(3)],
            consumeErrors=True)
        self.assertEqual(results, [SCHEMA_VERSION] * 3)
        rows = yield LocatorStore(self.open(config), self.clock).db.runInteraction(
            "count", lambda txn: (txn.execute("SELECT COUNT(*) FROM applied_migrations"),
                                  txn.fetchone()[0])[1])
        self.assertEqual(rows, SCHEMA_VERSION)

    @defer.inlineCallbacks
    def test_newer_incompatible_schema_is_refused(self):
        yield self.sql("UPDATE schema_version SET version = ?, compat_version = ?",
                       SCHEMA_VERSION + 3, SCHEMA_VERSION + 2)
        e = yield self.assertFailure(prepare_database(self.open(), self.clock), SchemaTooNew)
        message = str(e)
        self.assertIn(f"schema version {SCHEMA_VERSION + 3}", message)
        self.assertIn(f"supports up to schema {SCHEMA_VERSION}", message)
        self.assertIn("upgrade the locator", message)

    @defer.inlineCallbacks
    def test_newer_compatible_schema_is_used(self):
        yield self.sql("UPDATE schema_version SET version = ?", SCHEMA_VERSION + 1)
        version = yield prepare_database(self.open(), self.clock)
        self.assertEqual(version, SCHEMA_VERSION + 1)

    # ---------------------------------------------------------- edges

    @defer.inlineCallbacks
    def test_register_edge_upserts_and_keeps_first_seen(self):
        e = yield self.store.register_edge("edge-a", "https://a.example", "eu", "1.0")
        self.assertEqual((e.edge_id, e.region, e.first_seen, e.last_seen, e.suspended),
                         ("edge-a", "eu", T0, T0, False))
        self.clock.advance(30)
        e = yield self.store.register_edge("edge-a", "https://a2.example", "us", "1.1")
        self.assertEqual((e.public_url, e.region, e.version, e.first_seen, e.last_seen),
                         ("https://a2.example", "us", "1.1", T0, T0 + 30))
        yield self.store.register_edge("edge-b", "https://b.example", "eu", "1.0")
        edges = yield self.store.list_edges()
        self.assertEqual([x.edge_id for x in edges], ["edge-a", "edge-b"])

    @defer.inlineCallbacks
    def test_edge_stats(self):
        ok = yield self.store.update_edge_stats("ghost", 0.5, 10, 1, 1, 1)
        self.assertFalse(ok)
        yield self.store.register_edge("edge-a", "https://a.example", "eu", "1.0")
        self.clock.advance(5)
        ok = yield self.store.update_edge_stats("edge-a", 0.25, 12.5, 40, 7, 30)
        self.assertTrue(ok)
        e = yield self.store.get_edge("edge-a")
        self.assertEqual((e.load, e.lag_ms, e.connections, e.sessions, e.users, e.stats_at,
                          e.last_seen), (0.25, 12.5, 40, 7, 30, T0 + 5, T0 + 5))

    @defer.inlineCallbacks
    def test_suspension_survives_reopening_the_database(self):
        yield self.store.register_edge("edge-a", "https://a.example", "eu", "1.0")
        self.assertFalse((yield self.store.set_suspended("ghost", True)))
        self.assertTrue((yield self.store.set_suspended("edge-a", True)))
        self.db.close()
        reopened = LocatorStore(self.open(), self.clock)
        e = yield reopened.get_edge("edge-a")
        self.assertTrue(e.suspended)
        # The edge reconnecting after the restart stays suspended.
        e = yield reopened.register_edge("edge-a", "https://a.example", "eu", "1.1")
        self.assertTrue(e.suspended)
        yield reopened.set_suspended("edge-a", False)
        self.assertFalse((yield reopened.get_edge("edge-a")).suspended)

    @defer.inlineCallbacks
    def test_remove_edge(self):
        yield self.store.register_edge("edge-a", "https://a.example", "eu", "1.0")
        self.assertTrue((yield self.store.remove_edge("edge-a")))
        self.assertIsNone((yield self.store.get_edge("edge-a")))

    # ---------------------------------------------------------- sessions and teams

    @defer.inlineCallbacks
    def test_session_directory(self):
        yield self.store.session_started("s1", "edge-a", "team-x", T0)
        yield self.store.session_started("s1", "edge-a", "team-x", T0)  # replayed
        yield self.store.session_started("s2", "edge-b", None, T0 + 10)
        s = yield self.store.get_session("s1")
        self.assertEqual((s.edge_id, s.team, s.started_at, s.ended_at), ("edge-a", "team-x", T0,
                                                                         None))
        yield self.store.session_ended("s1", "edge-a", T0 + 60)
        yield self.store.session_ended("s1", "edge-a", T0 + 99)  # replayed: first end wins
        s = yield self.store.get_session("s1")
        self.assertEqual(s.ended_at, T0 + 60)
        self.assertFalse(s.active)
        active = yield self.store.list_sessions()
        self.assertEqual([x.session_id for x in active], ["s2"])
        everything = yield self.store.list_sessions(active_only=False)
        self.assertEqual([x.session_id for x in everything], ["s2", "s1"])
        team = yield self.store.list_sessions(active_only=False, team="team-x")
        self.assertEqual([x.session_id for x in team], ["s1"])
        self.assertIsNone((yield self.store.get_session("nope")))

    @defer.inlineCallbacks
    def test_session_end_replayed_before_start(self):
        yield self.store.session_ended("s9", "edge-a", T0 + 50)
        yield self.store.session_started("s9", "edge-a", "t", T0 + 5)
        s = yield self.store.get_session("s9")
        self.assertEqual((s.team, s.started_at, s.ended_at), ("t", T0 + 5, T0 + 50))

    @defer.inlineCallbacks
    def test_end_sessions_on_failed_edge_and_daily_counts(self):
        for i in range(3):
            yield self.store.session_started(f"a{i}", "edge-a", None, T0 + i * 86400)
        yield self.store.session_started("b0", "edge-b", None, T0 + 1)
        n = yield self.store.end_sessions_on_edge("edge-a", T0 + 300000)
        self.assertEqual(n, 3)
        active = yield self.store.list_sessions()
        self.assertEqual([x.session_id for x in active], ["b0"])
        per_day = yield self.store.sessions_started_per_bucket(T0, T0 + 5 * 86400, 86400)
        self.assertEqual(per_day, [(T0, 2), (T0 + 86400, 1), (T0 + 2 * 86400, 1)])

    @defer.inlineCallbacks
    def test_team_presence(self):
        self.assertIsNone((yield self.store.get_team_edge("t1")))
        yield self.store.assign_team("t1", "edge-a")
        yield self.store.assign_team("t2", "edge-a")
        yield self.store.assign_team("t3", "edge-b")
        yield self.store.assign_team("t1", "edge-b")
        self.assertEqual((yield self.store.get_team_edge("t1")), "edge-b")
        n = yield self.store.unassign_edge_teams("edge-a")
        self.assertEqual(n, 1)
        self.assertEqual((yield self.store.list_team_assignments()),
                         {"t1": "edge-b", "t3": "edge-b"})

    # ---------------------------------------------------------- audit

    @defer.inlineCallbacks
    def test_audit_exactly_once_within_and_across_batches(self):
        first = [audit(1), audit(2), audit(1), audit(3)]
        stored = yield self.store.insert_audit_batch(first)
        self.assertEqual(stored, 3)
        second = [audit(3), audit(4), audit(2, kind="session_ended"), audit(5), audit(4)]
        stored = yield self.store.insert_audit_batch(second)
        self.assertEqual(stored, 2)
        stored = yield self.store.insert_audit_batch(first + second)
        self.assertEqual(stored, 0)
        self.assertEqual((yield self.store.insert_audit_batch([])), 0)
        rows = yield self.sql("SELECT entry_id, kind FROM audit_entries ORDER BY entry_id")
        self.assertEqual(len(rows), 5)
        # The first copy of an id wins.
        self.assertEqual(rows[1][1], "participant_joined")

    @defer.inlineCallbacks
    def test_audit_batch_of_5000(self):
        entries = [audit(i, details={"n": i, "note": "é ✓ " * 3}) for i in range(5000)]
        stored = yield self.store.insert_audit_batch(entries)
        self.assertEqual(stored, 5000)
        rows = yield self.sql("SELECT COUNT(*) FROM audit_entries")
        self.assertEqual(rows[0][0], 5000)
        stored = yield self.store.insert_audit_batch(entries[2500:] + [audit(5000)])
        self.assertEqual(stored, 1)

    @defer.inlineCallbacks
    def test_query_audit(self):
        yield self.store.insert_audit_batch(
            [audit(i, kind="session_started" if i % 3 == 0 else "participant_joined",
                   edge_id="edge-a" if i < 10 else "edge-b") for i in range(20)])
        newest = yield self.store.query_audit(limit=3)
        self.assertEqual([e.at for e in newest], [T0 + 19, T0 + 18, T0 + 17])
        e = newest[0]
        self.assertEqual((e.kind, e.edge_id, e.session_id, e.user, e.details),
                         ("participant_joined", "edge-b", "s1", "user5", {"n": 19}))
        page2 = yield self.store.query_audit(limit=3, offset=3)
        self.assertEqual([e.at for e in page2], [T0 + 16, T0 + 15, T0 + 14])
        window = yield self.store.query_audit(since=T0 + 5, until=T0 + 8)
        self.assertEqual(sorted(e.at for e in window), [T0 + 5, T0 + 6, T0 + 7])
        started = yield self.store.query_audit(kind="session_started")
        self.assertEqual(sorted(int(e.at - T0) for e in started), [0, 3, 6, 9, 12, 15, 18])
        both = yield self.store.query_audit(kind=["session_started", "participant_joined"])
        self.assertEqual(len(both), 20)
        by_user = yield self.store.query_audit(user="user3")
        self.assertEqual(sorted(int(e.at - T0) for e in by_user), [3, 10, 17])
        by_edge = yield self.store.query_audit(edge="edge-a", kind="session_started")
        self.assertEqual(sorted(int(e.at - T0) for e in by_edge), [0, 3, 6, 9])
        top = max(e.seq for e in newest)
        yield self.store.insert_audit_batch([audit(100, at=T0 - 50)])
        fresh = yield self.store.query_audit(after_seq=top)
        self.assertEqual([e.entry_id for e in fresh], [audit(100).entry_id])
        pruned = yield self.store.prune_audit(T0 + 10)
        self.assertEqual(pruned, 11)

    # ---------------------------------------------------------- metrics

    @defer.inlineCallbacks
    def test_metrics_idempotent_and_bucketed(self):
        snaps = []
        for edge, base in (("edge-a", 0), ("edge-b", 100)):
            for i in range(6):  # one snapshot every 10 s for a minute
                snaps.append(MetricSnapshot(
                    snapshot_id=f"{edge}-{i}", edge_id=edge, at=T0 + 10 * i,
                    users_online=base + i, sessions=i, connections=2 * i, lag_ms=float(i),
                    sessions_hosted_total=10 + i, downloads_total=1))
        stored = yield self.store.insert_metrics_batch(snaps + snaps[:3])
        self.assertEqual(stored, 12)
        self.assertEqual((yield self.store.insert_metrics_batch(snaps)), 0)
        buckets = yield self.store.query_metrics(T0, T0 + 60, 30)
        self.assertEqual([b.start for b in buckets], [T0, T0 + 30])
        first, second = buckets
        # Per edge the peak within the bucket, summed over edges.
        self.assertEqual((first.users_online, first.sessions, first.connections, first.edges),
                         (2 + 102, 2 + 2, 4 + 4, 2))
        self.assertEqual((second.users_online, second.sessions_hosted_total,
                          second.downloads_total), (5 + 105, 15 + 15, 2))
        self.assertEqual(first.lag_ms, 1.0)
        only_b = yield self.store.query_metrics(T0, T0 + 60, 60, edge="edge-b")
        self.assertEqual([(b.users_online, b.edges) for b in only_b], [(105, 1)])
        self.assertEqual((yield self.store.prune_metrics(T0 + 30)), 6)

    # ---------------------------------------------------------- config

    @defer.inlineCallbacks
    def test_config_round_trip(self):
        self.assertEqual((yield self.store.get_config("regions", {})), {})
        regions = {"eu": {"cidrs": ["10.0.0.0/8", "2001:db8::/32"], "countries": ["DE"]},
                   "us": ["192.168.0.0/16"], "note": "naïve ✓ \"quoted\" 50%"}
        yield self.store.set_config("regions", regions)
        yield self.store.set_config("advanced", {"minClientVersion": "2024.1.0"})
        self.assertEqual((yield self.store.get_config("regions")), regions)
        yield self.store.set_config("advanced", {"minClientVersion": None})
        yield self.store.set_config("flag", True)
        self.assertEqual((yield self.store.get_all_config()),
                         {"regions": regions, "advanced": {"minClientVersion": None},
                          "flag": True})
        # A literal % beside ? placeholders survives the placeholder conversion.
        rows = yield self.sql("SELECT name FROM config_entries WHERE name LIKE 'reg%' "
                              "AND name <> ?", "x")
        self.assertEqual([r[0] for r in rows], ["regions"])

    # ---------------------------------------------------------- the reactor

    @defer.inlineCallbacks
    def test_concurrent_interactions_do_not_block_the_reactor(self):
        def slow(txn, n):
            if self.dialect == "postgres":
                txn.execute("SELECT pg_sleep(0.3)")
            elif self.dialect == "mysql":
                txn.execute("SELECT SLEEP(0.3)")
            else:
                time.sleep(0.3)  # in the pool thread, as a slow query would be
            txn.execute("SELECT COUNT(*) FROM edges")
            txn.fetchall()
            return n

        ticks = []
        done = []
        interactions = [self.db.runInteraction("slow", slow, n) for n in range(3)]
        for d in interactions:
            d.addCallback(lambda r: done.append(r) or r)
        reactor.callLater(0.01, lambda: ticks.append(len(done)))
        results = yield defer.gatherResults(interactions)
        self.assertEqual(results, [0, 1, 2])
        # The reactor ran a timer while every interaction was still in its thread.
        self.assertEqual(ticks, [0])


class StoreSQLiteTests(StoreSuite, unittest.TestCase):
    dialect = "sqlite"


class StorePostgresTests(StoreSuite, unittest.TestCase):
    dialect = "postgres"


class StoreMySQLTests(StoreSuite, unittest.TestCase):
    dialect = "mysql"
