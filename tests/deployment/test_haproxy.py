"""A real HAProxy (Debian package) in front of two edges, routing on ``ctstickiness``."""

from __future__ import annotations

import collections
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from twisted.internet import defer, reactor
from twisted.trial import unittest

from ct.client.session import SessionClient
from tests.deployment.util import free_port, start_lone_edges, stop_process
from tests.edge.util import close_all

EXAMPLE = Path(__file__).resolve().parent.parent.parent / "docs" / "examples" / "haproxy.cfg"


class HAProxyStickinessTests(unittest.TestCase):
    timeout = 120

    def setUp(self):
        if shutil.which("haproxy") is None:
            raise unittest.SkipTest("haproxy is not installed (make test installs it: "
                                    "scripts/system-deps.sh)")
        self.edges = start_lone_edges(self, ("edge1", "edge2"))
        # The documented configuration, with this test's ports.
        config = EXAMPLE.read_text()
        self.port = free_port()
        config = config.replace("bind 127.0.0.1:8443", f"bind 127.0.0.1:{self.port}")
        config = config.replace("127.0.0.1:1081", f"127.0.0.1:{self.edges['edge1']}")
        config = config.replace("127.0.0.1:1082", f"127.0.0.1:{self.edges['edge2']}")
        config = config.replace("log stdout format raw local0", "")
        work = tempfile.mkdtemp(prefix="ct-haproxy-")
        path = os.path.join(work, "haproxy.cfg")
        with open(path, "w") as f:
            f.write(config)
        check = subprocess.run(["haproxy", "-c", "-f", path], capture_output=True, text=True)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.proxy = subprocess.Popen(["haproxy", "-db", "-f", path], stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT)
        self.addCleanup(stop_process, self.proxy)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)

    @defer.inlineCallbacks
    def test_all_participants_of_a_session_land_on_its_edge(self):
        via = f"http://127.0.0.1:{self.port}"
        clients = []
        self.addCleanup(lambda: close_all(clients))
        hosts = collections.Counter()
        for i in range(6):
            host = SessionClient(reactor, via, f"host{i}")
            yield host.host()
            clients.append(host)
            self.assertIn("ctstickiness=", str(host.link))
            for g in range(3):
                guest = SessionClient.from_link(reactor, str(host.link), f"guest{i}.{g}")
                reply = yield guest.join_link()  # a join on the wrong edge fails: not-found
                clients.append(guest)
                self.assertEqual(reply["session"], host.session)
            # Which edge holds it? Join directly on each edge: only one knows the session.
            edge = None
            for name, port in self.edges.items():
                probe = SessionClient.from_link(
                    reactor, str(host.link).replace(via, f"http://127.0.0.1:{port}"), "probe")
                try:
                    yield probe.join_link()
                except Exception:
                    continue
                clients.append(probe)
                edge = name
            hosts[edge] += 1
        # Leastconn spread new sessions over both edges; each session's guests followed it.
        self.assertEqual(sum(hosts.values()), 6)
        self.assertEqual(set(hosts), {"edge1", "edge2"})
