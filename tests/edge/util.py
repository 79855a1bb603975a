"""Helpers: run an edge in this test's reactor on an ephemeral loopback port; open a
session with a host and guests; wait for a condition (bounded); raw websocket bytes."""

from __future__ import annotations

import base64
import itertools
import os
import struct

from twisted.internet import defer, reactor, task

from ct.client.session import SessionClient
from ct.edge import tap

BASE_ENV = {
    "CT_HTTP_LISTEN": "tcp:0:interface=127.0.0.1",
    "CT_PROBE_INTERVAL": "0",
    "CT_TEAM_SECRET": "test-team-secret",
}


def start_edge(case, **env):
    """Start an edge service; stop it at the end of ``case``. Returns ``(service, base_url)``."""
    options = tap.Options(environ={**BASE_ENV, **{k: str(v) for k, v in env.items()}})
    options.parseOptions([])
    service = tap.makeService(options, reactor)
    service.startService()
    case.addCleanup(service.stopService)
    port = service.listening.ports["HTTP"].getHost().port
    return service, f"http://127.0.0.1:{port}"


def sleep(seconds: float) -> defer.Deferred:
    return task.deferLater(reactor, seconds, lambda: None)


@defer.inlineCallbacks
def wait_for(predicate, timeout: float = 10.0, step: float = 0.01):
    """Poll ``predicate`` until true (bounded); fail the test on time-out."""
    waited = 0.0
    while not predicate():
        if waited >= timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        yield sleep(step)
        waited += step


@defer.inlineCallbacks
def close_all(clients):
    for c in clients:
        if c._proto is not None:
            c._over = True
            c._proto.transport.loseConnection()
    yield wait_for(lambda: all(c._proto is None for c in clients), timeout=5)


@defer.inlineCallbacks
def host_and_guests(case, url: str, guests=("bob",), *, host: str = "alice", frames=None,
                    title: str | None = None, **options):
    """``host`` hosts a session at ``url``; each of ``guests`` (names) joins it by its link.

    ``frames`` maps a name to that client's ``on_frame`` callback; ``options`` go to every
    :class:`SessionClient`. Every client is closed at the end of ``case``. Fires with
    ``[host, *guests]``.
    """
    frames = frames or {}
    owner = SessionClient(reactor, url, host, on_frame=frames.get(host), **options)
    clients = [owner]
    case.addCleanup(close_all, clients)  # the guests too, as they join
    yield owner.host(title=title)
    for name in guests:
        guest = SessionClient.from_link(reactor, str(owner.link), name,
                                        on_frame=frames.get(name), **options)
        yield guest.join_link()
        clients.append(guest)
    return clients


def stream_frames(case, client, total: int, per_tick: int, interval: float) -> None:
    """``client`` sends ``b"good-0"`` .. ``b"good-<total - 1>"``, ``per_tick`` frames every
    ``interval`` seconds (a well-behaved stream); stopped at the end of ``case``."""
    sent = iter(range(total))

    def tick():
        for n in itertools.islice(sent, per_tick):
            client.send(b"good-%d" % n)
    loop = task.LoopingCall(tick)
    loop.start(interval)
    case.addCleanup(lambda: loop.running and loop.stop())


def masked_frame(first_byte: int, payload: bytes, length: int | None = None) -> bytes:
    """A client frame: ``first_byte`` (FIN, RSV, opcode), masked ``payload`` (< 64 KiB
    unless only the header is sent: ``length`` then claims a larger size)."""
    length = len(payload) if length is None else length
    if length < 126:
        header = bytes([first_byte, 0x80 | length])
    elif length < 1 << 16:
        header = bytes([first_byte, 0x80 | 126]) + struct.pack(">H", length)
    else:
        header = bytes([first_byte, 0x80 | 127]) + struct.pack(">Q", length)
    mask = os.urandom(4)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def upgrade_request(path: str = "/ws/session") -> bytes:
    """A client's websocket opening handshake for ``path``."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n").encode()
