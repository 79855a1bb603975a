"""Hardening of the locator's edge link (``/ws/edge``), placement rate limits and probes.

Pure parts (register validation, the per-address limiter, probe scheduling) run on a
``Clock``; the link itself is attacked over real sockets against a real ``twistd
ctlocator`` process.
"""

from __future__ import annotations

import json
import time

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import Clock
from twisted.trial import unittest

from ct.common.ratelimit import KeyedLimiter
from ct.locator.edges import EdgeDirectory
from ct.locator.placement import EdgeState
from ct.locator.service import Locator, RateLimited
from ct.protocol.errors import ProtocolError
from ct.protocol.link import MAX_REGISTER_SESSIONS, Register, SessionInfo
from tests.deployment.util import EDGE_SECRET, Deployment
from tests.edge.util import sleep

VALID_REGISTER = {"type": "register", "v": 1, "edge": "e1", "secret": EDGE_SECRET,
                  "url": "http://127.0.0.1:1", "region": "default", "version": "1.0",
                  "maxConnections": 0, "sessions": [{"session": "s1", "team": "t",
                                                     "started": 1.5}], "teams": ["t"]}


# ------------------------------------------------------------------ pure logic

class RegisterValidationTests(unittest.SynchronousTestCase):
    def test_finding_9_valid_register_is_parsed(self):
        hello = Register.from_json(dict(VALID_REGISTER))
        self.assertEqual(hello.sessions, (SessionInfo("s1", "t", 1.5),))
        self.assertEqual((hello.edge, hello.teams, hello.max_connections), ("e1", ("t",), 0))

    def test_finding_9_every_malformed_field_is_refused(self):
        bad = [{"sessions": "bogus"}, {"sessions": [1]}, {"sessions": [{"session": 5}]},
               {"sessions": [{"team": "t"}]}, {"sessions": [{"session": "s", "started": "x"}]},
               {"sessions": [{"session": "s"}] * (MAX_REGISTER_SESSIONS + 1)},
               {"teams": "t"}, {"teams": [None]}, {"teams": ["x" * 65]},
               {"maxConnections": "5"}, {"maxConnections": -1}, {"maxConnections": True},
               {"edge": ""}, {"edge": "x" * 65}, {"url": 3}, {"region": None}]
        for change in bad:
            with self.subTest(change=change):
                with self.assertRaises(ProtocolError) as caught:
                    Register.from_json({**VALID_REGISTER, **change})
                self.assertEqual(caught.exception.code.name, "bad-message")


class RefusalLogTests(unittest.SynchronousTestCase):
    def test_finding_9_refused_links_are_logged_with_a_bound(self):
        from twisted.logger import LogLevel, capturedLogs

        from ct.locator.link import REFUSAL_LOG_BURST, EdgeLinkFactory

        clock = Clock()
        factory = EdgeLinkFactory("ws://127.0.0.1", None, reactor, clock=clock)
        with capturedLogs() as events:
            for _ in range(500):
                factory.log_refusal("tcp4:127.0.0.1:1", "forbidden", "wrong edge secret")
            clock.advance(1.0)
            factory.log_refusal("tcp4:127.0.0.1:1", "forbidden", "wrong edge secret")
        warnings = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warnings), REFUSAL_LOG_BURST + 1)
        self.assertEqual(warnings[-1]["suppressed"], 490)  # the refusals not logged


class RegisterDeadlineTests(unittest.SynchronousTestCase):
    UPGRADE = (b"GET /ws/edge HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               b"Sec-WebSocket-Version: 13\r\n\r\n")

    def connect(self, clock):
        from twisted.internet.address import IPv4Address
        from twisted.internet.testing import StringTransport

        from ct.locator.link import EdgeLinkFactory

        factory = EdgeLinkFactory("ws://127.0.0.1/ws/edge", None, clock, clock=clock,
                                  register_timeout=5.0)
        # Autobahn's own timers run on the global reactor whatever it is given: none here.
        factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0,
                                   autoPingInterval=0, autoPingTimeout=0)
        peer = IPv4Address("TCP", "127.0.0.1", 40000)
        proto = factory.buildProtocol(peer)
        transport = StringTransport(peerAddress=peer)
        proto.makeConnection(transport)
        return proto, transport

    def test_finding_9_register_deadline_runs_on_the_injected_clock(self):
        clock = Clock()
        proto, transport = self.connect(clock)
        proto.dataReceived(self.UPGRADE)
        self.assertIn(b" 101 ", transport.value())
        transport.clear()
        clock.advance(4.9)
        self.assertEqual(transport.value(), b"")
        clock.advance(0.2)
        self.assertIn(b"\x88", transport.value())  # a close frame ...
        self.assertIn((4002).to_bytes(2, "big") + b"handshake-timeout", transport.value())

    def test_finding_9_no_websocket_handshake_at_all_is_cut_at_the_deadline(self):
        clock = Clock()
        proto, transport = self.connect(clock)
        clock.advance(5.0)
        self.assertTrue(transport.disconnecting or transport.disconnected)


