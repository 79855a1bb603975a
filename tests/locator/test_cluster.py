"""Several locators: the pure parts (notification payloads, liveness, merging shared edge
rows into the directory, the CT_LOCATOR list) in memory; the database parts on SQLite and
PostgreSQL (real servers)."""

from __future__ import annotations

import json

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from ct.common.catalog import parse_locator_urls
from ct.common.settings import SettingError
from ct.locator.cluster import Batch, Liveness, channel_name, parse_payload
from ct.locator.edges import EdgeDirectory
from ct.locator.placement import EdgeState
from ct.protocol.link import Draining
from ct.storage.cluster import LocatorRecord, SharedEdge


def record(locator_id, heartbeat, started=0.0, instance="i1"):
    return LocatorRecord(locator_id, f"http://{locator_id}", "1", instance, started, heartbeat)


def row(edge_id="e1", owner="B", linked_at=100.0, stats_at=100.0, lost=None, **kw):
    fields = dict(edge_id=edge_id, url=f"http://{edge_id}", region="default", version="1",
                  suspended=False, stats_at=stats_at, cpu=None, lag_ms=None, connections=0,
                  sessions=0, users=0, sessions_hosted=0, owner=owner, linked_at=linked_at,
                  link_lost_at=lost)
    fields.update(kw)
    return SharedEdge(**fields)


class PayloadTests(unittest.TestCase):
    def test_a_batch_round_trips_and_stays_under_the_limit(self):
        batch = Batch()
        batch.edges.update(f"edge-{i:04d}" for i in range(600))
        batch.config.add("regions")
        batch.placed["e1"] = 3
        batch.teams["team-a"] = "e2"
        payloads = batch.payloads("A", limit=2000)
        self.assertGreater(len(payloads), 1)
        self.assertTrue(all(len(p.encode()) <= 2000 for p in payloads))
        merged = {"edges": [], "config": [], "placed": {}, "teams": {}}
        for p in payloads:
            message = parse_payload(p)
            self.assertEqual(message["from"], "A")
            merged["edges"] += message["edges"]
            merged["config"] += message["config"]
            merged["placed"].update(message["placed"])
            merged["teams"].update(message["teams"])
        self.assertEqual(sorted(merged["edges"]), sorted(batch.edges))
        self.assertEqual((merged["config"], merged["placed"], merged["teams"]),
                         (["regions"], {"e1": 3}, {"team-a": "e2"}))

    def test_foreign_or_malformed_payloads_are_ignored_or_trimmed(self):
        self.assertIsNone(parse_payload("not json"))
        self.assertIsNone(parse_payload(json.dumps({"edges": ["e1"]})))  # no sender
        message = parse_payload(json.dumps({"from": "B", "edges": ["e1", 5],
                                            "placed": {"e1": -1, "e2": 2, "e3": "x"},
                                            "teams": {"t": 1}}))
        self.assertEqual((message["edges"], message["placed"], message["teams"]),
                         (["e1"], {"e2": 2}, {}))

    def test_log_ins_travel_as_hashes_only(self):
        batch = Batch()
        keys = {f"{i:064x}" for i in range(300)}
        batch.logins.update(keys)
        received = []
        for p in batch.payloads("A", limit=2000):
            received += parse_payload(p)["logins"]
        self.assertEqual(sorted(received), sorted(keys))
        message = parse_payload(json.dumps({"from": "B", "logins": [
            "a" * 64, "A" * 64, "a" * 63, "session-id-in-clear", 7]}))
        self.assertEqual(message["logins"], ["a" * 64])
        self.assertEqual(parse_payload(json.dumps({"from": "B", "logins": "x"}))["logins"], [])

    def test_one_channel_per_schema(self):
        self.assertEqual(channel_name(None), "ct_locators")
        self.assertEqual(channel_name("ct_test_1"), "ct_locators_ct_test_1")
        self.assertLessEqual(len(channel_name("x" * 63)), 63)


