"""``/metrics`` on a real edge: scripted sessions with the reference client, then a scrape."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer
from twisted.trial import unittest

from tests.edge.util import host_and_guests, start_edge, wait_for
from tests.metrics.util import fetch


def values(text: str) -> dict:
    """``{(sample name, sorted labels): value}`` from an exposition text."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


class PrometheusEndpointTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_metrics_is_404_when_disabled(self):
        _, url = start_edge(self)
        code, _, _ = yield fetch(url + "/metrics")
        self.assertEqual(code, 404)

    @defer.inlineCallbacks
    def test_three_sessions_seven_connections_show_in_metrics(self):
        service, url = start_edge(self, CT_PROMETHEUS_ENABLED="true")
        frames = []
        guests_per_session = [2, 1, 1]  # 3 hosts + 4 guests = 7 session connections
        hosts = []
        for n, guests in enumerate(guests_per_session):
            names = [f"guest{n}-{g}" for g in range(guests)]
            clients = yield host_and_guests(self, url, names, host=f"host{n}", title=f"s{n}",
                                            frames=dict.fromkeys(names, frames.append))
            hosts.append(clients[0])
        for i in range(5):
            hosts[0].send(b"frame-%d" % i)  # 5 frames to 2 guests: 10 deliveries
        yield wait_for(lambda: len(frames) == 10)

        code, headers, body = yield fetch(url + "/metrics")
        self.assertEqual(code, 200)
        self.assertTrue(headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain"))
        got = values(body.decode())
        expect = {
            "codetogether_sessions_active": 3,
            "codetogether_session_connections": 7,
            "codetogether_session_participants": 7,
            "codetogether_users_online": 7,
            "codetogether_users_in_sessions": 7,
            "codetogether_sessions_hosted_total": 3,
            "codetogether_relay_frames_received_total": 5,
            "codetogether_relay_frames_delivered_total": 10,
            "codetogether_session_resumes_total": 0,
        }
        self.assertEqual({k: got[(k, ())] for k in expect}, expect)
        lag = got[("codetogether_server_lag_seconds", ())]
        self.assertTrue(0 <= lag < 5, lag)
        self.assertGreater(got[("codetogether_relay_received_bytes_total", ())], 0)
        edge = service.edge
        self.assertEqual(got[("codetogether_edge_info",
                              (("edge", edge.edge_id), ("region", "default"),
                               ("version", edge.snapshot()["version"])))], 1)
        for kind in ("eclipse", "intellij", "vscode"):
            self.assertEqual(got[("codetogether_client_downloads_total",
                                  (("client", kind),))], 0)

        # the numbers are live: one session ends, the next scrape shows it
        yield hosts[2].leave()
        yield wait_for(lambda: len(edge.relay.sessions) == 2)
        yield wait_for(lambda: edge.relay.connected == 5)
        _, _, body = yield fetch(url + "/metrics")
        got = values(body.decode())
        self.assertEqual(got[("codetogether_sessions_active", ())], 2)
        self.assertEqual(got[("codetogether_session_connections", ())], 5)
        self.assertEqual(got[("codetogether_sessions_hosted_total", ())], 3)
