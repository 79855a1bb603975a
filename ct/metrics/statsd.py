"""StatsD push: the same metrics as ``/metrics``, sent every interval over UDP or TCP.

A small Twisted client of our own (txstatsd does not build on Python 3). Gauges go out as
``name:value|g``; counters as the increase since the last successful push, ``name:delta|c``.
The pusher never blocks or fails the server: the host name is resolved through the reactor's
resolver, UDP refusals and TCP connect failures only change its state, TCP reconnects with
back-off, nothing queues while the peer is away (a push that cannot go out is dropped; the
counters' increase is carried to the next push that goes out). It logs one warning when
pushing starts failing and one info line when it works again.
"""

from __future__ import annotations

from typing import Iterable

from twisted.application import service
from twisted.application.internet import backoffPolicy
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IResolutionReceiver
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from ct.metrics.model import COUNTER, INFO, Family, MetricSet, statsd_safe

_log = Logger()

DEFAULT_PREFIX = "codetogether."
DEFAULT_PORT = 8125
DEFAULT_INTERVAL = 10.0
UDP_PACKET_BYTES = 1432  # fits one Ethernet frame with IPv4/IPv6 and UDP headers
CONNECT_TIMEOUT = 5.0


# ---------------------------------------------------------------- formatting (pure)


def _fmt(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


def format_lines(families: Iterable[Family], prefix: str,
                 sent_totals: dict[str, float]) -> tuple[list[str], dict[str, float]]:
    """StatsD lines for ``families``; returns ``(lines, totals)``.

    ``sent_totals`` maps counter names to the totals already pushed; counters are sent as the
    increase since then (a total that went down, after a restart, is sent whole). Pass the
    returned ``totals`` next time once the lines went out. Info metrics are not sent.
    """
    lines: list[str] = []
    totals: dict[str, float] = dict(sent_totals)
    for family in families:
        if family.kind == INFO:
            continue
        base = prefix + family.definition.statsd_name
        for label_values, value in family.samples:
            name = ".".join([base] + [statsd_safe(v) for v in label_values])
            if family.kind == COUNTER:
                previous = sent_totals.get(name, 0)
                delta = value - previous if value >= previous else value
                totals[name] = value
                lines.append(f"{name}:{_fmt(delta)}|c")
            else:
                if value < 0:  # a leading sign means "change by" in StatsD: reset first
                    lines.append(f"{name}:0|g")
                lines.append(f"{name}:{_fmt(value)}|g")
    return lines, totals


def pack_datagrams(lines: Iterable[str], size: int = UDP_PACKET_BYTES) -> list[bytes]:
    """Newline-separated lines grouped into datagrams of at most ``size`` bytes."""
    packets: list[bytes] = []
    current = b""
    for line in lines:
        data = line.encode("utf-8")
        if current and len(current) + 1 + len(data) > size:
            packets.append(current)
            current = b""
        current = current + b"\n" + data if current else data
    if current:
        packets.append(current)
    return packets


# ---------------------------------------------------------------- transports


@implementer(IResolutionReceiver)
class _Addresses:
    def __init__(self):
        self.addresses = []
        self.done = defer.Deferred()

    def resolutionBegan(self, resolution):
        pass

    def addressResolved(self, address):
        self.addresses.append(address)

    def resolutionComplete(self):
        self.done.callback(self.addresses)


class _Datagrams(DatagramProtocol):
    """The sending socket. An ICMP "port unreachable" shows up either as
    ``connectionRefused`` or (epoll reports it as an error event) as the port closing."""

    def __init__(self, pusher: "StatsdPusher"):
        self.pusher = pusher

    def datagramReceived(self, data, addr):
        pass

    def connectionRefused(self):
        self.pusher._udp_refused(self)

    def doStop(self):
        super().doStop()
        self.pusher._udp_refused(self, closed=True)


class _Stream(Protocol):
    """A TCP connection to StatsD; a push producer so a slow peer pauses our writes."""

    def __init__(self, pusher: "StatsdPusher"):
        self.pusher = pusher
        self.paused = False
        self.lost = defer.Deferred()

    def connectionMade(self):
        self.transport.registerProducer(self, True)

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False

    def stopProducing(self):
        self.paused = True

    def dataReceived(self, data):
        pass

    def connectionLost(self, reason):
        self.pusher._tcp_lost(self, reason)
        self.lost.callback(None)


# ---------------------------------------------------------------- the pusher


class StatsdPusher(service.Service):
    """Pushes ``metrics`` to ``host:port`` every ``interval`` seconds.

    ``reactor`` does the networking (resolver, UDP, TCP); ``clock`` schedules pushes and
    reconnects (defaults to ``reactor``; tests pass a ``Clock``). ``failures`` counts failed
    attempts, ``pushes`` pushes that went out; ``failing`` is the reason while failing.
    """

    def __init__(self, reactor, metrics: MetricSet, host: str,
                 port: int = DEFAULT_PORT, protocol: str = "UDP", prefix: str = DEFAULT_PREFIX,
                 interval: float = DEFAULT_INTERVAL,
                 clock=None, retry_policy=None, packet_size: int = UDP_PACKET_BYTES):
        protocol = protocol.upper()
        if protocol not in ("UDP", "TCP"):
            raise ValueError(f"StatsD protocol must be UDP or TCP, not {protocol!r}")
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        self.metrics = metrics
        self.host = host
        self.port = port
        self.protocol = protocol
        self.prefix = prefix
        self.interval = interval
        self.packet_size = packet_size
        self.retry_policy = retry_policy or backoffPolicy(initialDelay=1.0, maxDelay=60.0,
                                                          factor=2.0)
        self.failing: str | None = None
        self.failures = 0
        self.pushes = 0
        self._totals: dict[str, float] = {}
        self._loop = LoopingCall(self.push)
        self._loop.clock = self.clock
        # UDP
        self._udp_port = None
        self._udp_proto: _Datagrams | None = None
        self._address: tuple[str, int] | None = None
        self._resolving = False
        self._udp_sent = False
        self._udp_was_refused = False
        # TCP
        self._stream: _Stream | None = None
        self._connecting: defer.Deferred | None = None
        self._retry = None
        self._attempts = 0

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port} ({self.protocol})"

    # -- service

    def startService(self):
        super().startService()
        _log.info("StatsD: pushing metrics to {target} every {interval} s, prefix {prefix!r}",
                  target=self.target, interval=self.interval, prefix=self.prefix)
        if self.protocol == "UDP":
            self._resolve()
        else:
            self._connect()
        self._loop.start(self.interval, now=False)

    def stopService(self):
        super().stopService()
        if self._loop.running:
            self._loop.stop()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._connecting is not None:
            self._connecting.cancel()
        waits = []
        if self._stream is not None:
            waits.append(self._stream.lost)
            self._stream.transport.loseConnection()
        if self._udp_port is not None:
            waits.append(defer.maybeDeferred(self._close_udp))
        return defer.gatherResults(waits)

    # -- state and its two log lines

    def _fail(self, reason: str) -> None:
        self.failures += 1
        if self.failing is None:  # later failures are only counted: twistd logs debug too
            _log.warn("StatsD push to {target} is failing: {reason}. The server keeps running; "
                      "pushes are retried quietly and one message will say when they work "
                      "again.", target=self.target, reason=reason)
        self.failing = reason

    def _ok(self) -> None:
        if self.failing is not None:
            _log.info("StatsD push to {target} works again (after {failures} failed attempts)",
                      target=self.target, failures=self.failures)
            self.failing = None

    # -- pushing

    def push(self) -> None:
        """Send the current values now (also called every interval)."""
        try:
            if self.protocol == "UDP":
                self._udp_checkpoint()
            lines, totals = format_lines(self.metrics.read(), self.prefix, self._totals)
            if self._send(lines):
                self._totals = totals
                self.pushes += 1
        except Exception:
            _log.failure("StatsD push to {target} failed unexpectedly", target=self.target)

    def _send(self, lines: list[str]) -> bool:
        if self.protocol == "UDP":
            return self._send_udp(lines)
        return self._send_tcp(lines)

    # -- UDP

    def _resolve(self) -> None:
        if self._resolving:
            return
        self._resolving = True
        receiver = _Addresses()
        self.reactor.nameResolver.resolveHostName(receiver, self.host, self.port,
                                                  transportSemantics="UDP")
        receiver.done.addCallback(self._resolved)
        receiver.done.addErrback(self._resolve_failed)

    def _resolve_failed(self, failure) -> None:
        self._resolving = False
        if self.running:
            self._fail(f"cannot resolve {self.host!r}: {failure.getErrorMessage()}")

    def _resolved(self, addresses) -> None:
        self._resolving = False
        if not self.running:
            return
        if not addresses:
            self._fail(f"cannot resolve host name {self.host!r}")
            return
        address = (addresses[0].host, addresses[0].port)
        if address != self._address:
            self._close_udp()
            self._address = address

    def _open_udp(self) -> bool:
        """A socket connected to the resolved address (connected: so refusals are reported)."""
        host, port = self._address
        proto = _Datagrams(self)
        try:
            udp = self.reactor.listenUDP(0, proto, interface="::" if ":" in host else "0.0.0.0")
        except Exception as e:
            self._fail(f"cannot open a UDP socket: {e}")
            return False
        self._udp_port, self._udp_proto = udp, proto
        try:
            udp.connect(host, port)
        except Exception as e:
            self._close_udp()
            self._fail(f"cannot send to {host}:{port}: {e}")
            return False
        return True

    def _close_udp(self):
        udp, self._udp_port, self._udp_proto = self._udp_port, None, None
        if udp is not None:
            return udp.stopListening()
        return None

    def _udp_checkpoint(self) -> None:
        """Before each push: a push that went out and drew no refusal means we work again."""
        if self._udp_sent and not self._udp_was_refused:
            self._ok()
        elif self._address is None or self._udp_was_refused:
            self._resolve()  # not resolved yet, or refused: look the name up again
        self._udp_sent = False
        self._udp_was_refused = False

    def _udp_refused(self, proto: _Datagrams, closed: bool = False) -> None:
        if proto is not self._udp_proto:
            return  # a socket we closed ourselves
        if closed:
            self._udp_port = self._udp_proto = None  # the reactor dropped it: reopen next push
        self._udp_was_refused = True
        self._fail(f"{self._address[0]}:{self._address[1]} refused the datagrams "
                   f"(nothing listening on that UDP port?)")

    def _send_udp(self, lines: list[str]) -> bool:
        if self._address is None:
            return False  # resolving, or the name does not resolve (already reported)
        if self._udp_port is None and not self._open_udp():
            return False
        try:
            for packet in pack_datagrams(lines, self.packet_size):
                if self._udp_port is None:  # refused during this push
                    return False
                self._udp_port.write(packet)
        except Exception as e:
            self._fail(f"sending to {self._address[0]}:{self._address[1]} failed: {e}")
            return False
        self._udp_sent = True
        return True

    # -- TCP

    def _connect(self) -> None:
        self._retry = None
        if not self.running or self._stream is not None or self._connecting is not None:
            return
        endpoint = HostnameEndpoint(self.reactor, self.host, self.port, timeout=CONNECT_TIMEOUT)
        d = self._connecting = endpoint.connect(Factory.forProtocol(lambda: _Stream(self)))
        d.addCallbacks(self._tcp_connected, self._tcp_connect_failed)

    def _tcp_connected(self, stream: _Stream) -> None:
        self._connecting = None
        self._attempts = 0
        if not self.running:
            stream.transport.loseConnection()
            return
        self._stream = stream
        self._ok()

    def _tcp_connect_failed(self, failure) -> None:
        self._connecting = None
        if not self.running:
            return
        self._fail(f"cannot connect: {failure.getErrorMessage()}")
        self._schedule_reconnect()

    def _tcp_lost(self, stream: _Stream, reason) -> None:
        if stream is not self._stream:
            return
        self._stream = None
        if self.running:
            self._fail(f"connection lost: {reason.getErrorMessage()}")
            self._schedule_reconnect()

    def _schedule_reconnect(self) -> None:
        self._attempts += 1
        delay = self.retry_policy(self._attempts)
        self._retry = self.clock.callLater(delay, self._connect)

    def _send_tcp(self, lines: list[str]) -> bool:
        stream = self._stream
        if stream is None:
            return False  # connecting, or waiting to retry: the failure is already known
        if stream.paused:  # the peer does not keep up: drop rather than queue without bound
            self._fail("the StatsD server does not read fast enough; dropping pushes")
            return False
        stream.transport.write("".join(line + "\n" for line in lines).encode("utf-8"))
        self._ok()
        return True