class LivenessTests(unittest.TestCase):
    def test_alive_while_the_heartbeat_advances_by_our_clock(self):
        clock = Clock()
        clock.advance(1000)
        live = Liveness(clock, dead_after=3)
        # B's clock is 500 s behind ours: it is still alive while its heartbeat advances.
        came, went = live.update([record("A", 1000), record("B", 500, started=400)])
        self.assertEqual((came, went), ({"A"}, set()))
        clock.advance(1)
        came, _ = live.update([record("A", 1001), record("B", 501, started=400)])
        self.assertEqual(came, {"B"})
        went = set()
        for second in range(2, 6):  # B stops; A goes on
            clock.advance(1)
            came, gone = live.update([record("A", 1000 + second), record("B", 501, started=400)])
            self.assertEqual(came, set())
            went |= gone
        self.assertEqual(went, {"B"})
        self.assertFalse(live.holds("B", 450))
        self.assertTrue(live.holds("A", 1000))

    def test_a_link_made_by_an_earlier_run_is_not_held(self):
        clock = Clock()
        clock.advance(100)
        live = Liveness(clock)
        live.update([record("A", 100, started=90)])
        self.assertTrue(live.holds("A", 95))
        self.assertFalse(live.holds("A", 80))  # made before A restarted
        self.assertFalse(live.holds(None, 95))


class SharedDirectoryTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(100)
        self.directory = EdgeDirectory(self.clock, dead_after=5, link_grace=60)

    def state(self, edge_id="e1"):
        return self.directory.state(self.directory.edges[edge_id])

    def test_an_edge_linked_to_a_live_locator_is_placeable_while_it_reports(self):
        self.directory.shared(row(connections=4, sessions_hosted=2), owner_alive=True)
        self.assertEqual(self.state(), EdgeState.ONLINE)
        snap, = self.directory.snapshots()
        self.assertEqual(snap.connections, 4)
        self.clock.advance(6)
        # Not re-read meanwhile (the database was away): nothing says it fell silent.
        self.assertEqual(self.state(), EdgeState.ONLINE)
        self.directory.shared(row(), owner_alive=True)  # re-read: no report for 6 s
        self.assertEqual(self.state(), EdgeState.UNAVAILABLE)
        self.directory.shared(row(stats_at=106), owner_alive=True)
        self.assertEqual(self.state(), EdgeState.ONLINE)

    def test_reports_are_timed_by_this_locators_clock(self):
        self.directory.shared(row(stats_at=40.0), owner_alive=True)  # its clock: 60 s behind
        self.assertEqual(self.state(), EdgeState.ONLINE)  # a link new to us counts from now
        self.clock.advance(4)
        self.directory.shared(row(stats_at=44.0), owner_alive=True)  # it reports: fresh
        self.clock.advance(4)
        self.directory.shared(row(stats_at=48.0), owner_alive=True)
        self.assertEqual(self.state(), EdgeState.ONLINE)
        self.clock.advance(6)
        self.directory.shared(row(stats_at=48.0), owner_alive=True)  # silent for 6 s
        self.assertEqual(self.state(), EdgeState.UNAVAILABLE)

    def test_a_new_link_counts_as_a_report_until_the_first_one(self):
        self.directory.shared(row(stats_at=None), owner_alive=True)
        self.assertEqual(self.state(), EdgeState.ONLINE)
        self.clock.advance(6)
        self.directory.shared(row(stats_at=None), owner_alive=True)
        self.assertEqual(self.state(), EdgeState.UNAVAILABLE)  # never reported

    def test_a_lost_link_is_probed_here_too_and_two_failures_flag_it(self):
        self.directory.shared(row(), owner_alive=True)
        self.assertEqual(self.directory.probes_due(2.0), [])
        self.clock.advance(1)
        self.directory.shared(row(owner=None, lost=101.0), owner_alive=False)
        self.assertEqual(self.state(), EdgeState.LINK_LOST)
        info, = self.directory.probes_due(2.0)
        lost_at = self.directory.probe_started(info)
        self.directory.health_result("e1", False, lost_at)
        self.clock.advance(2)
        info, = self.directory.probes_due(2.0)
        self.directory.health_result("e1", False, self.directory.probe_started(info))
        self.assertEqual(self.state(), EdgeState.UNAVAILABLE)
        # A later read of the same lost link changes nothing; a new link revives it.
        self.directory.shared(row(owner=None, lost=101.0), owner_alive=False)
        self.assertEqual(self.state(), EdgeState.UNAVAILABLE)
        self.directory.shared(row(owner="C", linked_at=104.0, stats_at=104.0), owner_alive=True)
        self.assertEqual(self.state(), EdgeState.ONLINE)

    def test_a_dead_locator_makes_its_edges_link_lost(self):
        self.directory.shared(row(), owner_alive=True)
        self.clock.advance(2)
        self.directory.shared(row(), owner_alive=False)
        self.assertEqual(self.state(), EdgeState.LINK_LOST)
        self.assertEqual(self.directory.edges["e1"].link_lost_at, 102.0)

    def test_an_edge_linked_here_keeps_its_own_view_but_takes_the_suspension(self):
        link = object()
        self.directory.connected("e1", "http://e1", "default", "1", link, False)
        changed = self.directory.shared(row(owner="B", suspended=True, stats_at=50),
                                        owner_alive=True)
        self.assertTrue(changed)
        info = self.directory.edges["e1"]
        self.assertEqual((info.link, info.owner, self.state()),
                         (link, None, EdgeState.SUSPENDED))

    def test_a_drain_recorded_by_the_link_holder_counts_while_its_link_lasts(self):
        drain = Draining(100.0, 110.0)
        self.directory.shared(row(draining=drain), owner_alive=True)
        self.assertEqual(self.state(), EdgeState.DRAINING)
        self.assertEqual(self.directory.describe(self.directory.edges["e1"])["drainingUntil"],
                         110.0)
        snap, = self.directory.snapshots()
        self.assertFalse(snap.eligible)
        # Its locator died (the row still says draining): link-lost, the drain forgotten.
        self.clock.advance(1)
        self.directory.shared(row(draining=drain), owner_alive=False)
        self.assertEqual(self.state(), EdgeState.LINK_LOST)
        self.assertIsNone(self.directory.edges["e1"].draining)
        # Relinked elsewhere without draining (restarted): online again.
        self.directory.shared(row(owner="C", linked_at=101.0, stats_at=101.0), owner_alive=True)
        self.assertEqual(self.state(), EdgeState.ONLINE)
        # A drain left over in the row (relinked by a locator that does not share drains)
        # counts not once its end is long past.
        self.clock.advance(300)
        self.directory.shared(row(owner="C", linked_at=101.0, stats_at=401.0, draining=drain),
                              owner_alive=True)
        self.assertEqual(self.state(), EdgeState.ONLINE)

    def test_an_edge_linked_here_drains_until_its_link_goes_or_it_registers_again(self):
        link = object()
        info = self.directory.connected("e1", "http://e1", "default", "1", link, True)
        self.assertTrue(self.directory.set_draining("e1", Draining(100.0, 103.0)))
        self.assertFalse(self.directory.set_draining("e1", Draining(100.0, 103.0)))  # no news
        self.assertEqual(self.state(), EdgeState.DRAINING)  # before its suspension
        # A row read meanwhile (another locator's view of it) changes nothing here.
        self.directory.shared(row(owner="B"), owner_alive=True)
        self.assertEqual(self.state(), EdgeState.DRAINING)
        self.directory.disconnected("e1", link)
        self.assertEqual((info.draining, self.state()), (None, EdgeState.LINK_LOST))
        self.directory.connected("e1", "http://e1", "default", "1", object(), False,
                                 draining=Draining(100.0, 103.0))
        self.assertEqual(self.state(), EdgeState.DRAINING)  # relinked while still stopping
        self.directory.connected("e1", "http://e1", "default", "1", object(), False)
        self.assertEqual(self.state(), EdgeState.ONLINE)  # started again

    def test_placements_reported_by_other_locators_weigh_until_hosted(self):
        self.directory.shared(row(sessions_hosted=1), owner_alive=True)
        for _ in range(3):
            self.directory.placed("e1")
        self.assertEqual(self.directory.snapshots()[0].pending, 3)
        self.clock.advance(1)
        self.directory.shared(row(sessions_hosted=3, stats_at=101), owner_alive=True)
        self.assertEqual(self.directory.snapshots()[0].pending, 1)


