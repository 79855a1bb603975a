"""One locator and three edges as real processes: placement, suspend, regions, hard failure."""

from __future__ import annotations

import signal
import time

from twisted.internet import defer, reactor
from twisted.trial import unittest

from ct.client.locator import LocatorRefused
from ct.client.presence import TeamPresence
from ct.client.session import SessionClient
from ct.common.tokens import team_token
from tests.deployment.util import OPERATOR, Deployment
from tests.edge.util import close_all, sleep, wait_for

EDGES = ("e1", "e2", "e3")


class _ThreeEdges:
    """A locator and edges ``e1``..``e3`` (with ``edge_env``), all online at the start."""

    edge_env = None

    def setUp(self):
        self.d = Deployment(self, edge_env=self.edge_env)
        self.d.start_locator()
        for name in EDGES:
            self.d.start_edge(name)
        self.clients = []
        self.addCleanup(lambda: close_all(self.clients))
        return self.d.wait_online(EDGES)

    @defer.inlineCallbacks
    def host_via_locator(self, n, forwarded_for=None):
        """Host ``n`` sessions where the locator says; returns the edge of each."""
        placed = []
        for _ in range(n):
            placed.append((yield self.host_one(forwarded_for)))
        return placed

    @defer.inlineCallbacks
    def host_one(self, forwarded_for=None):
        answer = yield self.d.client(forwarded_for).start_session()
        host = SessionClient(reactor, answer["server"], "alice")
        yield host.host()
        self.clients.append(host)
        return answer["edge"]

    @defer.inlineCallbacks
    def wait_reported(self, hosted: int, timeout: float = 20.0):
        """Poll until the edges' reports to the locator show ``hosted`` sessions hosted in
        all (so no placement is pending); returns the listing."""
        client = self.d.client()
        deadline = reactor.seconds() + timeout
        while True:
            listing = yield client.edges(OPERATOR)
            if sum(e.get("sessionsHosted", 0) for e in listing["edges"]) == hosted:
                return listing
            if reactor.seconds() > deadline:
                raise AssertionError(f"reports never showed {hosted} sessions: {listing}")
            yield sleep(0.1)


class PlacementTests(_ThreeEdges, unittest.TestCase):
    timeout = 120
    # With a cap of 10 people per edge, one session weighs 0.25 in an edge's score (as
    # load and counts; docs/placement.md), as much as 100 ms of average event-loop lag.
    # With the nominal capacity of 250 it weighs 0.01, only 4 ms of lag: the lag a busy
    # test machine gives idle edges then decided placements (4/4/1 instead of 3/3/3).
    edge_env = {"CT_MAXCONNECTIONS": "10"}

    @defer.inlineCallbacks
    def test_sessions_spread_over_edges_by_load(self):
        sessions = dict.fromkeys(EDGES, 0)
        placed = []
        for n in range(9):
            yield self.wait_reported(n)  # every edge's report counts the sessions so far
            edge = yield self.host_one()
            self.assertEqual(sessions[edge], min(sessions.values()), (n, edge, sessions))
            sessions[edge] += 1
            placed.append(edge)
        self.assertEqual(sessions, {"e1": 3, "e2": 3, "e3": 3})
        # A joiner asks the locator for the session's edge.
        host = self.clients[0]
        found = yield self.d.client().find_session(host.session)
        self.assertEqual((found["edge"], found["server"]), (placed[0], host.server))


