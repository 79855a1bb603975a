"""Credentials minted by the edge work against a real coturn with ``use-auth-secret``."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from urllib.parse import urlsplit

from twisted.internet import defer, reactor
from twisted.internet.protocol import DatagramProtocol, ProcessProtocol
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial import unittest

from ct.turn import stun
from ct.turn.tap import ice_server_config

from .support import EDGE_DEFAULTS, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
TURNSERVER = shutil.which("turnserver") or (
    "/usr/bin/turnserver" if os.path.exists("/usr/bin/turnserver") else None)


def free_port():
    """A port free for both UDP and TCP on loopback (coturn listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


class _Output(ProcessProtocol):
    def __init__(self):
        self.output = b""
        self.ended = defer.Deferred()

    def outReceived(self, data):
        self.output = (self.output + data)[-20000:]

    errReceived = outReceived

    def processEnded(self, reason):
        self.ended.callback(None)


class _Probe(DatagramProtocol):
    def __init__(self):
        self.replies = []

    def datagramReceived(self, data, addr):
        self.replies.append(data)


class CoturnCompatTests(unittest.TestCase):
    timeout = 90
    secret = "shared-with-coturn"

    @defer.inlineCallbacks
    def setUp(self):
        if TURNSERVER is None:
            raise unittest.SkipTest("coturn's turnserver is not installed "
                                    "(apt-get install coturn; scripts/system-deps.sh does it)")
        self.port = free_port()
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        low = 40000 + (self.port % 200) * 100
        args = [TURNSERVER, "-n", "--listening-ip=127.0.0.1", f"--listening-port={self.port}",
                "--relay-ip=127.0.0.1", f"--min-port={low}", f"--max-port={low + 99}",
                "--use-auth-secret", f"--static-auth-secret={self.secret}",
                "--realm=ct.test", "--no-tls", "--no-dtls", "--allow-loopback-peers",
                "--no-cli", "--log-file=stdout", "--simple-log", "--relay-threads=1",
                f"--pidfile={work}/turnserver.pid", f"--userdb={work}/turndb.sqlite"]
        self.output = _Output()
        self.process = reactor.spawnProcess(self.output, TURNSERVER, args, env={}, path=work)
        self.addCleanup(self._stop)
        probe = _Probe()
        sock = reactor.listenUDP(0, probe, interface="127.0.0.1")
        self.addCleanup(sock.stopListening)
        request = stun.encode_message(stun.BINDING, stun.REQUEST, b"coturn-probe")

        def answered():
            sock.write(request, ("127.0.0.1", self.port))  # lost while coturn starts: again
            return probe.replies
        yield wait_until(reactor, answered, timeout=10.0, step=0.2,
                         message=lambda: "coturn did not answer: "
                         + self.output.output.decode(errors="replace"))

    def _stop(self):
        if self.process.pid is not None:
            self.process.signalProcess("KILL")
        return self.output.ended

    def servers(self, secret):
        values = {**EDGE_DEFAULTS, "av_enabled": True,
                  "av_coturn_server": f"127.0.0.1:{self.port}", "av_coturn_secret": secret}
        return ice_server_config(values, None).servers_for("participant-1", reactor.seconds())

    @defer.inlineCallbacks
    def allocate(self, url, username, credential):
        parts = urlsplit(url)
        host, port = parts.path.rsplit(":", 1)
        transport = parts.query.split("=", 1)[1]
        out, err, code = yield getProcessOutputAndValue(
            sys.executable, [os.path.join(HERE, "aioice_client.py"), host, port, transport,
                             username, credential, "2"], env=dict(os.environ), reactor=reactor)
        self.assertEqual(code, 0, err)
        return json.loads(out.decode().strip().splitlines()[-1])

    @defer.inlineCallbacks
    def test_minted_credentials_allocate_on_coturn(self):
        stun_entry, turn_entry = self.servers(self.secret)
        self.assertEqual(stun_entry, {"urls": [f"stun:127.0.0.1:{self.port}"]})
        self.assertEqual(len(turn_entry["urls"]), 2)
        for url in turn_entry["urls"]:
            result = yield self.allocate(url, turn_entry["username"], turn_entry["credential"])
            self.assertTrue(result["ok"], (url, result))
            self.assertEqual(result["echoes"], 2, url)

    @defer.inlineCallbacks
    def test_wrong_secret_is_refused_by_coturn(self):
        _, turn_entry = self.servers("not-the-secret")
        result = yield self.allocate(turn_entry["urls"][0], turn_entry["username"],
                                     turn_entry["credential"])
        self.assertFalse(result["ok"])
        self.assertIn("401", result["error"])
