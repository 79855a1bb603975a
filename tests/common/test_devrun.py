"""``make run``'s launcher starts a locator, an edge and the TURN relay, prints the dashboard
URL with working credentials, and stops them all."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from twisted.internet import defer
from twisted.trial import unittest

from tests.dashboard.util import DashboardClient
from tests.procutil import ROOT


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DevRunTests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def test_local_deployment_comes_up_logs_in_and_stops(self):
        work = tempfile.mkdtemp(prefix="ct-devrun-")
        locator, edge, turn = free_port(), free_port(), free_port(socket.SOCK_DGRAM)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CT_")}
        env["PYTHONPATH"] = str(ROOT)
        proc = subprocess.Popen(
            [sys.executable, "-m", "ct.devrun", "--locator-port", str(locator),
             "--edge-port", str(edge), "--turn-port", str(turn)],
            cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C stops everything" in line:
                break
        output = "".join(lines)
        self.assertIn("local deployment is up", output)
        for port, role in ((locator, "locator"), (edge, "edge")):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
                self.assertEqual(json.load(r)["role"], role)
        with urllib.request.urlopen(f"http://127.0.0.1:{locator}/health", timeout=10) as r:
            self.assertEqual(json.load(r)["edges_online"], 1)
        self.assertIn(f"udp/tcp 127.0.0.1:{turn}", output)
        dashboard = f"http://127.0.0.1:{locator}/dashboard"
        printed = re.search(rf"dashboard  {re.escape(dashboard)}   user (\S+), password (\S+)\n",
                            output)
        self.assertIsNotNone(printed, output)
        user, password = printed.groups()
        with urllib.request.urlopen(dashboard, timeout=10) as r:  # to its log-in page
            self.assertEqual(r.status, 200)
            self.assertIn(b"password", r.read().lower())

        # Exactly the printed credentials log in (and a wrong password does not).
        stranger = DashboardClient(f"http://127.0.0.1:{locator}")
        refused = yield stranger.login(user, password + "x", expect=None)
        self.assertNotEqual(refused.code, 303)
        self.assertNotIn("ct_dashboard", stranger.cookies)
        client = DashboardClient(f"http://127.0.0.1:{locator}")
        answer = yield client.login(user, password)
        self.assertEqual(answer.location, "/dashboard")
        page = yield client.get("/dashboard")
        self.assertEqual(page.code, 200, page.text[:500])
        self.assertIn(f'id="who">{user}</span>', page.text)
        self.assertIn('action="/dashboard/logout"', page.text)
        self.assertTrue(os.path.exists(os.path.join(work, ".run", "dev.env")))
        self.assertEqual(os.stat(os.path.join(work, ".run", "dev.env")).st_mode & 0o777, 0o600)
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=60)[0]
        self.assertEqual(proc.returncode, 0, rest[-2000:])
        self.assertIn("[edge]", rest)
