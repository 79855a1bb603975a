"""Helpers for the metrics tests: HTTP fetches, StatsD listeners, log capture."""

from __future__ import annotations

from twisted.internet import defer, protocol, reactor
from twisted.logger import globalLogPublisher
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers


@defer.inlineCallbacks
def fetch(url: str, method: bytes = b"GET", headers: dict | None = None):
    """``(code, headers, body)`` of one request on a fresh, non-persistent connection."""
    agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
    hdrs = Headers({k.encode(): [v.encode()] for k, v in (headers or {}).items()})
    response = yield agent.request(method, url.encode(), hdrs)
    body = yield readBody(response)
    return response.code, response.headers, body


class UdpStatsd(protocol.DatagramProtocol):
    """A StatsD server stand-in: collects the lines it receives over UDP."""

    def __init__(self):
        self.lines: list[str] = []
        self.datagrams = 0

    def datagramReceived(self, data, addr):
        self.datagrams += 1
        self.lines.extend(data.decode("utf-8").split("\n"))


class TcpStatsdProtocol(protocol.Protocol):
    def connectionMade(self):
        self.factory.connections.append(self)
        self._buffer = b""

    def dataReceived(self, data):
        self._buffer += data
        *complete, self._buffer = self._buffer.split(b"\n")
        self.factory.lines.extend(line.decode("utf-8") for line in complete)

    def connectionLost(self, reason):
        self.factory.connections.remove(self)


class TcpStatsd(protocol.Factory):
    protocol = TcpStatsdProtocol

    def __init__(self):
        self.lines: list[str] = []
        self.connections: list[TcpStatsdProtocol] = []


def listen_udp(case, port: int = 0) -> tuple[UdpStatsd, int]:
    server = UdpStatsd()
    listening = reactor.listenUDP(port, server, interface="127.0.0.1")
    case.addCleanup(listening.stopListening)
    return server, listening.getHost().port


def latest(lines: list[str], name: str) -> str | None:
    """The value part of the last line for ``name`` (``"3|g"``)."""
    found = None
    for line in lines:
        key, _, value = line.partition(":")
        if key == name:
            found = value
    return found


def sum_counter(lines: list[str], name: str) -> float:
    total = 0.0
    for line in lines:
        key, _, value = line.partition(":")
        if key == name:
            number, kind = value.split("|")
            assert kind == "c", line
            total += float(number)
    return total


def capture_logs(case, namespace_prefix: str = "ct.metrics"):
    """Log events from ``namespace_prefix`` during the test, as a list."""
    events = []

    def observer(event):
        if event.get("log_namespace", "").startswith(namespace_prefix):
            events.append(event)

    globalLogPublisher.addObserver(observer)
    case.addCleanup(globalLogPublisher.removeObserver, observer)
    return events


def levels(events, name: str) -> list[dict]:
    return [e for e in events if e["log_level"].name == name]
