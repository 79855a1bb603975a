"""StatsD push against real listeners (UDP socket, TCP server) and against a missing server.

Pushes are scheduled on a ``Clock`` (many intervals in no time); the networking is real.
"""

from __future__ import annotations

import socket

from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from ct.metrics.definitions import EDGE_METRICS
from ct.metrics.model import MetricSet
from ct.metrics.statsd import StatsdPusher, _Stream
from tests.edge.util import start_edge, wait_for
from tests.metrics.util import (TcpStatsd, capture_logs, fetch, latest, levels, listen_udp,
                                sum_counter)

INTERVAL = 10.0


def free_port(kind=socket.SOCK_DGRAM) -> int:
    """A loopback port nobody listens on (bound once, then released)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Fixture:
    """A live snapshot dict published through a MetricSet."""

    def __init__(self):
        self.state = {"sessions": 3, "connections": 7, "users_online": 5, "lag_ms": 4.0,
                      "sessions_hosted_total": 10}
        self.metrics = MetricSet()
        self.metrics.add_source("edge", lambda: dict(self.state), EDGE_METRICS)


class StatsdTests(unittest.TestCase):
    timeout = 60

    def start(self, host, port, protocol="UDP", metrics=None, **kw):
        self.clock = Clock()
        self.fixture = Fixture()
        pusher = StatsdPusher(reactor, metrics or self.fixture.metrics, host, port,
                              protocol=protocol, interval=INTERVAL, clock=self.clock, **kw)
        pusher.startService()
        self.addCleanup(pusher.stopService)
        return pusher

    @defer.inlineCallbacks
    def push_and_wait(self, pusher, predicate, timeout=5.0):
        self.clock.advance(INTERVAL)
        yield wait_for(predicate, timeout=timeout)

    @defer.inlineCallbacks
    def test_udp_listener_receives_gauges_and_counter_deltas(self):
        server, port = listen_udp(self)
        pusher = self.start("127.0.0.1", port)
        yield wait_for(lambda: pusher._address is not None)
        yield self.push_and_wait(pusher, lambda: server.lines)
        lines = list(server.lines)
        self.assertEqual(latest(lines, "codetogether.sessions_active"), "3|g")
        self.assertEqual(latest(lines, "codetogether.session_connections"), "7|g")
        self.assertEqual(latest(lines, "codetogether.users_online"), "5|g")
        self.assertEqual(latest(lines, "codetogether.server_lag_seconds"), "0.004|g")
        self.assertEqual(latest(lines, "codetogether.sessions_hosted"), "10|c")
        self.fixture.state["sessions_hosted_total"] = 13
        self.fixture.state["sessions"] = 1
        count = len(server.lines)
        yield self.push_and_wait(pusher, lambda: len(server.lines) > count)
        self.assertEqual(latest(server.lines, "codetogether.sessions_hosted"), "3|c")
        self.assertEqual(latest(server.lines, "codetogether.sessions_active"), "1|g")
        self.assertEqual(sum_counter(server.lines, "codetogether.sessions_hosted"), 13)
        self.assertIsNone(pusher.failing)

    @defer.inlineCallbacks
    def test_tcp_server_receives_newline_terminated_lines(self):
        factory = TcpStatsd()
        listening = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        pusher = self.start("localhost", listening.getHost().port, "TCP")
        yield wait_for(lambda: factory.connections)
        yield self.push_and_wait(pusher, lambda: factory.lines)
        self.assertEqual(latest(factory.lines, "codetogether.session_connections"), "7|g")
        self.assertEqual(latest(factory.lines, "codetogether.sessions_hosted"), "10|c")
        yield pusher.stopService()
        yield wait_for(lambda: not factory.connections)

    @defer.inlineCallbacks
    def test_closed_udp_port_warns_once_keeps_serving_and_says_when_it_recovers(self):
        logs = capture_logs(self)
        service, url = start_edge(self)
        port = free_port()
        pusher = self.start("127.0.0.1", port, metrics=service.metrics)
        yield wait_for(lambda: pusher._address is not None)
        for i in range(30):  # 30 intervals with nothing listening
            before = pusher.failures
            yield self.push_and_wait(pusher, lambda: pusher.failures > before)
        code, _, _ = yield fetch(url + "/health")
        self.assertEqual(code, 200)
        warnings = levels(logs, "warn")
        self.assertEqual(len(warnings), 1, [w["log_format"] for w in warnings])
        self.assertIn("refused", warnings[0]["reason"])
        self.assertIn(f"127.0.0.1:{port} (UDP)", warnings[0]["target"])
        self.assertEqual(levels(logs, "info")[1:], [])  # only the start-up line so far

        server, _ = listen_udp(self, port)  # StatsD comes back on that port
        yield self.push_and_wait(pusher, lambda: server.lines)
        self.clock.advance(INTERVAL)  # a push that drew no refusal: recovered
        self.clock.advance(INTERVAL)
        recovered = [e for e in levels(logs, "info") if "works again" in e["log_format"]]
        self.assertEqual(len(recovered), 1)
        self.assertIsNone(pusher.failing)
        self.assertEqual(len(levels(logs, "warn")), 1)

    @defer.inlineCallbacks
    def test_unresolvable_host_warns_once_and_the_server_keeps_serving(self):
        logs = capture_logs(self)
        service, url = start_edge(self)
        pusher = self.start("statsd.invalid", 8125, metrics=service.metrics)
        yield wait_for(lambda: pusher.failing is not None)
        for _ in range(20):
            before = pusher.failures
            yield self.push_and_wait(pusher, lambda: pusher.failures > before)
        code, _, _ = yield fetch(url + "/health")
        self.assertEqual(code, 200)
        warnings = levels(logs, "warn")
        self.assertEqual(len(warnings), 1)
        self.assertIn("statsd.invalid", warnings[0]["reason"])
        self.assertEqual(pusher.pushes, 0)

    @defer.inlineCallbacks
    def test_tcp_down_backs_off_warns_once_then_reconnects_and_catches_up_counters(self):
        logs = capture_logs(self)
        port = free_port(socket.SOCK_STREAM)
        pusher = self.start("127.0.0.1", port, "TCP")
        delays = []
        for attempt in range(10):
            if attempt:
                self.clock.advance(delays[-1])  # pushes due meanwhile are dropped; retry
            before = pusher.failures
            yield wait_for(lambda: pusher.failures > before)
            delays.append(pusher._retry.getTime() - self.clock.seconds())
            self.fixture.state["sessions_hosted_total"] += 1  # counted while StatsD is away
        self.assertLess(delays[0], 3)
        self.assertGreaterEqual(delays[-1], 60)  # exponential back-off, capped near a minute
        self.assertEqual(len(levels(logs, "warn")), 1)
        self.assertIn("cannot connect", levels(logs, "warn")[0]["reason"])

        factory = TcpStatsd()
        listening = reactor.listenTCP(port, factory, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        self.clock.advance(pusher._retry.getTime() - self.clock.seconds())
        yield wait_for(lambda: factory.connections)
        yield self.push_and_wait(pusher, lambda: factory.lines)
        self.assertEqual(sum_counter(factory.lines, "codetogether.sessions_hosted"), 20)
        recovered = [e for e in levels(logs, "info") if "works again" in e["log_format"]]
        self.assertEqual(len(recovered), 1)
        self.assertEqual(len(levels(logs, "warn")), 1)

    def test_a_peer_that_does_not_read_makes_pushes_drop_not_queue(self):
        logs = capture_logs(self)
        self.clock = Clock()
        fixture = Fixture()
        pusher = StatsdPusher(reactor, fixture.metrics, "127.0.0.1", 1, protocol="TCP",
                              interval=INTERVAL, clock=self.clock)
        pusher.running = True
        stream = _Stream(pusher)
        stream.makeConnection(StringTransport())
        pusher._stream = stream
        pusher.push()
        sent = len(stream.transport.value())
        self.assertGreater(sent, 0)
        stream.pauseProducing()  # the transport's buffer is full
        for _ in range(50):
            pusher.push()
        self.assertEqual(len(stream.transport.value()), sent)
        self.assertEqual(len(levels(logs, "warn")), 1)
        fixture.state["sessions_hosted_total"] = 25
        stream.resumeProducing()
        pusher.push()
        self.assertIn(b"codetogether.sessions_hosted:15|c", stream.transport.value())
        self.assertIsNone(pusher.failing)


class EdgeSettingsTests(unittest.TestCase):
    """The ``ctedge`` settings start the pusher: CT_METRICS_STATSD_* and CT_METRICS_INTERVAL."""

    timeout = 30

    @defer.inlineCallbacks
    def test_udp_from_settings(self):
        server, port = listen_udp(self)
        service, _ = start_edge(self, CT_METRICS_STATSD_HOST="127.0.0.1",
                                CT_METRICS_STATSD_PORT=port, CT_METRICS_INTERVAL="1")
        self.assertEqual(service.statsd.protocol, "UDP")
        yield wait_for(lambda: latest(server.lines, "codetogether.sessions_active"))
        self.assertEqual(latest(server.lines, "codetogether.sessions_active"), "0|g")
        self.assertEqual(latest(server.lines, "codetogether.client_downloads.intellij"), "0|c")

    @defer.inlineCallbacks
    def test_tcp_from_settings(self):
        factory = TcpStatsd()
        listening = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        service, _ = start_edge(self, CT_METRICS_STATSD_HOST="localhost",
                                CT_METRICS_STATSD_PORT=listening.getHost().port,
                                CT_METRICS_STATSD_PROTOCOL="TCP", CT_METRICS_INTERVAL="1")
        yield wait_for(lambda: latest(factory.lines, "codetogether.users_online"))
        self.assertEqual(latest(factory.lines, "codetogether.users_online"), "0|g")
        yield service.stopService()
        yield wait_for(lambda: not factory.connections)

    def test_no_statsd_host_no_pusher(self):
        service, _ = start_edge(self)
        self.assertIsNone(service.statsd)
