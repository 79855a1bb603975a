"""``twistd -n ctedge`` as a real process: starts, answers /health, stops; bad settings stop it."""

from __future__ import annotations

import json
import urllib.request

from twisted.trial import unittest

from tests.procutil import Daemon, run_to_exit


class TwistdEdgeTests(unittest.TestCase):
    def test_starts_answers_health_and_stops_cleanly(self):
        edge = Daemon("ctedge", {"CT_HTTP_LISTEN": "tcp:0:interface=127.0.0.1",
                                 "CT_PROBE_INTERVAL": "0.5"})
        self.addCleanup(edge.stop)
        port = edge.port("HTTP")
        self.assertRegex(edge.log(), r"services available on port \d+ \(HTTP\)")
        self.assertIn("CT_HTTP_LISTEN='tcp:0:interface=127.0.0.1' (CT_HTTP_LISTEN)", edge.log())
        edge.wait_for_log(r"relay self-probe|usage:", timeout=10)
        for path in ("/health", "/ct-health/"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                body = json.load(r)
                self.assertEqual(r.status, 200)
            self.assertEqual((body["status"], body["role"]), ("ok", "edge"))
        # twistd re-raises SIGTERM after a clean shutdown, so the status is -15 (systemd: success).
        self.assertIn(edge.stop(), (0, -15))
        self.assertIn("Server Shut Down.", edge.log())

    def test_https_when_certificate_and_key_are_given(self):
        import ssl
        import tempfile
        from pathlib import Path

        from tests.tlsutil import write_self_signed

        tmp = Path(tempfile.mkdtemp())
        cert, key = write_self_signed(tmp, "localhost")
        edge = Daemon("ctedge", {"CT_HTTP_LISTEN": "none", "CT_PROBE_INTERVAL": "0",
                                 "CT_HTTPS_LISTEN": "ssl:0:interface=127.0.0.1",
                                 "CT_TLS_CERT": str(cert), "CT_TLS_KEY": str(key)})
        self.addCleanup(edge.stop)
        port = edge.port("SSL")
        context = ssl.create_default_context(cafile=str(cert))
        with urllib.request.urlopen(f"https://localhost:{port}/health", timeout=10,
                                    context=context) as r:
            self.assertEqual(json.load(r)["status"], "ok")

    def test_invalid_setting_stops_startup_with_one_clear_message(self):
        code, output = run_to_exit("ctedge", {"CT_MAX_PARTICIPANTS": "lots"})
        self.assertNotEqual(code, 0)
        self.assertIn("invalid setting CT_MAX_PARTICIPANTS (--max-participants) = 'lots' "
                      "from CT_MAX_PARTICIPANTS: expected a whole number", output)
        self.assertNotIn("Traceback", output)

    def test_port_in_use_stops_startup_naming_the_setting(self):
        import socket

        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        self.addCleanup(busy.close)
        port = busy.getsockname()[1]
        code, output = run_to_exit("ctedge", {"CT_HTTP_LISTEN": f"tcp:{port}:interface=127.0.0.1",
                                              "CT_PROBE_INTERVAL": "0"})
        self.assertNotEqual(code, 0)
        self.assertIn(f"cannot listen on tcp:{port}:interface=127.0.0.1 (HTTP, setting "
                      "CT_HTTP_LISTEN)", output)

    def test_time_zone_of_log_timestamps(self):
        edge = Daemon("ctedge", {"CT_HTTP_LISTEN": "tcp:0:interface=127.0.0.1",
                                 "CT_PROBE_INTERVAL": "0", "CT_TIME_ZONE": "Asia/Tokyo"})
        self.addCleanup(edge.stop)
        edge.port("HTTP")
        line = [l for l in edge.log().splitlines() if "services available on port" in l][0]
        self.assertRegex(line, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0900 ")
