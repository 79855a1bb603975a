"""Usage statistics in SQL (issue 15, item 5) and the ``audit_client`` and ``av_usage``
migrations, on SQLite, PostgreSQL and MariaDB/MySQL."""

from __future__ import annotations

import json

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from ct.storage.database import Database
from ct.storage.migrations import MIGRATIONS, prepare_database
from ct.storage.store import DAY, AuditEntry, LocatorStore, MetricSnapshot, client_family
from tests.storage import dbs

DAY0 = 1_700_006_400.0  # a UTC midnight (2023-11-15)
NOW = DAY0 + 12 * 3600  # noon of the report's last day
TWO_DAYS_AGO = DAY0 - 2 * DAY
_n = iter(range(1, 10**6))
AUDIT_CLIENT = next(m for m in MIGRATIONS if m.name == "audit_client")
BEFORE = [m for m in MIGRATIONS if m.version < AUDIT_CLIENT.version]
AV_USAGE = next(m for m in MIGRATIONS if m.name == "av_usage")
BEFORE_AV = [m for m in MIGRATIONS if m.version < AV_USAGE.version]


def entry(at, kind, session, user, client=None, **details):
    if client is not None:
        details["client"] = client
    return AuditEntry(entry_id=f"e-{next(_n)}", at=at, kind=kind, edge_id="edge-a",
                      session_id=session, user=user, details=details)


def snapshot(edge, at, users, sessions=0, **av):
    return MetricSnapshot(snapshot_id=f"m-{next(_n)}", edge_id=edge, at=at, users_online=users,
                          sessions=sessions, **av)


