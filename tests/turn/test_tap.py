"""Settings, ICE server entries, service assembly, and ``twistd -n ctturn`` as a process."""

from __future__ import annotations

import datetime
import json
import os
import socket
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import defer, reactor
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import DatagramProtocol, ProcessProtocol
from twisted.internet.testing import MemoryReactorClock
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import capturedLogs
from twisted.python import usage
from twisted.trial import unittest

from ct.turn import auth, stun, tap
from ct.turn.credentials import IceServerConfig, ice_servers
from ct.turn.stream import RecordPerWriteTLSFactory, TurnStreamFactory, tls_factory

from .support import EDGE_DEFAULTS, make_server, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))


def free_port(kind=socket.SOCK_DGRAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_signed(directory):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    cert_path = os.path.join(directory, "cert.pem")
    key_path = os.path.join(directory, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


class UdpMemoryReactor(MemoryReactorClock):
    """A memory reactor that also records readers (the UDP socket registers as one)."""

    def __init__(self):
        super().__init__()
        self.readers = []

    def addReader(self, reader):
        self.readers.append(reader)

    def removeReader(self, reader):
        self.readers.remove(reader)


class OptionsTests(unittest.TestCase):
    def parse(self, environ, argv=()):
        """Parse with a secret unless ``environ`` names credentials itself."""
        if "CT_TURN_USERS" not in environ:
            environ = {"CT_TURN_SECRET": "s", **environ}
        options = tap.Options(environ=environ)
        options.parseOptions(list(argv))
        return options

    def test_defaults(self):
        o = self.parse({})
        self.assertEqual(o["turn_listen_udp"], "0.0.0.0:3478")
        self.assertEqual(o["turn_listen_tcp"], "0.0.0.0:3478")
        self.assertEqual(o["turn_listen_tls"], "0.0.0.0:5349")
        self.assertEqual(o["turn_relay_ports"], (49152, 65535))
        self.assertEqual(o["turn_allow_peers"], ())
        self.assertEqual(o["turn_realm"], "ct")

    def test_environment_and_command_line(self):
        o = self.parse({"CT_TURN_RELAY_PORTS": "50000-50100", "CT_TURN_USERS": "a:b:c,d:e",
                        "CT_TURN_ALLOW_PEERS": "10.0.0.0/8, 127.0.0.1",
                        "CT_TURN_LISTEN_UDP": "3479", "CT_TURN_BANDWIDTH": "64k"},
                       ["--turn-listen-tcp", "none", "--turn-listen-tls", "[::1]:5350"])
        self.assertEqual(o["turn_relay_ports"], (50000, 50100))
        self.assertEqual(o["turn_users"], (("a", "b:c"), ("d", "e")))
        self.assertEqual(o["turn_allow_peers"], ("10.0.0.0/8", "127.0.0.1/32"))
        self.assertEqual(o["turn_listen_udp"], "0.0.0.0:3479")
        self.assertIsNone(o["turn_listen_tcp"])
        self.assertEqual(o["turn_listen_tls"], "[::1]:5350")
        self.assertEqual(o["turn_bandwidth"], 65536)

    def test_socket_buffers(self):
        o = self.parse({})
        self.assertEqual((o["turn_socket_buffer"], o["turn_relay_socket_buffer"]),
                         (4 * 1024 * 1024, 0))
        o = self.parse({"CT_TURN_SECRET": "s", "CT_TURN_SOCKET_BUFFER": "1m",
                        "CT_TURN_RELAY_SOCKET_BUFFER": "256k",
                        "CT_TURN_LISTEN_UDP": "127.0.0.1:0", "CT_TURN_LISTEN_TCP": "none",
                        "CT_TURN_LISTEN_TLS": "none", "CT_TURN_RELAY_ADDRESS": "127.0.0.1"})
        config = tap.makeService(o, UdpMemoryReactor()).turn_server.config
        self.assertEqual((config.socket_buffer, config.relay_socket_buffer),
                         (1024 * 1024, 256 * 1024))
        e = self.assertRaises(usage.UsageError, self.parse, {"CT_TURN_SOCKET_BUFFER": "1k"})
        self.assertIn("CT_TURN_SOCKET_BUFFER", str(e))

    def test_batch_delay(self):
        self.assertEqual(self.parse({})["turn_batch_delay"], 1.0)
        o = self.parse({"CT_TURN_SECRET": "s", "CT_TURN_BATCH_DELAY": "2.5",
                        "CT_TURN_LISTEN_UDP": "127.0.0.1:0", "CT_TURN_LISTEN_TCP": "none",
                        "CT_TURN_LISTEN_TLS": "none", "CT_TURN_RELAY_ADDRESS": "127.0.0.1"})
        service = tap.makeService(o, UdpMemoryReactor())
        self.assertEqual(service.turn_server.sockets.poller.hold, 0.0025)
        for raw in ("21", "-1", "soon"):
            e = self.assertRaises(usage.UsageError, self.parse, {"CT_TURN_BATCH_DELAY": raw})
            self.assertIn("CT_TURN_BATCH_DELAY", str(e))

    def test_fast_path_setting(self):
        from ct.turn.sockets import FAST_PATH

        self.assertIs(self.parse({})["turn_fast_path"], True)
        base = {"CT_TURN_SECRET": "s", "CT_TURN_LISTEN_UDP": "127.0.0.1:0",
                "CT_TURN_LISTEN_TCP": "none", "CT_TURN_LISTEN_TLS": "none",
                "CT_TURN_RELAY_ADDRESS": "127.0.0.1"}
        for raw, expected in (("true", FAST_PATH), ("false", None)):
            with capturedLogs() as events:
                service = tap.makeService(self.parse({**base, "CT_TURN_FAST_PATH": raw}),
                                          UdpMemoryReactor())
            self.assertIs(service.turn_server.sockets.fast, expected)
            paths = [e["path"] for e in events if "path" in e]
            self.assertEqual(len(paths), 1, events)
            self.assertTrue(paths[0].startswith("compiled" if expected else "Python"), paths)
        e = self.assertRaises(usage.UsageError, self.parse, {"CT_TURN_FAST_PATH": "maybe"})
        self.assertIn("CT_TURN_FAST_PATH", str(e))

    def test_finding_6_relay_refuses_its_own_addresses(self):
        o = self.parse({"CT_TURN_LISTEN_UDP": "none", "CT_TURN_LISTEN_TCP": "none",
                        "CT_TURN_LISTEN_TLS": "none", "CT_TURN_RELAY_ADDRESS": "192.0.2.1",
                        "CT_TURN_EXTERNAL_ADDRESS": "203.0.113.7",
                        "CT_TURN_ALLOW_PEERS": "192.0.2.0/24"})
        policy = tap.makeService(o, UdpMemoryReactor()).turn_server.policy
        self.assertEqual(policy.refusal("203.0.113.7"), "relay's own address peer")
        self.assertIsNone(policy.refusal("203.0.113.8"))
        self.assertIsNone(policy.refusal("192.0.2.1"))  # re-opened by the allow-list

    def test_bad_values_name_the_setting(self):
        for env, raw in (("CT_TURN_RELAY_PORTS", "9-5"), ("CT_TURN_ALLOW_PEERS", "x/99"),
                         ("CT_TURN_USERS", "nopassword"), ("CT_TURN_LISTEN_UDP", "a:b:c"),
                         ("CT_TURN_EXTERNAL_ADDRESS", "not-an-ip")):
            e = self.assertRaises(usage.UsageError, self.parse, {env: raw})
            self.assertIn(env, str(e))

    def test_options_require_credentials(self):
        e = self.assertRaises(usage.UsageError, tap.Options(environ={}).parseOptions, [])
        self.assertIn("set CT_TURN_SECRET", str(e))
        users = tap.Options(environ={"CT_TURN_USERS": "a:b"})
        users.parseOptions([])
        self.assertEqual(users["turn_users"], (("a", "b"),))

    def test_service_children(self):
        cert, key = self_signed(self._dir())
        o = self.parse({"CT_TURN_SECRET": "s", "CT_TURN_TLS_CERT": cert, "CT_TURN_TLS_KEY": key,
                        "CT_TURN_RELAY_ADDRESS": "127.0.0.1",
                        "CT_TURN_LISTEN_UDP": "127.0.0.1:0"})
        memory = UdpMemoryReactor()
        service = tap.makeService(o, memory)
        kinds = [type(s).__name__ for s in service]
        self.assertEqual(kinds, ["TurnServerService", "UdpListenerService",
                                 "StreamServerEndpointService", "StreamServerEndpointService"])
        service.startService()
        udp = [s for s in service if isinstance(s, tap.UdpListenerService)][0].listening
        self.assertEqual(udp.sock.getsockname()[0], "127.0.0.1")
        self.assertEqual(memory.readers, [service.turn_server.sockets.poller])
        factories = {port: factory for port, factory, *_ in memory.tcpServers}
        self.assertEqual(sorted(factories), [3478, 5349])
        self.assertEqual(memory.sslServers, [])  # TLS: a record per message (stream.py)
        self.assertIsInstance(factories[5349], RecordPerWriteTLSFactory)
        self.assertIs(factories[5349].wrappedFactory, factories[3478])
        self.assertEqual(service.turn_server.advertised_host, "127.0.0.1")
        service.stopService()
        self.assertEqual(memory.readers, [])
        self.assertTrue(udp.closed)

    def _dir(self):
        path = self.mktemp()
        os.makedirs(path)
        return path

    def test_edge_gets_generated_secret(self):
        values = {**EDGE_DEFAULTS, "turn_listen_udp": None, "turn_listen_tcp": None,
                  "turn_listen_tls": None, "turn_relay_address": "127.0.0.1"}
        service = tap.make_turn_service(values, UdpMemoryReactor())
        self.assertTrue(service.secret)
        self.assertEqual(service.turn_server.credentials.secret, service.secret)
        self.assertIsNone(values["turn_secret"])  # the settings are read, never written


class IceServerTests(unittest.TestCase):
    def test_shape(self):
        servers = ice_servers("turn.example.com", "s", "alice", 3600, 1000, tls_port=5349)
        self.assertEqual(servers[0], {"urls": ["stun:turn.example.com:3478"]})
        self.assertEqual(servers[1]["urls"], [
            "turn:turn.example.com:3478?transport=udp",
            "turn:turn.example.com:3478?transport=tcp",
            "turns:turn.example.com:5349?transport=tcp"])
        self.assertEqual(servers[1]["username"], "4600:alice")
        self.assertEqual(servers[1]["credential"], auth.rest_password("s", "4600:alice"))
        v6 = ice_servers("2001:db8::1", "s", "u", 60, 0, tcp_port=None)
        self.assertEqual(v6[1]["urls"], ["turn:[2001:db8::1]:3478?transport=udp"])

    def test_edge_choice(self):
        base = {**EDGE_DEFAULTS, "av_enabled": True, "turn_credential_ttl": 60.0}
        self.assertIsNone(tap.ice_server_config({**base, "av_enabled": False}, "y"))
        self.assertIsNone(tap.ice_server_config(base, None))
        coturn = tap.ice_server_config({**base, "av_coturn_server": "coturn.example.org:3479",
                                        "av_coturn_secret": "x", "turn_enabled": True}, "y")
        self.assertEqual(coturn, IceServerConfig("coturn.example.org", "x", 60.0, 3479, 3479))
        servers = coturn.servers_for("u", 0)
        self.assertEqual(servers[1]["urls"], ["turn:coturn.example.org:3479?transport=udp",
                                              "turn:coturn.example.org:3479?transport=tcp"])
        self.assertEqual(servers[1]["credential"], auth.rest_password("x", "60:u"))
        bundled = {**base, "turn_enabled": True, "server_url": "https://ct.example.org:1443",
                   "turn_listen_udp": "0.0.0.0:3478", "turn_listen_tcp": None,
                   "turn_listen_tls": "0.0.0.0:443", "tls_cert": "/etc/cert.pem"}
        self.assertIsNone(tap.ice_server_config(bundled, None))  # no secret from the relay
        servers = tap.ice_server_config(bundled, "y").servers_for("u", 0)
        self.assertEqual(servers[1]["urls"], ["turn:ct.example.org:3478?transport=udp",
                                              "turns:ct.example.org:443?transport=tcp"])
        self.assertEqual(servers[1]["credential"], auth.rest_password("y", "60:u"))
        no_port = {**bundled, "turn_listen_udp": None, "turn_listen_tls": None}
        self.assertIsNone(tap.ice_server_config(no_port, "y"))


class TlsTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_aioice_over_tls(self):
        directory = self.mktemp()
        os.makedirs(directory)
        cert, key = self_signed(directory)
        server = make_server(reactor)
        server.start()
        self.addCleanup(server.stop)
        port = reactor.listenTCP(0, tls_factory(tap._tls_context(cert, key),
                                                TurnStreamFactory(server)), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        username, password = auth.rest_credentials("s3cret", "tls", 600, reactor.seconds())
        out, err, code = yield getProcessOutputAndValue(
            sys.executable, [os.path.join(HERE, "aioice_client.py"), "127.0.0.1",
                             str(port.getHost().port), "tls", username, password, "2"],
            env=dict(os.environ), reactor=reactor)
        result = json.loads(out.decode().strip().splitlines()[-1])
        self.assertTrue(result["ok"], (result, err))
        self.assertEqual(result["echoes"], 2)


class _Collect(ProcessProtocol):
    def __init__(self):
        self.output = b""
        self.ended = defer.Deferred()

    def outReceived(self, data):
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason):
        self.ended.callback(reason.value)


class _Probe(DatagramProtocol):
    def __init__(self):
        self.replies = []

    def datagramReceived(self, data, addr):
        self.replies.append(data)


class StandaloneTests(unittest.TestCase):
    timeout = 60

    def test_finding_22_ctturn_without_credentials_exits_with_one_clear_line(self):
        from tests.procutil import run_to_exit

        code, output = run_to_exit("ctturn", {"CT_TURN_LISTEN_UDP": "none",
                                              "CT_TURN_LISTEN_TCP": "none"}, timeout=60)
        self.assertNotEqual(code, 0)
        self.assertNotIn("Traceback", output)
        errors = [line for line in output.splitlines() if "CT_TURN_SECRET" in line]
        self.assertEqual(len(errors), 1, output)
        self.assertIn("set CT_TURN_SECRET (REST API shared secret) and/or CT_TURN_USERS: "
                      "without credentials no allocation can succeed", errors[0])

    @defer.inlineCallbacks
    def test_twistd_ctturn_answers_binding(self):
        udp = free_port()
        env = dict(os.environ, PYTHONPATH=ROOT, CT_TURN_SECRET="standalone",
                   CT_TURN_LISTEN_UDP=f"127.0.0.1:{udp}", CT_TURN_LISTEN_TCP="none",
                   CT_TURN_RELAY_ADDRESS="127.0.0.1", CT_TURN_RELAY_PORTS="50000-59999")
        collector = _Collect()
        process = reactor.spawnProcess(
            collector, sys.executable,
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
             "-n", "--pidfile=", "ctturn"],
            env=env, path=ROOT)

        def stop():
            if process.pid is not None:
                process.signalProcess("TERM")
            return collector.ended
        self.addCleanup(stop)
        probe = _Probe()
        sock = reactor.listenUDP(0, probe, interface="127.0.0.1")
        self.addCleanup(sock.stopListening)
        request = stun.encode_message(stun.BINDING, stun.REQUEST, b"standalone!!")

        def answered_or_ended():
            sock.write(request, ("127.0.0.1", udp))  # lost while twistd starts: ask again
            return probe.replies or process.pid is None
        yield wait_until(reactor, answered_or_ended, timeout=20.0, step=0.2,
                         message=lambda: "ctturn did not answer: "
                         + collector.output.decode(errors="replace")[-2000:])
        self.assertTrue(probe.replies, collector.output.decode(errors="replace")[-2000:])
        reply = stun.parse_message(probe.replies[0])
        self.assertEqual(reply.cls, stun.SUCCESS)
        self.assertEqual(stun.decode_xor_address(reply.get(stun.XOR_MAPPED_ADDRESS),
                                                 b"standalone!!"),
                         ("127.0.0.1", sock.getHost().port))
        process.signalProcess("TERM")
        reason = yield collector.ended
        self.assertIsInstance(reason, (ProcessDone, ProcessTerminated))
        self.assertIn(b"STUN/TURN relay on udp 127.0.0.1", collector.output)
        self.assertIn(b"UDP data path: compiled (recvmmsg/sendmmsg)", collector.output)