class KeyedLimiterTests(unittest.SynchronousTestCase):
    def test_finding_4_burst_then_rate_with_retry_after(self):
        clock = Clock()
        limiter = KeyedLimiter(rate=0.5, burst=3, seconds=clock.seconds)
        self.assertEqual([limiter.take("a") for _ in range(3)], [0.0, 0.0, 0.0])
        self.assertAlmostEqual(limiter.take("a"), 2.0)
        self.assertEqual(limiter.take("b"), 0.0)  # one address does not limit another
        clock.advance(2.0)
        self.assertEqual(limiter.take("a"), 0.0)
        self.assertGreater(limiter.take("a"), 0.0)

    def test_finding_4_table_of_addresses_is_bounded(self):
        clock = Clock()
        limiter = KeyedLimiter(rate=1.0, burst=1, seconds=clock.seconds, max_keys=100)
        for i in range(10_000):
            limiter.take(f"10.0.{i // 256}.{i % 256}")
        self.assertEqual(len(limiter), 100)

    def test_zero_rate_means_no_limit(self):
        limiter = KeyedLimiter(rate=0, burst=1, seconds=Clock().seconds)
        self.assertEqual({limiter.take("a") for _ in range(100)}, {0.0})
        self.assertEqual(len(limiter), 0)


class _Store:
    """Nothing is stored by the code under test here."""


class PlaceSessionLimitTests(unittest.SynchronousTestCase):
    def test_finding_4_place_session_refuses_with_retry_after_and_warns_once(self):
        from twisted.logger import LogLevel, capturedLogs

        clock = Clock()
        directory = EdgeDirectory(clock)
        directory.connected("e1", "http://e1", "default", "1", object(), False, 5)
        locator = Locator(clock, _Store(), directory, None,
                          placement_limiter=KeyedLimiter(1.0, 2, clock.seconds))
        with capturedLogs() as events:
            for _ in range(2):
                self.assertEqual(locator.place_session("10.0.0.1")["edge"], "e1")
            for _ in range(5):
                with self.assertRaises(RateLimited) as caught:
                    locator.place_session("10.0.0.1")
        self.assertEqual((caught.exception.status, caught.exception.retry_after), (429, 1))
        warnings = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(locator.placements_refused, 5)


class ProbeSchedulingTests(unittest.SynchronousTestCase):
    def test_finding_28_lost_edges_are_probed_concurrently_and_flagged_in_bounded_time(self):
        clock = Clock()
        directory = EdgeDirectory(clock, dead_after=15, link_grace=120)
        pending: dict[str, list[defer.Deferred]] = {}

        def health_check(url):
            d = defer.Deferred()
            pending.setdefault(url, []).append(d)
            return d

        locator = Locator(clock, _Store(), directory, None, health_check=health_check)
        links = {}
        for name in ("a", "b", "c"):
            links[name] = object()
            directory.connected(name, name, "default", "1", links[name], False)
        for name in ("a", "b", "c"):
            locator.edge_disconnected(directory.edges[name], links[name])
        # All three are probed at once, without waiting for one another.
        self.assertEqual(sorted(pending), ["a", "b", "c"])
        clock.advance(1.0)
        locator.probe_lost_edges()
        self.assertEqual({k: len(v) for k, v in pending.items()}, {"a": 1, "b": 1, "c": 1})
        clock.advance(1.0)
        for url in pending:  # each hung probe times out: the next one starts at once
            pending[url][-1].callback(False)
            self.assertEqual(len(pending[url]), 2)
            pending[url][-1].callback(False)
        self.assertEqual({directory.state(i) for i in directory.edges.values()},
                         {EdgeState.UNAVAILABLE})

    def test_finding_28_result_of_an_earlier_link_loss_does_not_count(self):
        clock = Clock()
        directory = EdgeDirectory(clock)
        link = object()
        info = directory.connected("a", "a", "default", "1", link, False)
        directory.disconnected("a", link)
        old = directory.probe_started(info)
        clock.advance(1)
        link2 = object()
        directory.connected("a", "a", "default", "1", link2, False)
        directory.disconnected("a", link2)
        directory.health_result("a", False, old)
        directory.health_result("a", False, old)
        self.assertEqual(directory.state(info), EdgeState.LINK_LOST)