class MultiServerTests(_ThreeEdges, unittest.TestCase):
    timeout = 240

    @defer.inlineCallbacks
    def test_suspend_moves_new_sessions_off_an_edge_and_survives_locator_restart(self):
        yield self.d.client().suspend("e1", True, OPERATOR)
        placed = yield self.host_via_locator(6)
        self.assertNotIn("e1", placed)
        yield self.d.client().suspend("e1", False, OPERATOR)
        placed = yield self.host_via_locator(3)
        self.assertIn("e1", placed)  # the emptiest edge is used at once

        yield self.d.client().suspend("e2", True, OPERATOR)
        port = self.d.locator_port
        self.d.locator.stop()
        self.d.start_locator(port)  # same port and database; edges reconnect by themselves
        states = yield self.d.wait_edges(lambda s: s.get("e1") == "online"
                                         and s.get("e2") == "suspended"
                                         and s.get("e3") == "online")
        self.assertEqual(states["e2"], "suspended")
        placed = yield self.host_via_locator(4)
        self.assertNotIn("e2", placed)
        # Suspended edges still take sessions when nothing else can.
        yield self.d.client().suspend("e1", True, OPERATOR)
        yield self.d.client().suspend("e3", True, OPERATOR)
        placed = yield self.host_via_locator(1)
        self.assertIn(placed[0], {"e1", "e2", "e3"})

    @defer.inlineCallbacks
    def test_kill_9_edge_is_flagged_presence_moves_no_new_sessions(self):
        team = "core"
        token = team_token(self.d.edge_env["CT_TEAM_SECRET"], team)
        bob = TeamPresence(reactor, self.d.locator_url, team, token, "bob")
        carol = TeamPresence(reactor, self.d.locator_url, team, token, "carol")
        self.addCleanup(bob.stop)
        self.addCleanup(carol.stop)
        yield bob.start()
        yield carol.start()
        victim = bob.edge
        self.assertEqual(carol.edge, victim)
        yield bob.states.get()
        yield carol.states.get()

        killed_at = time.monotonic()
        self.d.edges[victim].kill(signal.SIGKILL)
        yield self.d.wait_edges(lambda s: s.get(victim) == "unavailable", timeout=20)
        flagged_after = time.monotonic() - killed_at
        # docs/locator.md: a dead edge is flagged within 2 health probes (2 s apart) + 1 s.
        self.assertLess(flagged_after, 8.0)

        # Presence moves without user action: both members reconnect to the new edge.
        state = yield bob.states.get().addTimeout(20, reactor)
        yield carol.states.get().addTimeout(20, reactor)
        self.assertNotEqual(bob.edge, victim)
        self.assertEqual(bob.edge, carol.edge)
        moved = yield self.d.client().team_edge(team)
        self.assertEqual(moved["edge"], bob.edge)
        yield wait_for(lambda: set(bob.current.members) == {"bob", "carol"}, timeout=10)
        self.assertTrue(set(m["user"] for m in state["members"]) <= {"bob", "carol"})
        placed = yield self.host_via_locator(6)
        self.assertNotIn(victim, placed)

    @defer.inlineCallbacks
    def test_sessions_of_a_dead_edge_are_gone_from_the_directory(self):
        host = SessionClient(reactor, self.d.edge_urls["e2"], "alice", auto_resume=False)
        yield host.host()
        self.clients.append(host)
        sid = host.session
        found = yield self.d.client().find_session(sid)  # the edge told the locator
        self.assertEqual(found["edge"], "e2")
        self.d.edges["e2"].kill(signal.SIGKILL)
        yield self.d.wait_edges(lambda s: s.get("e2") == "unavailable", timeout=20)
        # The check that ends a dead edge's sessions runs every second.
        deadline = reactor.seconds() + 10
        while True:
            try:
                yield self.d.client().find_session(sid, retries=0)
            except LocatorRefused as refused:
                self.assertIn(refused.status, (404, 410))
                break
            self.assertLess(reactor.seconds(), deadline, "the session is still listed")
            yield sleep(0.1)


class RegionTests(unittest.TestCase):
    timeout = 180

    @defer.inlineCallbacks
    def test_clients_land_in_their_region_and_fall_back(self):
        d = Deployment(self, locator_env={"CT_TRUSTED_PROXIES": "127.0.0.1/32"})
        d.start_locator()
        d.start_edge("eu1", region="eu")
        d.start_edge("us1", region="us")
        d.start_edge("us2", region="us")
        yield d.wait_online(["eu1", "us1", "us2"])
        yield d.client().set_regions({"eu": ["198.51.100.0/24", "2001:db8:e::/48"],
                                      "us": ["203.0.113.0/24"]}, OPERATOR)
        clients = []
        self.addCleanup(lambda: close_all(clients))

        @defer.inlineCallbacks
        def place(ip, n):
            out = []
            for _ in range(n):
                answer = yield d.client(forwarded_for=ip).start_session()
                host = SessionClient(reactor, answer["server"], "x")
                yield host.host()
                clients.append(host)
                out.append(answer["edge"])
            return out

        eu = yield place("198.51.100.7", 3)
        self.assertEqual(eu, ["eu1"] * 3)
        eu6 = yield place("2001:db8:e::42", 1)
        self.assertEqual(eu6, ["eu1"])
        us = yield place("203.0.113.9", 4)
        self.assertEqual(sorted(set(us)), ["us1", "us2"])
        # An address from an untrusted peer's header is ignored: no region, balance all.
        d.edges["eu1"].stop()
        yield d.wait_edges(lambda s: s.get("eu1") == "unavailable", timeout=20)
        fallback = yield place("198.51.100.7", 2)
        self.assertTrue(set(fallback) <= {"us1", "us2"})


class LinkAuthTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_edge_with_wrong_secret_is_refused_and_says_so(self):
        d = Deployment(self)
        d.start_locator()
        d.start_edge("bad", CT_EDGE_SECRET="not-the-deployment-secret")
        d.edges["bad"].wait_for_log(r"the locator refused this edge: forbidden: wrong edge "
                                    r"secret", timeout=20)
        d.locator.wait_for_log(r"edge link from .* refused: forbidden", timeout=5)
        listing = yield d.client().edges(OPERATOR)
        self.assertEqual(listing["edges"], [])
