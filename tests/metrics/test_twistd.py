"""``twistd -n ctedge`` as a real process with /metrics on and StatsD pointing nowhere."""

from __future__ import annotations

import json
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial import unittest

from tests.procutil import Daemon


def uptime(port: int) -> float:
    """The edge's uptime by its own clock, from ``/health``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
        return json.load(r)["uptime"]


class TwistdMetricsTests(unittest.TestCase):
    timeout = 60

    def test_metrics_served_while_statsd_host_does_not_resolve(self):
        edge = Daemon("ctedge", {"CT_HTTP_LISTEN": "tcp:0:interface=127.0.0.1",
                                 "CT_PROBE_INTERVAL": "0", "CT_PROMETHEUS_ENABLED": "true",
                                 "CT_METRICS_STATSD_HOST": "statsd.invalid",
                                 "CT_METRICS_INTERVAL": "1"})
        self.addCleanup(edge.stop)
        port = edge.port("HTTP")
        edge.wait_for_log(r"StatsD push to statsd\.invalid:8125 \(UDP\) is failing: cannot "
                          r"resolve", timeout=15)
        # Several more push intervals by the edge's own clock: each ends in another failed
        # lookup, counted and not logged. (Nothing outside the process shows the attempts;
        # its /health uptime shows how far its reactor got.)
        warned_at = uptime(port)
        deadline = time.monotonic() + 20
        while uptime(port) < warned_at + 3.5:
            self.assertLess(time.monotonic(), deadline, "the edge's clock did not advance")
            time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            self.assertEqual(r.status, 200)
            names = {f.name for f in text_string_to_metric_families(r.read().decode())}
        self.assertIn("codetogether_users_online", names)
        self.assertIn("codetogether_client_downloads", names)
        self.assertEqual(edge.log().count("StatsD push to statsd.invalid"), 1, edge.log())