# ------------------------------------------------------------------ real sockets

class _LinkClient(WebSocketClientProtocol):
    def onOpen(self):
        self.factory.opened.callback(self)

    def onMessage(self, payload, isBinary):
        self.factory.messages.append(json.loads(payload))

    def onClose(self, wasClean, code, reason):
        self.factory.closed_at = time.monotonic()
        if not self.factory.closed.called:
            self.factory.closed.callback(self.remoteCloseCode)


class _SilentLinkClient(_LinkClient):
    """An edge that never answers pings (hung, as far as pings go)."""

    def sendPong(self, payload=None):
        pass


@defer.inlineCallbacks
def open_link(port: int, protocol=_LinkClient):
    """A websocket to the locator's ``/ws/edge`` that records messages and the close."""
    factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}/ws/edge", reactor=reactor)
    factory.protocol = protocol
    factory.opened, factory.closed, factory.messages = defer.Deferred(), defer.Deferred(), []
    factory.setProtocolOptions(autoPingInterval=0, openHandshakeTimeout=10)
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=10)
    proto = yield endpoint.connect(factory)
    yield factory.opened.addTimeout(10, reactor)
    return proto, factory


class EdgeLinkOverSocketsTests(unittest.TestCase):
    timeout = 120

    def setUp(self):
        self.d = Deployment(self)
        self.d.start_locator()
        self.links = []
        self.addCleanup(self._close_links)

    def _close_links(self):
        for proto in self.links:
            if proto.transport is not None:
                proto.transport.abortConnection()

    @defer.inlineCallbacks
    def connect(self, protocol=_LinkClient):
        proto, factory = yield open_link(self.d.locator_port, protocol)
        self.links.append(proto)
        return proto, factory

    @defer.inlineCallbacks
    def test_finding_9_unregistered_link_is_closed_at_the_register_deadline(self):
        _, factory = yield self.connect()
        opened = time.monotonic()
        code = yield factory.closed.addTimeout(15, reactor)
        waited = factory.closed_at - opened
        self.assertEqual(code, 4002)  # handshake-timeout
        self.assertLess(waited, 8.0)  # CT_EDGE_REGISTER_TIMEOUT: 5 s (was: open 25 s+)
        self.assertEqual(factory.messages[-1]["code"], "handshake-timeout")
        self.d.locator.wait_for_log(r"edge link from .* refused: handshake-timeout", timeout=5)

    @defer.inlineCallbacks
    def test_finding_9_big_message_before_register_is_not_read(self):
        proto, factory = yield self.connect()
        # A frame that announces 10 MB; only its first kilobyte is sent. The locator must
        # refuse it from the header (1009), not wait to read and parse 10 MB.
        proto.beginMessage(isBinary=False)
        proto.beginMessageFrame(10 * 1024 * 1024)
        proto.sendMessageFrameData(b'{"type": "register", "padding": "' + b"x" * 1024)
        started = time.monotonic()
        code = yield factory.closed.addTimeout(15, reactor)
        self.assertEqual(code, 1009)
        self.assertLess(factory.closed_at - started, 3.0)  # well before the register deadline
        log = self.d.locator.wait_for_log(r"refused: websocket close 1009", timeout=5).string
        self.assertNotIn("Traceback", log)
        self.assertEqual(log.count("#warn]"), 1, log)  # one line, no autobahn noise

    @defer.inlineCallbacks
    def test_finding_9_malformed_register_leaves_no_phantom_edge(self):
        for n, sessions in enumerate(["bogus", [{"session": 5}], [None]]):
            proto, factory = yield self.connect()
            proto.sendMessage(json.dumps({**VALID_REGISTER, "edge": f"phantom{n}",
                                          "sessions": sessions}).encode(), False)
            code = yield factory.closed.addTimeout(15, reactor)
            self.assertEqual(code, 4000)
            self.assertEqual(factory.messages[-1]["code"], "bad-message")
        self.assertEqual(self.d.audit_rows("SELECT edge_id FROM edges"), [])
        log = self.d.locator.log()
        self.assertNotIn("Traceback", log)
        self.assertEqual(log.count("refused: bad-message"), 3)

    @defer.inlineCallbacks
    def test_finding_9_valid_register_is_accepted_and_may_then_send_big_messages(self):
        proto, factory = yield self.connect()
        proto.sendMessage(json.dumps(VALID_REGISTER).encode(), False)
        deadline = time.monotonic() + 10
        while not any(m.get("type") == "registered" for m in factory.messages):
            self.assertLess(time.monotonic(), deadline, factory.messages)
            yield sleep(0.05)
        # Past the register deadline the link stays up, and a batch over the
        # pre-registration limit is read.
        yield sleep(6.0)
        self.assertFalse(factory.closed.called)
        proto.sendMessage(json.dumps({"type": "records", "batch": 1, "audit": [
            {"id": f"a{i}", "time": 1.0, "kind": "padding", "details": {"x": "y" * 1000}}
            for i in range(400)]}).encode(), False)
        deadline = time.monotonic() + 10
        while not any(m.get("type") == "stored" for m in factory.messages):
            self.assertLess(time.monotonic(), deadline, factory.messages)
            yield sleep(0.05)
        self.assertEqual(factory.messages[-1]["stored"], 400)

    @defer.inlineCallbacks
    def test_a_draining_message_is_checked_then_the_edge_drains(self):
        @defer.inlineCallbacks
        def registered(edge):
            proto, factory = yield self.connect()
            proto.sendMessage(json.dumps({**VALID_REGISTER, "edge": edge}).encode(), False)
            deadline = time.monotonic() + 10
            while not any(m.get("type") == "registered" for m in factory.messages):
                self.assertLess(time.monotonic(), deadline, factory.messages)
                yield sleep(0.05)
            return proto, factory

        proto, factory = yield registered("bad-drain")
        proto.sendMessage(json.dumps({"type": "draining", "since": 10.0,
                                      "until": 5.0}).encode(), False)
        code = yield factory.closed.addTimeout(15, reactor)
        self.assertEqual((code, factory.messages[-1]["code"]), (4000, "bad-message"))
        self.assertIn("'until' must not be before 'since'", factory.messages[-1]["message"])
        proto, factory = yield registered("good-drain")
        now = time.time()
        proto.sendMessage(json.dumps({"type": "draining", "since": now,
                                      "until": now + 30}).encode(), False)
        states = yield self.d.wait_edges(lambda s: s.get("good-drain") == "draining",
                                         timeout=10)
        self.assertNotEqual(states.get("bad-drain"), "draining")
        self.assertFalse(factory.closed.called)

    @defer.inlineCallbacks
    def test_finding_25_slow_big_message_is_not_silence_but_a_silent_link_is_dropped(self):
        proto, factory = yield self.connect(_SilentLinkClient)
        proto.sendMessage(json.dumps(VALID_REGISTER).encode(), False)
        deadline = time.monotonic() + 10
        while not any(m.get("type") == "registered" for m in factory.messages):
            self.assertLess(time.monotonic(), deadline, factory.messages)
            yield sleep(0.05)
        # A 1 MB batch trickling in over 8 s (more than CT_EDGE_LINK_TIMEOUT, 6 s) while
        # no pong comes: the bytes themselves show the edge is alive.
        head = json.dumps({"type": "records", "batch": 1, "audit": [
            {"id": "a1", "time": 1.0, "kind": "padding"}], "padding": ""})[:-2].encode()
        body = head + b"x" * (1024 * 1024 - len(head) - 2) + b'"}'
        proto.beginMessage(isBinary=False)
        proto.beginMessageFrame(len(body))
        chunk = len(body) // 10 + 1
        for i in range(0, len(body), chunk):
            proto.sendMessageFrameData(body[i:i + chunk])
            yield sleep(0.8)
        proto.endMessage()
        deadline = time.monotonic() + 5
        while not any(m.get("type") == "stored" for m in factory.messages):
            self.assertFalse(factory.closed.called, "the link was dropped mid-batch")
            self.assertLess(time.monotonic(), deadline, factory.messages)
            yield sleep(0.05)
        # From now on the edge is silent: the locator drops it within the link timeout.
        silent_from = time.monotonic()
        yield factory.closed.addTimeout(15, reactor)
        self.assertLess(factory.closed_at - silent_from, 6.0 + 1.0)
