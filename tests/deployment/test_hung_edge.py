"""A real locator and real edges: hung (SIGSTOP) edges, capped edges, placement floods.

The bounds asserted here are the ones documented in docs/locator.md ("States and
timings"), plus a little slack for a loaded test machine where noted.
"""

from __future__ import annotations

import collections
import json
import signal
import time

from twisted.internet import defer, reactor
from twisted.trial import unittest
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from ct.client.locator import LocatorRefused
from ct.client.session import SessionClient
from tests.deployment.util import OPERATOR, Deployment
from tests.edge.util import close_all, sleep

# docs/locator.md: a hung edge is link-lost within CT_EDGE_LINK_TIMEOUT (6 s) and
# unavailable within 10 s. Polling the operator API every 0.2 s adds up to that much.
LINK_LOST_BOUND = 6.0
UNAVAILABLE_BOUND = 10.0
SLACK = 1.0


@defer.inlineCallbacks
def post_session(url: str, forwarded_for: str | None = None):
    """``POST /api/v1/sessions``; fires with (status, headers, parsed body)."""
    headers = Headers({b"x-forwarded-for": [forwarded_for.encode()]} if forwarded_for else {})
    d = Agent(reactor).request(b"POST", f"{url}/api/v1/sessions".encode(), headers)
    d.addTimeout(10, reactor)
    response = yield d
    body = yield readBody(response)
    return response.code, response.headers, json.loads(body)


class CappedEdgesTests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def test_finding_4_unhosted_placements_do_not_fill_capped_edges_and_are_rate_limited(self):
        d = Deployment(self, locator_env={"CT_PLACEMENT_BURST": "12",
                                          "CT_PLACEMENT_RATE": "0.5",
                                          "CT_TRUSTED_PROXIES": "127.0.0.1/32",
                                          "CT_PROMETHEUS_ENABLED": "true"})
        d.start_locator()
        d.start_edge("e1", CT_MAXCONNECTIONS=5)
        d.start_edge("e2", CT_MAXCONNECTIONS=5)
        yield d.wait_online(["e1", "e2"])
        placed = []
        for _ in range(12):  # more than both caps together, none of them hosted
            status, _, body = yield post_session(d.locator_url)
            self.assertEqual(status, 200, body)
            placed.append(body["edge"])
        # Pending placements still spread a burst over the edges...
        self.assertEqual(collections.Counter(placed), {"e1": 6, "e2": 6})
        # ... and the 13th from the same address is refused: 429 with Retry-After.
        status, headers, body = yield post_session(d.locator_url)
        self.assertEqual((status, body["error"]), (429, "rate-limited"))
        self.assertEqual(headers.getRawHeaders(b"retry-after"), [b"2"])
        # Another client (behind the trusted proxy) has its own allowance.
        status, _, body = yield post_session(d.locator_url, forwarded_for="198.51.100.7")
        self.assertEqual(status, 200, body)
        refused = 1
        for _ in range(20):
            status, _, _ = yield post_session(d.locator_url)
            refused += status == 429
        self.assertGreaterEqual(refused, 15)
        # Operators see the refusals on /metrics.
        response = yield Agent(reactor).request(b"GET", f"{d.locator_url}/metrics".encode())
        metrics = (yield readBody(response)).decode()
        self.assertIn(f"codetogether_locator_placements_rate_limited_total {refused:.1f}",
                      metrics)
        log = d.locator.wait_for_log(r"new sessions refused \(429\)", timeout=5).string
        self.assertEqual(log.count("new sessions refused (429)"), 1)  # one warning line
        self.assertNotIn("Traceback", log)


class HungEdgeTests(unittest.TestCase):
    timeout = 180

    def setUp(self):
        # Default liveness settings of the locator (the deployment helper shortens them).
        self.d = Deployment(self, locator_env={"CT_PLACEMENT_RATE": "0"})
        del self.d.locator_env["CT_EDGE_DEAD_AFTER"]
        self.d.start_locator()
        self.d.start_edge("e1")
        self.d.start_edge("e2")
        self.clients = []
        self.addCleanup(lambda: close_all(self.clients))
        return self.d.wait_online(["e1", "e2"])

    def hang(self, name: str) -> float:
        daemon = self.d.edges[name]
        daemon.proc.send_signal(signal.SIGSTOP)
        self.addCleanup(daemon.stop)
        self.addCleanup(daemon.proc.send_signal, signal.SIGCONT)  # runs first
        return time.monotonic()

    @defer.inlineCallbacks
    def test_finding_25_28_hung_edge_timeline_and_no_new_sessions_once_link_lost(self):
        host = SessionClient(reactor, self.d.edge_urls["e1"], "alice", auto_resume=False)
        yield host.host()
        self.clients.append(host)
        found = yield self.d.client().find_session(host.session)
        self.assertEqual(found["edge"], "e1")

        hung_at = self.hang("e1")
        client = self.d.client()
        first_seen: dict[str, float] = {}
        placements = []
        joins = []
        while "unavailable" not in first_seen:
            elapsed = time.monotonic() - hung_at
            self.assertLess(elapsed, UNAVAILABLE_BOUND + 10, f"states seen: {first_seen}")
            listing = yield client.edges(OPERATOR)
            state = {e["edge"]: e["state"] for e in listing["edges"]}["e1"]
            first_seen.setdefault(state, time.monotonic() - hung_at)
            answer = yield client.start_session()
            placements.append((time.monotonic() - hung_at, state, answer["edge"]))
            if state == "link-lost":
                try:
                    joined = yield client.find_session(host.session, retries=0)
                    joins.append(joined["edge"])
                except LocatorRefused as e:  # it turned unavailable since the listing
                    joins.append(e.status)
            yield sleep(0.2)

        # docs/locator.md bounds (finding 25: under 10 s; finding 28: bounded unavailable).
        self.assertIn("link-lost", first_seen)
        self.assertLess(first_seen["link-lost"], LINK_LOST_BOUND + SLACK)
        self.assertLess(first_seen["unavailable"], UNAVAILABLE_BOUND + SLACK)
        # No new session goes to the hung edge once it is link-lost, nor after the bound.
        late = [p for p in placements if p[1] != "online" or p[0] > LINK_LOST_BOUND + SLACK]
        self.assertTrue(late)
        self.assertEqual({edge for _, _, edge in late}, {"e2"}, placements)
        # Joins of its sessions still go there while it is link-lost (the session lives
        # there), and are refused once it is unavailable.
        self.assertIn("e1", joins)
        self.assertEqual(set(joins[:-1]), {"e1"}, joins)
        self.assertIn(joins[-1], ("e1", 410))
        yield sleep(1.5)  # the state check that ends its sessions runs every second
        with self.assertRaises(LocatorRefused) as caught:
            yield client.find_session(host.session, retries=0)
        self.assertIn(caught.exception.status, (404, 410))