class LocatorListSettingTests(unittest.TestCase):
    def test_one_url_or_a_list(self):
        self.assertEqual(parse_locator_urls("http://a:1/"), "http://a:1")
        self.assertIsNone(parse_locator_urls("none"))
        self.assertEqual(parse_locator_urls("http://a:1, https://b:2/ ,"),
                         "http://a:1,https://b:2")
        for bad in ("http://a:1,ftp://b", "http://a:1,none", ",".join(["http://a"] * 17)):
            with self.assertRaises(SettingError):
                parse_locator_urls(bad)


class RotatingEndpointTests(unittest.TestCase):
    def test_each_attempt_goes_to_the_next_locator(self):
        from autobahn.twisted.websocket import WebSocketClientFactory

        from ct.edge.link import RotatingEndpoint

        tried = []

        class Endpoint:
            def __init__(self, name):
                self.name = name

            def connect(self, factory):
                tried.append((self.name, ws.url))
                return defer.succeed(None)

        ws = WebSocketClientFactory("ws://a:1/ws/edge")
        rotating = RotatingEndpoint([("ws://a:1/ws/edge", Endpoint("a")),
                                     ("ws://b:2/ws/edge", Endpoint("b"))], ws)
        for _ in range(3):
            rotating.connect(object())
        self.assertEqual(tried, [("a", "ws://a:1/ws/edge"), ("b", "ws://b:2/ws/edge"),
                                 ("a", "ws://a:1/ws/edge")])


class _ClusterStoreSuite:
    """Mixin: the registry and edge links on a real database (set ``dialect``)."""

    dialect = ""

    @defer.inlineCallbacks
    def setUp(self):
        from twisted.internet import reactor

        from ct.storage.cluster import ClusterStore
        from ct.storage.database import Database
        from ct.storage.migrations import prepare_database
        from ct.storage.store import LocatorStore
        from tests.storage import dbs

        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.db = Database(dbs.fresh_database(self, self.dialect), reactor)
        self.addCleanup(self.db.close)
        yield prepare_database(self.db, self.clock)
        self.store = LocatorStore(self.db, self.clock)
        self.cluster = ClusterStore(self.db, self.clock)

    @defer.inlineCallbacks
    def test_heartbeats_list_every_locator_and_a_clean_stop_removes_its_row(self):
        yield self.cluster.heartbeat("A", "http://a", "1", "ia", 999_990.0, 0.4, None)
        records = yield self.cluster.heartbeat("B", "http://b", "1", "ib", 999_995.0, None, 2.5)
        self.assertEqual([(r.locator_id, r.relay_url, r.peer_latency_ms) for r in records],
                         [("A", "http://a", None), ("B", "http://b", 2.5)])
        yield self.cluster.remove_locator("A", "not-its-instance")
        yield self.cluster.remove_locator("B", "ib")
        records = yield self.cluster.list_locators()
        self.assertEqual([r.locator_id for r in records], ["A"])

    @defer.inlineCallbacks
    def test_a_link_lost_by_an_older_holder_does_not_undo_a_newer_link(self):
        yield self.store.register_edge("e1", "http://e1", "eu", "1")
        yield self.store.update_edge_stats("e1", 0.5, 3.0, 7, 2, 5)
        yield self.cluster.link_edge("e1", "A", 999_000.5)
        yield self.cluster.link_edge("e1", "B", 999_001.25)  # relinked before A noticed
        changed = yield self.cluster.unlink_edge("e1", "A", 999_000.5)
        self.assertFalse(changed)
        yield self.cluster.set_hosted("e1", 9)
        shared, = yield self.cluster.shared_edges(["e1"])
        self.assertEqual((shared.owner, shared.linked_at, shared.link_lost_at, shared.region,
                          shared.connections, shared.sessions_hosted, shared.cpu),
                         ("B", 999_001.25, None, "eu", 7, 9, 0.5))
        changed = yield self.cluster.unlink_edge("e1", "B", 999_001.25)
        self.assertTrue(changed)
        shared, = yield self.cluster.shared_edges()
        self.assertEqual((shared.owner, shared.link_lost_at), (None, 1_000_000.0))
        self.assertEqual((yield self.cluster.shared_edges([])), [])

    @defer.inlineCallbacks
    def test_a_drain_is_shared_while_its_link_lasts(self):
        yield self.store.register_edge("e1", "http://e1", "eu", "1")
        yield self.cluster.link_edge("e1", "A", 999_000.5)
        shared, = yield self.cluster.shared_edges(["e1"])
        self.assertIsNone(shared.draining)
        drain = Draining(999_001.25, 999_031.25)
        # Only the holder of that very link records it.
        self.assertFalse((yield self.cluster.set_draining("e1", "B", 999_000.5, drain)))
        self.assertFalse((yield self.cluster.set_draining("e1", "A", 999_000.0, drain)))
        self.assertTrue((yield self.cluster.set_draining("e1", "A", 999_000.5, drain)))
        shared, = yield self.cluster.shared_edges(["e1"])
        self.assertEqual(shared.draining, drain)
        yield self.cluster.unlink_edge("e1", "A", 999_000.5)  # it stopped
        shared, = yield self.cluster.shared_edges(["e1"])
        self.assertIsNone(shared.draining)
        # A link made while still draining says so; a new one without clears it.
        yield self.cluster.link_edge("e1", "B", 999_002.0, drain)
        shared, = yield self.cluster.shared_edges(["e1"])
        self.assertEqual((shared.owner, shared.draining), ("B", drain))
        yield self.cluster.link_edge("e1", "A", 999_003.0)
        shared, = yield self.cluster.shared_edges(["e1"])
        self.assertIsNone(shared.draining)


