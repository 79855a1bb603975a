"""The shared keep-alive: one timer pings every connection and drops the silent ones."""

from __future__ import annotations

import json
import struct

from twisted.internet import defer, protocol, reactor
from twisted.internet.task import Clock
from twisted.trial import unittest

from ct.edge.keepalive import KeepAlive
from ct.edge.server import EdgeConfig, Edge
from ct.edge.ws import SessionProtocol, make_factory
from tests.edge.util import masked_frame, upgrade_request, wait_for

INTERVAL = 20.0


class FakeConnection:
    """What KeepAlive needs from a connection; ``answers`` makes it reply to each ping."""

    def __init__(self, clock, answers=True):
        self.clock = clock
        self.answers = answers
        self.keepalive_quiet = False
        self.pings = []
        self.dropped_at = None

    def send_ping(self):
        self.pings.append(self.clock.seconds())
        if self.answers:
            self.keepalive_quiet = False  # the pong arrives before the next visit

    def drop_silent(self):
        self.dropped_at = self.clock.seconds()


class KeepAliveTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.keepalive = KeepAlive(self.clock, INTERVAL, slices=40)

    def run_for(self, seconds):
        steps = int(round(seconds / self.keepalive.tick))
        for _ in range(steps):
            self.clock.advance(self.keepalive.tick)

    def test_silent_peer_is_dropped_within_two_intervals(self):
        opened = self.clock.seconds()
        conn = FakeConnection(self.clock, answers=False)
        self.keepalive.add(conn)
        self.run_for(3 * INTERVAL)
        self.assertIsNotNone(conn.dropped_at)
        self.assertEqual(len(conn.pings), 1)
        # It had a whole interval to answer its ping, and was not kept beyond the bound.
        self.assertEqual(conn.dropped_at - conn.pings[0], INTERVAL)
        self.assertLessEqual(conn.dropped_at - opened, 2 * INTERVAL + self.keepalive.tick)
        self.assertEqual(len(self.keepalive), 0)

    def test_peer_that_stops_answering_is_dropped_within_two_intervals(self):
        conn = FakeConnection(self.clock, answers=True)
        self.keepalive.add(conn)
        self.run_for(5 * INTERVAL)
        self.assertIsNone(conn.dropped_at)
        conn.answers = False
        last_heard = conn.pings[-1]  # its last pong
        self.run_for(3 * INTERVAL)
        self.assertIsNotNone(conn.dropped_at)
        self.assertLessEqual(conn.dropped_at - last_heard, 2 * INTERVAL)

    def test_answering_peer_is_kept_and_pinged_once_per_interval(self):
        conns = [FakeConnection(self.clock) for _ in range(200)]
        for c in conns:
            self.keepalive.add(c)
        self.run_for(10 * INTERVAL)
        for c in conns:
            self.assertIsNone(c.dropped_at)
            self.assertEqual(len(c.pings), 10)
            gaps = {b - a for a, b in zip(c.pings, c.pings[1:])}
            self.assertEqual(gaps, {INTERVAL})

    def test_traffic_without_pongs_counts_as_liveness(self):
        conn = FakeConnection(self.clock, answers=False)
        self.keepalive.add(conn)
        for _ in range(40):  # a frame every 5 s, never a pong
            self.run_for(5.0)
            conn.keepalive_quiet = False
        self.assertIsNone(conn.dropped_at)
        self.assertGreaterEqual(len(conn.pings), 9)

    def test_one_timer_for_all_connections_and_none_when_empty(self):
        conns = [FakeConnection(self.clock) for _ in range(100)]
        for c in conns:
            self.keepalive.add(c)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.run_for(INTERVAL)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        for c in conns:
            self.keepalive.discard(c)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.keepalive.discard(conns[0])  # twice: no error
        self.keepalive.add(conns[0])  # starts again
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.keepalive.discard(conns[0])

    def test_each_tick_visits_a_slice(self):
        conns = [FakeConnection(self.clock) for _ in range(400)]
        for c in conns:
            self.keepalive.add(c)
        per_tick = []
        for _ in range(self.keepalive.slices):
            before = sum(len(c.pings) for c in conns)
            self.clock.advance(self.keepalive.tick)
            per_tick.append(sum(len(c.pings) for c in conns) - before)
        self.assertEqual(sum(per_tick), 400)
        self.assertLess(max(per_tick), 400 // 4)

    def test_late_tick_visits_one_slice_only(self):
        conns = [FakeConnection(self.clock) for _ in range(400)]
        for c in conns:
            self.keepalive.add(c)
        self.clock.advance(INTERVAL)  # one call, as after a stalled reactor
        self.assertLess(sum(len(c.pings) for c in conns), 400 // 4)
        self.assertTrue(all(c.dropped_at is None for c in conns))

    def test_zero_interval_disables(self):
        keepalive = KeepAlive(self.clock, 0)
        keepalive.add(FakeConnection(self.clock))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(len(keepalive), 0)


class RawClient(protocol.Protocol):
    """A hand-written websocket client: hosts a session, then answers pings or not."""

    def __init__(self, answer_pings: bool):
        self.answer_pings = answer_pings
        self.buffer = b""
        self.upgraded = False
        self.messages = []
        self.pings = 0
        self.lost = False

    def connectionMade(self):
        self.transport.write(upgrade_request())

    def dataReceived(self, data):
        self.buffer += data
        if not self.upgraded:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            assert head.startswith(b"HTTP/1.1 101"), head
            self.upgraded, self.buffer = True, rest
            self.transport.write(masked_frame(0x81, json.dumps({"type": "host", "name": "raw"}).encode()))
        while len(self.buffer) >= 2:
            opcode, n = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F
            start = 2
            if n == 126:
                if len(self.buffer) < 4:
                    return
                n, start = struct.unpack("!H", self.buffer[2:4])[0], 4
            if len(self.buffer) < start + n:
                return
            payload, self.buffer = self.buffer[start:start + n], self.buffer[start + n:]
            if opcode == 9:
                self.pings += 1
                if self.answer_pings:
                    self.transport.write(masked_frame(0x8A, payload))
            elif opcode == 1:
                self.messages.append(json.loads(payload))

    def connectionLost(self, reason):
        self.lost = True


class KeepAliveOverSocketsTests(unittest.TestCase):
    """A real edge factory on loopback; its keep-alive runs on a Clock."""

    @defer.inlineCallbacks
    def test_silent_peer_closed_answering_peer_kept(self):
        clock = Clock()
        edge = Edge(clock, EdgeConfig(ping_interval=INTERVAL))
        factory = make_factory(SessionProtocol, edge, "ws://127.0.0.1", 1 << 20, reactor)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        address = port.getHost()
        clients = {}
        for name, answers in (("answering", True), ("silent", False)):
            client = RawClient(answers)
            yield protocol.ClientCreator(reactor, lambda c=client: c).connectTCP(
                address.host, address.port)
            clients[name] = client
        self.addCleanup(self._close, clients.values())
        yield wait_for(lambda: all(c.messages for c in clients.values()), timeout=10)
        for c in clients.values():
            self.assertEqual(c.messages[0]["type"], "hosted")
        keepalive = factory.keepalive
        self.assertEqual(len(keepalive), 2)
        # No Autobahn ping timers: the one LoopingCall is the only keep-alive timer.
        self.assertEqual(len(clock.getDelayedCalls()), 1)

        for _ in range(keepalive.slices):  # one interval: every connection pinged once
            clock.advance(keepalive.tick)
        yield wait_for(lambda: all(c.pings == 1 for c in clients.values()), timeout=10)
        server_side = {c for group in keepalive._groups for c in group}
        yield wait_for(lambda: sum(not c.keepalive_quiet for c in server_side) == 1, timeout=10)
        self.assertFalse(clients["silent"].lost)

        for _ in range(keepalive.slices):  # a second interval: the silent one is dropped
            clock.advance(keepalive.tick)
        yield wait_for(lambda: clients["silent"].lost, timeout=10)
        self.assertFalse(clients["answering"].lost)
        self.assertEqual(len(keepalive), 1)
        self.assertEqual(clients["answering"].pings, 2)

    @defer.inlineCallbacks
    def _close(self, clients):
        for c in clients:
            if not c.lost:
                c.transport.loseConnection()
        yield wait_for(lambda: all(c.lost for c in clients), timeout=5)
