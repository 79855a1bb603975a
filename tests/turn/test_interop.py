"""Issue 16, interop: the clients that found each problem, against the relay on real sockets.

coturn's ``turnutils_uclient`` (UDP, TCP, TLS with ALPN), the openssl CLI with ALPN, a TLS
reader of single records, and a raw STUN client against a ``ctturn`` process (foreign REALM).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import sys

from twisted.internet import defer, reactor, threads
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial import unittest

from ct.turn import auth, stun, tap

from .support import error_code, listen_on_loopback, make_server, wait_until
from .test_tap import ROOT, _Collect, free_port, self_signed

UCLIENT = shutil.which("turnutils_uclient") or (
    "/usr/bin/turnutils_uclient" if os.path.exists("/usr/bin/turnutils_uclient") else None)
OPENSSL = shutil.which("openssl")
SECRET = "s3cret"


class RelayOnLoopback(unittest.TestCase):
    """The relay on 127.0.0.1: UDP, TCP and TLS listeners, REST API secret ``s3cret``."""

    timeout = 120
    fast_path = True  # the compiled UDP data path when built; test_fastpath.py runs False

    def setUp(self):
        directory = self.mktemp()
        os.makedirs(directory)
        cert, key = self_signed(directory)
        self.server = make_server(reactor, secret=SECRET, fast_path=self.fast_path)
        self.server.start()
        self.addCleanup(self.server.stop)
        self.ports = listen_on_loopback(self, self.server, reactor, tap._tls_context(cert, key))

    @defer.inlineCallbacks
    def run_tool(self, tool, args):
        """Run ``tool`` with no input (bounded by coreutils ``timeout``); its exit code and
        output."""
        if tool is None:
            raise unittest.SkipTest("needs Debian's coturn and openssl packages")
        out, err, code = yield getProcessOutputAndValue(
            "/bin/sh", ["-c", 'exec timeout 60 "$0" "$@" </dev/null', tool] + args,
            env=dict(os.environ), reactor=reactor)
        return code, (out + err).decode(errors="replace")


class TlsAlpnTests(RelayOnLoopback):
    @defer.inlineCallbacks
    def handshake(self, *alpn):
        code, output = yield self.run_tool(OPENSSL, [
            "s_client", "-connect", f"127.0.0.1:{self.ports['tls']}", *alpn])
        self.assertNotIn("alert", output)
        self.assertRegex(output, r"Cipher is TLS_\w+")
        return output

    @defer.inlineCallbacks
    def test_issue16_tls_alpn_stun_turn_openssl(self):
        output = yield self.handshake("-alpn", "stun.turn")
        self.assertIn("ALPN protocol: stun.turn", output)

    @defer.inlineCallbacks
    def test_issue16_tls_unknown_alpn_ignored_openssl(self):
        output = yield self.handshake("-alpn", "h2")
        self.assertIn("No ALPN negotiated", output)

    @defer.inlineCallbacks
    def test_issue16_tls_without_alpn_openssl(self):
        yield self.handshake()


class TlsRecordTests(RelayOnLoopback):
    @defer.inlineCallbacks
    def test_issue16_tls_one_record_per_message(self):
        """Two Binding requests in one TLS record are answered in one reactor turn; the
        answers still arrive as two records (a TLS read returns at most one record: what
        uclient counts as one message). Twisted's default TLS transport joined them."""
        requests = [stun.encode_message(stun.BINDING, stun.REQUEST, bytes([n]) * 12)
                    for n in (1, 2)]

        def two_reads():
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            with socket.create_connection(("127.0.0.1", self.ports["tls"]), timeout=10) as raw:
                with context.wrap_socket(raw) as tls:
                    tls.sendall(b"".join(requests))
                    return [tls.recv(65536), tls.recv(65536)]

        records = yield threads.deferToThread(two_reads)
        for n, record in zip((1, 2), records):
            answer = stun.parse_message(record)  # raises unless exactly one message
            self.assertEqual((answer.method, answer.cls, answer.transaction_id),
                             (stun.BINDING, stun.SUCCESS, bytes([n]) * 12))