class ClusterStoreSQLiteTests(_ClusterStoreSuite, unittest.TestCase):
    dialect = "sqlite"


class ClusterStorePostgresTests(_ClusterStoreSuite, unittest.TestCase):
    dialect = "postgres"


class ClusterStoreMySQLTests(_ClusterStoreSuite, unittest.TestCase):
    dialect = "mysql"


class DashboardLocatorsTests(unittest.TestCase):
    def render(self, locators) -> str:
        from twisted.web.template import flattenString

        from ct.dashboard.pages.edges import EdgePages

        parts = EdgePages._locators(locators)
        if not parts:
            return ""
        out = []
        for part in parts:
            flattenString(None, part).addCallback(out.append)
        return b"".join(out).decode()

    def test_listed_with_several_locators_and_slow_ones_marked(self):
        def loc(i, alive=True, slow=False):
            return {"locator": f"loc-{i}", "url": f"http://l{i}", "version": "1",
                    "self": i == 1, "alive": alive, "heartbeatAgo": 0.4,
                    "databaseLatencyMs": 12.5 if slow else 0.8, "latencyMs": 1.0,
                    "slow": slow}

        self.assertEqual(self.render([loc(1)]), "")  # one locator: nothing to list
        html = self.render([loc(1), loc(2, alive=False), loc(3, slow=True)])
        self.assertIn('id="locator-loc-2"', html)
        self.assertIn("dead", html)
        self.assertIn("(this one)", html)
        self.assertEqual(html.count(">slow<"), 1)
        self.assertIn("12.5 ms", html)


class _TwoLocatorsSuite:
    """Two locators in this process on one real database (set ``dialect``)."""

    dialect = ""

    def setUp(self):
        from tests.storage import dbs

        self.config = dbs.fresh_database(self, self.dialect)

    @defer.inlineCallbacks
    def locator(self, name: str):
        from twisted.internet import reactor

        from ct.locator.cluster import Cluster, make_listener
        from ct.locator.service import Locator
        from ct.storage.cluster import ClusterStore
        from ct.storage.database import Database
        from ct.storage.migrations import prepare_database
        from ct.storage.store import LocatorStore

        db = Database(self.config, reactor)
        self.addCleanup(db.close)
        yield prepare_database(db, reactor)
        cluster = Cluster(reactor, db, ClusterStore(db, reactor), name,
                          lambda: f"http://{name}", "1")
        locator = Locator(reactor, LocatorStore(db, reactor), EdgeDirectory(reactor), None,
                          cluster=cluster)
        yield cluster.start(make_listener(reactor, cluster) if cluster.shared else None)
        self.addCleanup(cluster.stop)
        yield locator.start()
        self.addCleanup(locator.stop)
        return locator