class UsageSuite:
    dialect = ""

    @defer.inlineCallbacks
    def setUp(self):
        self.config = dbs.fresh_database(self, self.dialect)
        self.clock = task.Clock()
        self.clock.advance(NOW)
        self.db = Database(self.config, reactor)
        self.addCleanup(self.db.close)
        yield prepare_database(self.db, self.clock)
        self.store = LocatorStore(self.db, self.clock)

    @defer.inlineCallbacks
    def test_usage_over_thirty_days(self):
        t = TWO_DAYS_AGO + 3600
        yield self.store.insert_audit_batch([
            # Two days ago: alice hosts from VS Code; bob (twice), carol join: 3 people.
            entry(t, "session_started", "s1", "alice", "vscode/1.90"),
            entry(t + 1, "participant_joined", "s1", "bob", "ct-python-client/0.1"),
            entry(t + 2, "participant_joined", "s1", "carol", "Browser"),
            entry(t + 3, "participant_left", "s1", "bob", reason="closed"),
            entry(t + 4, "participant_joined", "s1", "bob", "ct-python-client/0.2"),
            entry(t + 5, "session_ended", "s1", None, reason="host-left"),
            # Today: alice hosts from IntelliJ, dave joins without naming a client.
            entry(DAY0 + 60, "session_started", "s2", "alice", "IntelliJ/2024.1"),
            entry(DAY0 + 61, "participant_joined", "s2", "dave"),
            # 40 days ago and in the future (clock skew): outside the report.
            entry(DAY0 - 40 * DAY, "session_started", "s0", "zed", "eclipse"),
            entry(NOW + 3600, "session_started", "s9", "yan", "eclipse"),
            entry(t + 6, "dashboard_login", None, "ctuser"),
        ])
        yield self.store.insert_metrics_batch([
            # Slot 10:00 two days ago: edge a peaks at 7 users, edge b at 3 -> 10 at once;
            # sessions 2 + 1 = 3.
            # In calls: edge a 3 people (1 call, then 2 in 2 calls), edge b 2 people in 1
            # call -> 5 people, 3 calls at once at 10:00 (per edge its slot peak, summed).
            snapshot("edge-a", TWO_DAYS_AGO + 36000, 5, 2, av_participants=3, av_calls=1,
                     av_relayed=2, av_direct=2),
            snapshot("edge-a", TWO_DAYS_AGO + 36030, 7, 1, av_participants=2, av_calls=2,
                     av_relayed=0, av_direct=2),
            snapshot("edge-b", TWO_DAYS_AGO + 36040, 3, 1, av_participants=2, av_calls=1,
                     av_relayed=2, av_direct=0),
            # 11:00: edge a alone at 9 (less than 10, though above either edge's 10:00).
            snapshot("edge-a", TWO_DAYS_AGO + 39600, 9, 2),
            snapshot("edge-a", DAY0 + 100, 2, 1),
            snapshot("edge-a", DAY0 - 40 * DAY, 50, 20),
        ])
        report = yield self.store.usage(days=30)
        self.assertEqual((report.since, report.until), (DAY0 - 29 * DAY, NOW))
        self.assertEqual(report.unique_users, 4)
        self.assertEqual(report.sessions, 2)
        self.assertEqual(report.average_session_size, 2.5)
        self.assertEqual(report.host_clients, {"intellij": 1, "vscode": 1})
        self.assertEqual(report.join_clients, {"ct-python-client": 2, "browser": 1,
                                               "unknown": 1})
        self.assertEqual(len(report.days), 30)
        self.assertEqual([d.start for d in report.days[-3:]],
                         [TWO_DAYS_AGO, DAY0 - DAY, DAY0])
        by_day = {d.start: (d.sessions, d.users, d.peak_users, d.peak_sessions)
                  for d in report.days}
        self.assertEqual(by_day[TWO_DAYS_AGO], (1, 3, 10, 3))
        self.assertEqual(by_day[DAY0 - DAY], (0, 0, None, None))
        self.assertEqual(by_day[DAY0], (1, 2, 2, 1))
        self.assertEqual(sum(d.sessions for d in report.days), 2)
        as_json = report.to_json()
        self.assertEqual(json.loads(json.dumps(as_json)), as_json)
        # Calls only two days ago; connections: 4 relayed of 8 over the snapshots (the
        # one 40 days ago is outside).
        self.assertEqual([(d.peak_in_calls, d.peak_calls) for d in report.days[-3:]],
                         [(5, 3), (None, None), (0, 0)])
        self.assertEqual(as_json["av"], {"peakInCalls": 5, "peakCalls": 3,
                                         "relayedShare": 0.5})
        self.assertEqual(as_json["days"][-3]["peakInCalls"], 5)
        self.assertEqual(as_json["days"][-3]["peakCalls"], 3)
        # One day only: today's numbers.
        today = yield self.store.usage(days=1)
        self.assertEqual((today.unique_users, today.sessions, today.average_session_size,
                          [d.peak_users for d in today.days]), (2, 1, 2.0, [2]))
        self.assertEqual(today.to_json()["av"], {"peakInCalls": 0, "peakCalls": 0,
                                                 "relayedShare": None})

    @defer.inlineCallbacks
    def test_usage_of_some_teams_leaves_out_the_deployment_wide_figures(self):
        t = DAY0 + 60
        for sid, team in (("r1", "red"), ("r2", "red"), ("b1", "blue"), ("n1", None)):
            yield self.store.session_started(sid, "edge-a", team, t)
        yield self.store.insert_audit_batch([
            entry(t, "session_started", "r1", "alice", "vscode/1.90"),
            entry(t + 1, "participant_joined", "r1", "bob", "Browser"),
            entry(t + 2, "session_started", "r2", "alice", "IntelliJ/2024.1"),
            entry(t + 3, "session_started", "b1", "carol", "eclipse"),
            entry(t + 4, "participant_joined", "b1", "dave", "Browser"),
            entry(t + 5, "participant_joined", "b1", "erin", "Browser"),
            entry(t + 6, "session_started", "n1", "zed", "eclipse"),
        ])
        yield self.store.insert_metrics_batch([snapshot("edge-a", DAY0 + 100, 9, 4,
                                                        av_participants=2, av_calls=1)])
        red = yield self.store.usage(days=2, teams=["red"])
        self.assertEqual((red.unique_users, red.sessions, red.average_session_size,
                          red.host_clients, red.join_clients, red.teams),
                         (2, 2, 1.5, {"intellij": 1, "vscode": 1}, {"browser": 1},
                          ("red",)))
        self.assertEqual([(d.sessions, d.users, d.peak_users, d.peak_sessions,
                           d.peak_in_calls) for d in red.days],
                         [(0, 0, None, None, None), (2, 2, None, None, None)])
        as_json = red.to_json()
        self.assertEqual(as_json["teams"], ["red"])
        self.assertNotIn("av", as_json)
        self.assertEqual(as_json["days"][-1], {"start": DAY0, "sessions": 2, "users": 2})
        both = yield self.store.usage(days=1, teams=["blue", "red"])
        self.assertEqual((both.unique_users, both.sessions), (5, 3))
        nobody = yield self.store.usage(days=1, teams=[])
        self.assertEqual((nobody.unique_users, nobody.sessions, nobody.host_clients),
                         (0, 0, {}))
        everyone = yield self.store.usage(days=1)  # an administrator's: peaks and A/V
        self.assertEqual((everyone.unique_users, everyone.sessions, everyone.teams,
                          everyone.days[0].peak_users), (6, 4, None, 9))
        self.assertEqual(everyone.to_json()["av"]["peakCalls"], 1)

    @defer.inlineCallbacks
    def test_empty_database(self):
        report = yield self.store.usage(days=7)
        self.assertEqual((report.unique_users, report.sessions, report.average_session_size,
                          report.host_clients, report.join_clients), (0, 0, None, {}, {}))
        self.assertEqual([(d.sessions, d.users, d.peak_users, d.peak_sessions)
                          for d in report.days], [(0, 0, None, None)] * 7)
        self.assertEqual([(d.peak_in_calls, d.peak_calls) for d in report.days],
                         [(None, None)] * 7)
        self.assertEqual(report.to_json()["av"], {"peakInCalls": None, "peakCalls": None,
                                                  "relayedShare": None})

    @defer.inlineCallbacks
    def test_av_usage_migration_keeps_old_snapshots_and_adds_the_counts(self):
        config = dbs.fresh_database(self, self.dialect)
        db = Database(config, reactor)
        self.addCleanup(db.close)
        version = yield prepare_database(db, self.clock, migrations=BEFORE_AV)
        self.assertEqual(version, AV_USAGE.version - 1)

        def old_row(txn):  # as a locator of the schema before wrote it
            txn.execute("INSERT INTO metric_snapshots (snapshot_id, edge_id, at, users_online, "
                        "sessions) VALUES (?, ?, ?, ?, ?)",
                        ("old-1", "edge-a", int(NOW * 1000) - 5000, 4, 2))

        yield db.runInteraction("old row", old_row)
        version = yield prepare_database(db, self.clock)
        self.assertEqual(version, MIGRATIONS[-1].version)
        # Running it again (a MySQL crash between its DDL and its bookkeeping) changes
        # nothing and does not fail on the existing columns.
        yield db.runInteraction("again", AV_USAGE.module.run)
        store = LocatorStore(db, self.clock)
        yield store.insert_metrics_batch([
            snapshot("edge-a", NOW - 1000, 6, 3, av_participants=4, av_calls=2, av_relayed=1,
                     av_direct=3),
            snapshot("edge-b", NOW - 900, 1, 1),  # an edge that sends no call counts
        ])

        def rows(txn):
            txn.execute("SELECT snapshot_id, av_participants, av_calls, av_relayed, av_direct "
                        "FROM metric_snapshots WHERE snapshot_id = 'old-1'")
            return [tuple(int(v) if i else v for i, v in enumerate(r)) for r in txn.fetchall()]

        self.assertEqual((yield db.runInteraction("rows", rows))[0], ("old-1", 0, 0, 0, 0))
        report = yield store.usage(days=1)
        self.assertEqual([(d.peak_users, d.peak_sessions, d.peak_in_calls, d.peak_calls)
                          for d in report.days], [(6, 3, 4, 2)])
        self.assertEqual(report.to_json()["av"], {"peakInCalls": 4, "peakCalls": 2,
                                                  "relayedShare": 0.25})

    @defer.inlineCallbacks
    def test_audit_client_migration_fills_the_client_of_existing_entries(self):
        config = dbs.fresh_database(self, self.dialect)
        db = Database(config, reactor)
        self.addCleanup(db.close)
        version = yield prepare_database(db, self.clock, migrations=BEFORE)
        self.assertEqual(version, AUDIT_CLIENT.version - 1)

        def old_rows(txn):  # as a locator of the schema before wrote them
            for n, (kind, details) in enumerate([
                    ("session_started", {"client": "VSCode/1.2", "team": None}),
                    ("participant_joined", {"client": "ct-python-client/0.1"}),
                    ("participant_joined", {}), ("participant_left", {"client": "x"})]):
                txn.execute("INSERT INTO audit_entries (entry_id, at, kind, session_id, "
                            "user_name, details) VALUES (?, ?, ?, ?, ?, ?)",
                            (f"old-{n}", int(NOW * 1000) - 1000 - n, kind, "s1", f"u{n}",
                             json.dumps(details)))

        yield db.runInteraction("old rows", old_rows)
        version = yield prepare_database(db, self.clock)
        self.assertEqual(version, MIGRATIONS[-1].version)

        def clients(txn):
            txn.execute("SELECT entry_id, client FROM audit_entries ORDER BY entry_id")
            return [tuple(r) for r in txn.fetchall()]

        rows = yield db.runInteraction("clients", clients)
        self.assertEqual(rows, [("old-0", "vscode"), ("old-1", "ct-python-client"),
                                ("old-2", None), ("old-3", None)])
        # Running it again (a MySQL crash between its DDL and its bookkeeping) changes
        # nothing and does not fail on the existing column.
        yield db.runInteraction("again", AUDIT_CLIENT.module.run)
        self.assertEqual((yield db.runInteraction("clients", clients)), rows)
        report = yield LocatorStore(db, self.clock).usage(days=1)
        self.assertEqual((report.unique_users, report.host_clients),
                         (3, {"vscode": 1}))


class ClientFamilyTests(unittest.TestCase):
    def test_client_family(self):
        self.assertEqual([client_family(c) for c in
                          ["VSCode/1.90", " eclipse ", "x" * 100, "", "/1.0", None, 7]],
                         ["vscode", "eclipse", "x" * 64, None, None, None, None])


class UsageSQLiteTests(UsageSuite, unittest.TestCase):
    dialect = "sqlite"


class UsagePostgresTests(UsageSuite, unittest.TestCase):
    dialect = "postgres"


class UsageMySQLTests(UsageSuite, unittest.TestCase):
    dialect = "mysql"