class UclientTests(RelayOnLoopback):
    """coturn's client, pairs of allocations relaying to each other (``-y``), no RTCP
    allocations (``-c``: they ask for reservations, answered 508).

    Strict: every message sent comes back, and no error answer or complaint. 4 clients x
    1000 messages 2 ms apart: a loss of 1 in 4000 (the TLS loss of issue 16) shows. uclient
    starts each client 1 to 6 s after connecting (at random), so a run takes about 8 s."""

    clients, messages = 4, 1000
    # uclient's complaints: STUN error answers, bad messages, integrity, lost connections.
    # ("tls_connect: cannot connect ... protocol version" is not one: it offers TLS 1.0
    # and 1.1 among others at random, which the relay refuses, and retries.)
    COMPLAINTS = (r"error \d{3}|ERROR|[Ww]rong|Unexpected error|"
                  r"cannot connect.*internal error|not completed")

    @defer.inlineCallbacks
    def uclient(self, *flags, port):
        code, output = yield self.run_tool(UCLIENT, [
            *flags, "-y", "-c", "-m", str(self.clients), "-n", str(self.messages), "-z", "2",
            "-W", SECRET, "-u", "issue16", "-p", str(port), "127.0.0.1"])
        self.assertEqual(code, 0, output)
        self.assertNotRegex(output, self.COMPLAINTS)
        totals = re.findall(r"tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\n", output)
        expected = str(self.clients * self.messages)
        self.assertEqual(totals[-1:], [(expected, expected)], output)
        self.assertRegex(output, r"Total lost packets 0 \(0\.0+%\), total send dropped 0 ")
        self.assertEqual(self.server.stats.dropped_packets, 0)

    def test_issue16_uclient_channels_udp(self):
        return self.uclient(port=self.ports["udp"])

    def test_issue16_uclient_channels_tcp(self):
        return self.uclient("-t", port=self.ports["tcp"])

    def test_issue16_uclient_channels_tls_with_alpn(self):
        return self.uclient("-t", "-S", port=self.ports["tls"])

    def test_issue16_uclient_send_indications_udp(self):
        return self.uclient("-s", port=self.ports["udp"])

    def test_issue16_uclient_send_indications_tcp(self):
        return self.uclient("-t", "-s", port=self.ports["tcp"])

    def test_issue16_uclient_send_indications_tls_with_alpn(self):
        return self.uclient("-t", "-S", "-s", port=self.ports["tls"])


def _foreign_realm_exchange(port: int, username: str, password: str) -> list:
    """A raw STUN client on a real UDP socket: an unsigned Allocate (asked again while the
    relay starts, 20 s at most), then the same Allocate signed with the key of the
    relay's realm but naming another REALM, then named right. The three answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        transport = [(stun.REQUESTED_TRANSPORT, stun.encode_requested_transport(17))]

        def ask(attrs, key=None, tries=4):
            tid = os.urandom(12)
            data = stun.encode_message(stun.ALLOCATE, stun.REQUEST, tid, attrs, key=key)
            for _ in range(tries):
                sock.sendto(data, ("127.0.0.1", port))
                try:
                    while True:
                        answer = stun.parse_message(sock.recv(2048))
                        if answer.transaction_id == tid:
                            return answer
                except socket.timeout:
                    continue
            raise AssertionError(f"no answer from ctturn on udp {port}")

        challenge = ask(transport, tries=40)
        realm, nonce = challenge.get(stun.REALM), challenge.get(stun.NONCE)
        key = stun.long_term_key(username, realm.decode(), password)
        signed = [*transport, (stun.USERNAME, username.encode())]
        foreign = ask([*signed, (stun.REALM, b"other.realm"), (stun.NONCE, nonce)], key)
        right = ask([*signed, (stun.REALM, realm), (stun.NONCE, nonce)], key)
        return [challenge, foreign, right]


class ForeignRealmOverUdp(unittest.TestCase):
    """A ``ctturn`` process (twistd) and a raw STUN client over UDP."""

    timeout = 60

    @defer.inlineCallbacks
    def test_issue16_foreign_realm_refused_by_ctturn_over_udp(self):
        udp = free_port()
        env = dict(os.environ, PYTHONPATH=ROOT, CT_TURN_SECRET=SECRET,
                   CT_TURN_REALM="ct.test", CT_TURN_LISTEN_UDP=f"127.0.0.1:{udp}",
                   CT_TURN_LISTEN_TCP="none", CT_TURN_LISTEN_TLS="none",
                   CT_TURN_RELAY_ADDRESS="127.0.0.1", CT_TURN_RELAY_PORTS="50000-59999")
        collector = _Collect()
        process = reactor.spawnProcess(
            collector, sys.executable,
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
             "-n", "--pidfile=", "ctturn"], env=env, path=ROOT)

        def stop():
            if process.pid is not None:
                process.signalProcess("TERM")
            return collector.ended
        self.addCleanup(stop)
        username, password = auth.rest_credentials(SECRET, "realm16", 600, reactor.seconds())
        challenge, foreign, right = yield threads.deferToThread(
            _foreign_realm_exchange, udp, username, password)

        def output():
            return collector.output.decode(errors="replace")[-3000:]
        self.assertEqual(error_code(challenge), 401, output())
        self.assertEqual(challenge.get(stun.REALM), b"ct.test")
        self.assertEqual(error_code(foreign), 401, output())
        self.assertEqual(foreign.get(stun.REALM), b"ct.test")  # the relay names its own
        self.assertEqual(right.cls, stun.SUCCESS, output())  # the credentials were valid
        yield wait_until(reactor, lambda: b"401 foreign realm" in collector.output,
                         timeout=10.0, step=0.1, message=output)