class SecondLocatorRefusedSuite(_TwoLocatorsSuite):
    @defer.inlineCallbacks
    def test_a_second_locator_is_refused_and_the_first_goes_on(self):
        from ct.locator.cluster import SecondLocatorRefused

        from tests.edge.util import sleep

        first = yield self.locator("A")
        yield sleep(3.5)  # A's heartbeat goes on beyond the bound a dead one is found in
        e = yield self.assertFailure(self.locator("B"), SecondLocatorRefused)
        self.assertIn("another locator (A, http://A)", str(e))
        self.assertIn("several locators need PostgreSQL", str(e))
        records = yield first.cluster.store.list_locators()
        self.assertEqual([r.locator_id for r in records], ["A"])  # B left no row


class SecondLocatorOnSQLiteTests(SecondLocatorRefusedSuite, unittest.TestCase):
    dialect = "sqlite"


class SecondLocatorOnMySQLTests(SecondLocatorRefusedSuite, unittest.TestCase):
    dialect = "mysql"


class SharedSettingsOnPostgresTests(_TwoLocatorsSuite, unittest.TestCase):
    dialect = "postgres"
    timeout = 60

    @defer.inlineCallbacks
    def test_settings_and_regions_changed_on_one_apply_on_the_other(self):
        from tests.edge.util import wait_for

        a = yield self.locator("A")
        b = yield self.locator("B")
        yield wait_for(lambda: a.cluster.peers() == {"B"} and b.cluster.peers() == {"A"},
                       timeout=10, step=0.05)
        yield wait_for(lambda: a.cluster.listener.up and b.cluster.listener.up, timeout=10,
                       step=0.05)
        yield a.set_edge_setting("advanced", {"minClientVersion": "2.0"}, by="test")
        yield wait_for(lambda: b.edge_settings["advanced"] == {"minClientVersion": "2.0"},
                       timeout=2, step=0.02)
        yield b.set_regions({"eu": ["10.0.0.0/8"]})
        yield wait_for(lambda: a.resolver.region_for("10.1.2.3") == "eu", timeout=2,
                       step=0.02)
        self.assertGreater(b.cluster.notifications_received, 0)
        self.assertIsNotNone(a.cluster.db_latency_ms)

    @defer.inlineCallbacks
    def test_placements_and_suspensions_on_one_weigh_on_the_other(self):
        from ct.protocol import link
        from tests.edge.util import wait_for

        class Link:
            """What the locator sends the edge (no socket: the edge is not under test)."""

            def __init__(self):
                self.sent = []
                self.transport = self

            def loseConnection(self):
                pass

            def send_json(self, message):
                self.sent.append(message)

        a = yield self.locator("A")
        b = yield self.locator("B")
        yield wait_for(lambda: a.cluster.peers() == {"B"} and b.cluster.peers() == {"A"}
                       and a.cluster.listener.up and b.cluster.listener.up, timeout=10,
                       step=0.05)
        edge_link = Link()
        yield a.edge_registered(edge_link, link.Register("e1", "http://e1", "default", "1"))
        yield wait_for(lambda: "e1" in b.directory.edges and
                       b.directory.state(b.directory.edges["e1"]) == EdgeState.ONLINE,
                       timeout=2, step=0.02)
        for _ in range(4):
            self.assertEqual(b.place_session("192.0.2.1")["edge"], "e1")
        yield wait_for(lambda: a.directory.snapshots()[0].pending == 4, timeout=2, step=0.02)
        # Suspended through B: A, which holds the link, tells the edge.
        yield b.suspend("e1", True, by="test")
        yield wait_for(lambda: link.suspend(True) in edge_link.sent, timeout=2, step=0.02)
        self.assertEqual(a.directory.state(a.directory.edges["e1"]), EdgeState.SUSPENDED)
