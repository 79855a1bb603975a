"""Drain on stop with several locators on one PostgreSQL schema (issue 13): an edge linked
to one locator says it is stopping; the other locator learns it through the shared edge
directory within the documented bound and places nothing there either."""

from __future__ import annotations

import signal
import time

from twisted.internet import defer, reactor
from twisted.trial import unittest

from ct.client.session import SessionClient
from tests.deployment.test_incidents import wait_process_exit
from tests.deployment.test_locator_ha import SHARED_BOUND, LocatorCluster
from tests.edge.util import close_all, sleep

DRAIN = 6.0
TOLD_BOUND = 2.0  # SIGTERM to "draining" on the locator holding the edge's link


class DrainSeenByEveryLocatorTests(unittest.TestCase):
    timeout = 240

    @defer.inlineCallbacks
    def test_a_draining_edge_gets_nothing_from_the_locator_it_is_not_linked_to(self):
        c = LocatorCluster(self)
        c.start_locator("l1")
        c.start_locator("l2")
        c.start_edge("a", c.url("l1"), CT_DRAIN_TIMEOUT=DRAIN)  # linked to l1 only
        c.start_edge("b", c.url("l2"))
        names = ["l1", "l2"]
        yield c.wait_states(names, lambda s: s.get("a") == s.get("b") == "online", timeout=60)
        clients = []
        self.addCleanup(lambda: close_all(clients))
        host = SessionClient(reactor, c.edge_urls["a"], "alice", auto_resume=False)
        yield host.host()
        clients.append(host)
        # l2 places on a before (the check below could fail).
        before = set()
        for _ in range(6):
            placed = yield c.client("l2").start_session()
            before.add(placed["edge"])
        self.assertIn("a", before)

        daemon = c.edges["a"]
        daemon.proc.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        took = yield c.wait_states(names, lambda s: s.get("a") == "draining",
                                   timeout=TOLD_BOUND + SHARED_BOUND)
        print(f"\ndrain seen by both locators {took:.2f} s after SIGTERM")
        placed_edges = {}
        rounds = 0
        while time.monotonic() - stopped_at < DRAIN - 1.0:
            for name in names:
                placed = yield c.client(name).start_session()
                placed_edges[placed["edge"]] = placed_edges.get(placed["edge"], 0) + 1
            found = yield c.client("l2").find_session(host.session)
            self.assertEqual(found["edge"], "a")  # joins still go there, from either locator
            team = yield c.client("l2").team_edge(f"team-{rounds}")
            self.assertEqual(team["edge"], "b")
            rounds += 1
            yield sleep(0.3)
        self.assertGreater(rounds, 2)
        self.assertEqual(set(placed_edges), {"b"}, placed_edges)
        outcome = yield host.ended
        self.assertIn("edge-shutdown", outcome.message)
        yield wait_process_exit(daemon, 10)
        # Gone: no longer draining anywhere (link-lost, then unavailable).
        yield c.wait_states(names, lambda s: s.get("a") in ("link-lost", "unavailable"),
                            timeout=SHARED_BOUND + 5)
        rows = c.query("SELECT COUNT(*) FROM audit_entries WHERE kind = 'edge_draining' "
                       "AND edge_id = 'a'")
        self.assertEqual(rows[0][0], 1)
        self.assertIn("edge a closed its link as it stopped after draining",
                      c.locators["l1"].log())
