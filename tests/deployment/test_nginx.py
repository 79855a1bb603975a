"""A real nginx (Debian package) with ``docs/examples/nginx.conf`` in front of two edges:
websockets pass, and every participant of a session lands on the session's edge (hash of
``ctstickiness``: header first, then cookie)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from twisted.internet import defer, reactor
from twisted.trial import unittest
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from ct.client.session import SessionClient
from tests.deployment.util import free_port, start_lone_edges, stop_process
from tests.edge.util import close_all

EXAMPLE = Path(__file__).resolve().parent.parent.parent / "docs" / "examples" / "nginx.conf"
SESSIONS = 16  # all on one edge by chance: 2 in 2**16


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


class NginxStickinessTests(unittest.TestCase):
    timeout = 180

    def setUp(self):
        binary = nginx_binary()
        if binary is None:
            raise unittest.SkipTest("nginx is not installed (make test installs it: "
                                    "scripts/system-deps.sh)")
        self.edges = start_lone_edges(self, ("edge1", "edge2"))
        # The documented configuration, with this test's ports, inside a minimal main
        # configuration that keeps every file nginx writes in a temporary directory.
        site = EXAMPLE.read_text()
        self.port = free_port()
        site = site.replace("listen 127.0.0.1:8443;", f"listen 127.0.0.1:{self.port};")
        site = site.replace("127.0.0.1:1081", f"127.0.0.1:{self.edges['edge1']}")
        site = site.replace("127.0.0.1:1082", f"127.0.0.1:{self.edges['edge2']}")
        self.assertIn(f"127.0.0.1:{self.port}", site)
        work = tempfile.mkdtemp(prefix="ct-nginx-")
        os.chmod(work, 0o755)  # worker processes (nobody when run as root) read from here
        self.addCleanup(shutil.rmtree, work, True)
        Path(work, "ct.conf").write_text(site)
        temp_paths = "\n".join(f"    {kind}_temp_path {work}/{kind};" for kind in (
            "client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        Path(work, "nginx.conf").write_text(
            f"daemon off;\npid {work}/nginx.pid;\nerror_log {work}/error.log info;\n"
            "worker_processes 1;\nevents { worker_connections 256; }\n"
            f"http {{\n    access_log off;\n{temp_paths}\n    include {work}/ct.conf;\n}}\n")
        args = [binary, "-p", work + "/", "-c", f"{work}/nginx.conf"]
        check = subprocess.run(args + ["-t"], capture_output=True, text=True, timeout=30)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.work = work
        self.proxy = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.addCleanup(stop_process, self.proxy)
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proxy.poll() is not None:
                    raise AssertionError("nginx did not listen: "
                                         + Path(work, "error.log").read_text())
                time.sleep(0.1)

    @defer.inlineCallbacks
    def health_via_proxy(self, header: str | None = None, cookie: str | None = None):
        """Which edge answered ``GET /health`` through nginx."""
        headers = Headers()
        if header is not None:
            headers.addRawHeader(b"ctstickiness", header.encode())
        if cookie is not None:
            headers.addRawHeader(b"cookie", f"ctstickiness={cookie}".encode())
        d = Agent(reactor).request(b"GET", f"http://127.0.0.1:{self.port}/health".encode(),
                                   headers)
        d.addTimeout(10, reactor)
        response = yield d
        body = yield readBody(response)
        self.assertEqual(response.code, 200, body)
        return json.loads(body)["edge"]

    @defer.inlineCallbacks
    def test_participants_follow_their_session_and_sessions_spread(self):
        via = f"http://127.0.0.1:{self.port}"
        clients = []
        self.addCleanup(lambda: close_all(clients))
        by_key = {}
        for i in range(SESSIONS):
            host = SessionClient(reactor, via, f"host{i}")
            yield host.host()  # a websocket upgrade through nginx
            clients.append(host)
            self.assertIn("ctstickiness=", str(host.link))
            guest = SessionClient.from_link(reactor, str(host.link), f"guest{i}")
            reply = yield guest.join_link()  # a join on the other edge fails: not-found
            clients.append(guest)
            self.assertEqual(reply["session"], host.session)
            by_key[host.stickiness] = host.session
        # Each edge holds some of the sessions (consistent hashing spread them).
        counts = {}
        for name, port in self.edges.items():
            response = yield Agent(reactor).request(
                b"GET", f"http://127.0.0.1:{port}/health".encode())
            counts[name] = json.loads((yield readBody(response)))["sessions"]
        self.assertEqual(sum(counts.values()), SESSIONS, counts)
        self.assertTrue(all(counts.values()), counts)
        # Plain HTTP follows the same rule: the header, else the cookie, picks the edge.
        keys = list(by_key)
        edges = {}
        for key in keys:
            edges[key] = yield self.health_via_proxy(header=key)
            self.assertEqual((yield self.health_via_proxy(cookie=key)), edges[key])
        self.assertEqual(set(edges.values()), set(self.edges))
        other = next(k for k in keys if edges[k] != edges[keys[0]])
        # The header wins over a cookie naming another edge.
        self.assertEqual((yield self.health_via_proxy(header=keys[0], cookie=other)),
                         edges[keys[0]])
