"""A/V use on the Usage page end to end (issue 15, item 5): a real edge with A/V on under a
real locator; Python clients send ``av-report`` messages on real session websockets; the
edge's metric snapshots carry the call counts through its outbox into the locator's
database, and the usage API, ``ctctl usage`` and the page show them. An edge older than
the counts (a raw ``/ws/edge`` link) still has its snapshots stored."""

from __future__ import annotations

import base64
import json
import time

from twisted.internet import defer, reactor
from twisted.trial import unittest

from tests.dashboard.test_multi_server import eventually, stat
from tests.dashboard.util import DashboardClient
from tests.deployment.test_ctctl import run_ctctl
from tests.deployment.util import OPERATOR, Deployment
from tests.edge.test_audio_video import free_port
from tests.edge.util import host_and_guests, sleep
from tests.locator.test_hardening_link import VALID_REGISTER, open_link
from tests.metrics.util import fetch

AUTH = {"Authorization": "Basic " + base64.b64encode(":".join(OPERATOR).encode()).decode()}


def av_env() -> dict[str, str]:
    port = free_port()
    return {"CT_AV_ENABLED": "true", "CT_TURN_ENABLED": "true", "CT_TURN_HOST": "127.0.0.1",
            "CT_TURN_LISTEN_UDP": f"127.0.0.1:{port}", "CT_TURN_LISTEN_TCP": f"127.0.0.1:{port}",
            "CT_TURN_LISTEN_TLS": "none", "CT_TURN_RELAY_ADDRESS": "127.0.0.1",
            "CT_TURN_RELAY_PORTS": "42000-42100", "CT_TURN_ALLOW_PEERS": "127.0.0.1/32"}


class AvUsageTests(unittest.TestCase):
    timeout = 180

    def setUp(self):
        self.d = Deployment(self)
        self.d.start_locator()
        self.d.start_edge("e1", **av_env())
        return self.d.wait_online(["e1"])

    @defer.inlineCallbacks
    def usage(self, days: int = 1):
        code, _, body = yield fetch(f"{self.d.locator_url}/api/v1/usage?days={days}",
                                    headers=AUTH)
        self.assertEqual(code, 200, body)
        return json.loads(body)

    @defer.inlineCallbacks
    def test_calls_reported_by_clients_reach_the_usage_api_ctctl_and_page(self):
        client = DashboardClient(self.d.locator_url)
        yield client.login(*OPERATOR)
        page = yield client.get("/dashboard/usage")
        self.assertIn('id="no-calls">No calls recorded in this period.<', page.text)

        @defer.inlineCallbacks
        def first_snapshot():  # None until the edge's first snapshot reached the database
            report = yield self.usage()
            return report["av"]["peakInCalls"] is not None

        yield eventually(first_snapshot, timeout=30)
        self.assertEqual((yield self.usage())["av"],
                         {"peakInCalls": 0, "peakCalls": 0, "relayedShare": None})

        url = self.d.edge_urls["e1"]
        # A call of three (each with one relayed and one direct connection) and, in another
        # session, a host alone in its call (in a call, but no call of two yet).
        trio = yield host_and_guests(self, url, ("bob", "carol"))
        solo = yield host_and_guests(self, url, (), host="dave")
        for c in trio:
            c.control({"type": "av-report", "inCall": True, "peers": 2, "relayed": 1,
                       "direct": 1})
        solo[0].control({"type": "av-report", "inCall": True, "peers": 0})

        @defer.inlineCallbacks
        def recorded():  # snapshots travel through the edge's outbox (every second)
            report = yield self.usage()
            return report["av"]["peakInCalls"] == 4 and report["av"]["peakCalls"] == 1

        yield eventually(recorded, timeout=30)
        report = yield self.usage()
        self.assertEqual(report["av"], {"peakInCalls": 4, "peakCalls": 1, "relayedShare": 0.5})
        self.assertEqual((report["days"][-1]["peakInCalls"], report["days"][-1]["peakCalls"]),
                         (4, 1))

        code, out, err = yield run_ctctl(
            ["usage", "--days", "7"],
            {"CT_LOCATOR": self.d.locator_url, "CT_DASHBOARD_USER": OPERATOR[0],
             "CT_DASHBOARD_PASSWORD": OPERATOR[1]})
        self.assertEqual(code, 0, err)
        self.assertEqual(json.loads(out)["av"],
                         {"peakInCalls": 4, "peakCalls": 1, "relayedShare": 0.5})

        page = yield client.get("/dashboard/usage?days=7")
        self.assertEqual((stat(page, "stat-av-peak-in-calls"), stat(page, "stat-av-peak-calls"),
                          stat(page, "stat-av-relayed-share")), ("4", "1", "50 %"))
        self.assertNotIn('id="no-calls"', page.text)

    @defer.inlineCallbacks
    def test_snapshots_of_an_edge_without_call_counts_are_stored(self):
        proto, factory = yield open_link(self.d.locator_port)
        self.addCleanup(lambda: proto.transport and proto.transport.abortConnection())
        proto.sendMessage(json.dumps({**VALID_REGISTER, "edge": "old-edge"}).encode(), False)
        deadline = time.monotonic() + 10
        while not any(m.get("type") == "registered" for m in factory.messages):
            self.assertLess(time.monotonic(), deadline, factory.messages)
            yield sleep(0.05)
        now = time.time()
        proto.sendMessage(json.dumps({"type": "records", "batch": 1, "audit": [], "metrics": [
            {"id": "old-m1", "time": now, "users_online": 50, "sessions": 7,
             "connections": 60, "lag_ms": 1.0, "sessions_hosted_total": 9,
             "downloads_total": 0}]}).encode(), False)
        deadline = time.monotonic() + 10
        while not any(m.get("type") == "stored" for m in factory.messages):
            self.assertLess(time.monotonic(), deadline, factory.messages)
            yield sleep(0.05)
        self.assertEqual(self.d.audit_rows(
            "SELECT users_online, sessions, av_participants, av_calls, av_relayed, av_direct "
            "FROM metric_snapshots WHERE snapshot_id = 'old-m1'"), [(50, 7, 0, 0, 0, 0)])
        report = yield self.usage()
        self.assertGreaterEqual(report["days"][-1]["peakUsers"], 50)
        self.assertEqual(report["av"]["relayedShare"], None)
