"""Hardening of the edge's websocket layer, against real ``twistd ctedge`` processes.

Findings of the outside review: the client address (1), permessage-deflate offers from
real clients (2), deeply nested JSON (11) and the log under a flood of bad input (29).
Misbehaving clients use the independent ``websockets`` library in a thread; well-behaved
ones are the reference client, Autobahn's client and Node's ``ws`` in its own process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateResponse,
    PerMessageDeflateResponseAccept,
)
from twisted.internet import defer, protocol, reactor, threads
from twisted.internet.task import Clock
from twisted.logger import Logger, capturedLogs
from twisted.trial import unittest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from ct.common.logthrottle import LogThrottle
from ct.protocol.errors import ProtocolError
from ct.protocol.wire import decode_control, encode_control, encode_upstream
from tests.edge.util import host_and_guests, masked_frame, stream_frames, wait_for
from tests.procutil import Daemon

NODE_DIR = Path(__file__).resolve().parent / "node"
EDGE_ENV = {"CT_HTTP_LISTEN": "tcp:0:interface=127.0.0.1", "CT_PROBE_INTERVAL": "0"}
NESTED_8K = b"[" * 8000  # the review's unauthenticated 8 KB control message


def start_daemon(case, **env) -> tuple[Daemon, str]:
    """A real ``twistd ctedge`` on an ephemeral loopback port; stopped after ``case``."""
    edge = Daemon("ctedge", {**EDGE_ENV, **{k: str(v) for k, v in env.items()}})
    case.addCleanup(edge.stop)
    return edge, f"127.0.0.1:{edge.port('HTTP')}"


def host_message(name: str = "mallory", **extra) -> str:
    return json.dumps({"type": "host", "v": 1, "name": name, **extra})


class Peer:
    """One ``websockets`` connection in a thread: send, then read replies until closed."""

    def __init__(self, url: str, source: str = "127.0.0.1", forwarded_for: str | None = None):
        headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else None
        self.ws = connect(url, proxy=None, compression=None, max_size=None, open_timeout=5,
                          close_timeout=2, source_address=(source, 0),
                          additional_headers=headers).__enter__()  # closed by close()

    def ask(self, message, timeout: float = 5.0) -> dict:
        """Send ``message``; the next text reply (a ``TimeoutError`` if none in time)."""
        self.ws.send(message)
        while True:
            reply = self.ws.recv(timeout=timeout)
            if isinstance(reply, str):
                return json.loads(reply)

    def until_closed(self, timeout: float = 5.0) -> tuple[list, int | None, str | None]:
        """Replies until the edge closes: ``(replies, close code, reason)``; fails on time-out."""
        replies = []
        try:
            while True:
                reply = self.ws.recv(timeout=timeout)
                replies.append(json.loads(reply) if isinstance(reply, str) else reply)
        except ConnectionClosed as e:
            return replies, (e.rcvd.code if e.rcvd else None), (e.rcvd.reason if e.rcvd else None)

    def close(self) -> None:
        self.ws.close()


def rejected(url: str, messages, source: str = "127.0.0.1", forwarded_for: str | None = None):
    """Send ``messages`` on a new connection; ``(last error reply, close code, reason)``."""
    peer = Peer(url, source, forwarded_for)
    try:
        for m in messages:
            peer.ws.send(m)
        replies, code, reason = peer.until_closed()
    finally:
        peer.close()
    errors = [r for r in replies if isinstance(r, dict) and r.get("type") == "error"]
    return (errors[-1] if errors else None), code, reason


def log_lines(edge: Daemon, pattern: str) -> list[str]:
    return [line for line in edge.log().splitlines() if re.search(pattern, line)]


# ------------------------------------------------------------------ finding 1


class ClientAddressTests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def test_finding_1_session_cap_per_real_client_address_and_trusted_forwarded_for(self):
        edge, hostport = start_daemon(self, CT_MAX_SESSIONS_PER_HOST=2,
                                      CT_TRUSTED_PROXIES="127.0.0.3/32")
        url = f"ws://{hostport}/ws/session"

        def scenario():
            kept, out = [], {}

            def host(source, forwarded=None):
                peer = Peer(url, source, forwarded)
                kept.append(peer)
                return peer.ask(host_message())

            try:
                # Two sessions from 127.0.0.2 fill its quota; the third is refused and named.
                out["a"] = [host("127.0.0.2")["type"] for _ in range(2)]
                out["a-third"] = rejected(url, [host_message()], "127.0.0.2")
                # 127.0.0.2 is no trusted proxy: its X-Forwarded-For changes nothing.
                out["a-forged"] = rejected(url, [host_message()], "127.0.0.2", "198.51.100.9")
                # 127.0.0.3 is a trusted proxy: each forwarded client has its own quota.
                out["b"] = [host("127.0.0.3", "198.51.100.7")["type"] for _ in range(2)]
                out["b-third"] = rejected(url, [host_message()], "127.0.0.3", "198.51.100.7")
                out["c"] = host("127.0.0.3", "198.51.100.8")["type"]
                out["proxy-itself"] = host("127.0.0.3")["type"]
            finally:
                for peer in kept:
                    peer.close()
            return out

        out = yield threads.deferToThread(scenario)
        self.assertEqual(out["a"], ["hosted", "hosted"])
        self.assertEqual(out["b"], ["hosted", "hosted"])
        self.assertEqual(out["c"], "hosted")
        self.assertEqual(out["proxy-itself"], "hosted")
        for case, address in (("a-third", "127.0.0.2"), ("a-forged", "127.0.0.2"),
                              ("b-third", "198.51.100.7")):
            error, code, reason = out[case]
            self.assertEqual((code, reason), (4015, "too-many-sessions"), case)
            self.assertEqual(error["code"], "too-many-sessions", case)
            self.assertIn(f"{address} already hosts 2 sessions", error["message"], case)
        # The log names the client address: of each session hosted and each refusal.
        self.assertEqual(len(log_lines(edge, r"host from 127\.0\.0\.2: session")), 2)
        self.assertEqual(len(log_lines(edge, r"host from 198\.51\.100\.7: session")), 2)
        self.assertEqual(len(log_lines(edge, r"host from 198\.51\.100\.8: session")), 1)
        self.assertEqual(len(log_lines(edge, r"host from 127\.0\.0\.3: session")), 1)
        self.assertEqual(len(log_lines(
            edge, r"#warn\] closing 127\.0\.0\.2: too-many-sessions")), 2)
        self.assertEqual(len(log_lines(
            edge, r"#warn\] closing 198\.51\.100\.7: too-many-sessions")), 1)
        self.assertEqual(log_lines(edge, r"closing unknown|from unknown"), [])


# ------------------------------------------------------------------ finding 2


class _AutobahnPeer(WebSocketClientProtocol):
    """Autobahn's client; the factory says whether it offers permessage-deflate."""

    def onOpen(self):
        self.factory.opened.callback(self)

    def onMessage(self, payload, isBinary):
        self.factory.messages.put((isBinary, payload))

    def onClose(self, wasClean, code, reason):
        if not self.factory.opened.called:
            self.factory.opened.errback(ConnectionError(f"closed before opening: {code} {reason}"))
        self.factory.closed.callback(code)


def close_peer(peer: _AutobahnPeer) -> defer.Deferred:
    """Drop the connection; fires once it is gone (fails after 10 s)."""
    if not peer.factory.closed.called:
        peer.transport.loseConnection()
    return peer.factory.closed.addTimeout(10, reactor)


def accept_deflate_response(response: PerMessageDeflateResponse):
    return PerMessageDeflateResponseAccept(response)


def autobahn_client(url: str) -> defer.Deferred:
    """Autobahn's client with its default permessage-deflate offer; fires once open."""
    factory = WebSocketClientFactory(url, reactor=reactor)
    factory.protocol = _AutobahnPeer
    factory.noisy = False
    factory.opened = defer.Deferred()
    factory.closed = defer.Deferred()
    factory.messages = defer.DeferredQueue()
    # No Autobahn timers (txaio never cancels their shared DelayedCalls, which would leave
    # the reactor dirty): every wait in these tests has its own time-out instead.
    factory.setProtocolOptions(perMessageCompressionOffers=[PerMessageDeflateOffer()],
                               perMessageCompressionAccept=accept_deflate_response,
                               openHandshakeTimeout=0, closeHandshakeTimeout=0,
                               serverConnectionDropTimeout=0)
    from twisted.internet.endpoints import TCP4ClientEndpoint

    endpoint = TCP4ClientEndpoint(reactor, factory.host, factory.port, timeout=5)
    d = endpoint.connect(factory)
    d.addCallback(lambda _: factory.opened)
    return d.addTimeout(10, reactor)


@defer.inlineCallbacks
def next_message(peer: _AutobahnPeer, binary: bool, timeout: float = 10.0):
    """The next text (a dict) or binary message; fails the test after ``timeout``."""
    while True:
        is_binary, payload = yield peer.factory.messages.get().addTimeout(timeout, reactor)
        if is_binary == binary:
            return payload if binary else json.loads(payload)


@defer.inlineCallbacks
def data_payloads(peer: _AutobahnPeer, count: int):
    """The payloads of the next ``count`` data frames (after their 13-byte header)."""
    payloads = []
    for _ in range(count):
        frame = yield next_message(peer, binary=True)
        payloads.append(frame[13:])
    return payloads


class NodeClient(protocol.ProcessProtocol):
    """``node session_client.js`` as a child process; its JSON lines in a queue."""

    def __init__(self):
        self.lines = defer.DeferredQueue()
        self.ended = defer.Deferred()
        self._buffer = b""
        self.stderr = b""

    def outReceived(self, data):
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if line.strip():
                self.lines.put(json.loads(line))

    def errReceived(self, data):
        self.stderr += data

    def processEnded(self, reason):
        self.ended.callback(reason.value.exitCode)

    @defer.inlineCallbacks
    def next_event(self, event: str, timeout: float = 20.0):
        while True:
            line = yield self.lines.get().addTimeout(timeout, reactor)
            if line["event"] == event:
                return line
            if line["event"] in ("timeout", "closed", "error"):
                raise AssertionError(f"node client: {line}; stderr: {self.stderr!r}")


def node_ready() -> str:
    """``node`` with ``ws`` installed by ``npm ci`` from the committed lock file."""
    node = shutil.which("node")
    if node is None:
        raise unittest.SkipTest("node is not installed: the Node 'ws' client test needs it")
    if not (NODE_DIR / "node_modules" / "ws" / "package.json").exists():
        npm = shutil.which("npm")
        if npm is None:
            raise AssertionError("node is installed but npm is not: cannot install 'ws'")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True,
                       timeout=300, capture_output=True)
    return node


def spawn_node(case, node: str, url: str, first: str, send: int, expect: int) -> NodeClient:
    client = NodeClient()
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    process = reactor.spawnProcess(
        client, node, [node, "session_client.js", url, first, str(send), str(expect)],
        env=env, path=str(NODE_DIR))

    def stop():
        if not client.ended.called:
            process.signalProcess("KILL")
            return client.ended
    case.addCleanup(stop)
    return client


def raw_websocket(hostport: str, frames: bytes, offer_deflate: bool = False,
                  key: bool = True) -> tuple[str, bytes]:
    """Open a websocket by hand (optionally offering permessage-deflate, or without the
    required key), send ``frames``; returns the response head and what followed until the
    edge sent its close frame or closed the TCP connection (a socket time-out of 5 s fails
    the test)."""
    import base64
    import socket

    host, port = hostport.rsplit(":", 1)
    request = (f"GET /ws/session HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n")
    if key:
        request += f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
    if offer_deflate:
        request += "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request.encode() + b"\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        if head.startswith(b"HTTP/1.1 101 "):
            try:
                sock.sendall(frames)
            except OSError:
                pass  # closed while we wrote: what it sent is still readable
        for _ in range(100):
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            rest += chunk
            if close_code(rest) is not None:
                break  # the edge's close frame: enough (no need to answer and wait)
    return head.decode("latin-1"), rest


def close_code(after: bytes) -> int | None:
    """The code of the close frame (unmasked, short) that ends ``after``, if any."""
    index = after.rfind(b"\x88")
    if index < 0 or len(after) < index + 4:
        return None
    return int.from_bytes(after[index + 2:index + 4], "big")


def compressed_host_frame() -> bytes:
    """A ``host`` message deflated and marked compressed (RSV1), as RFC 7692 would."""
    import zlib

    deflate = zlib.compressobj(wbits=-15)
    payload = deflate.compress(host_message().encode()) + deflate.flush(zlib.Z_SYNC_FLUSH)
    return masked_frame(0xC1, payload[:-4])  # FIN, RSV1, text; without 00 00 ff ff


class CompressionOfferTests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def test_finding_2_deflate_offer_is_declined_and_a_compressed_frame_is_refused(self):
        _, hostport = start_daemon(self)
        head, after = yield threads.deferToThread(raw_websocket, hostport,
                                                  compressed_host_frame(), offer_deflate=True)
        self.assertTrue(head.startswith("HTTP/1.1 101 "), head)
        self.assertNotIn("sec-websocket-extensions", head.lower())
        # The edge answers the unnegotiated RSV1 bit with a close frame: 1002 protocol error.
        self.assertEqual(after[:1], b"\x88", after)
        self.assertEqual(close_code(after), 1002, after)

    @defer.inlineCallbacks
    def test_finding_2_autobahn_and_node_clients_offering_deflate_connect_and_exchange(self):
        node = node_ready()
        edge, hostport = start_daemon(self)
        url = f"ws://{hostport}/ws/session"

        # Autobahn's client (default deflate offer) hosts; Node's ws (defaults) joins.
        host = yield autobahn_client(url)
        self.addCleanup(close_peer, host)
        self.assertEqual(host.websocket_extensions_in_use, [])  # declined cleanly
        host.sendMessage(host_message("alice").encode(), False)
        hosted = yield next_message(host, binary=False)
        self.assertEqual(hosted["type"], "hosted", hosted)
        join = json.dumps({"type": "join", "v": 1, "session": hosted["session"],
                           "token": hosted["joinToken"], "name": "bob"})
        guest = spawn_node(self, node, url, join, send=5, expect=5)
        opened = yield guest.next_event("open")
        self.assertEqual(opened["extensions"], "")  # declined cleanly
        joined = yield guest.next_event("control")
        self.assertEqual(joined["message"]["type"], "joined", joined)
        # Frames both ways: Node's five reach the host, the host's five reach Node.
        got = yield data_payloads(host, 5)
        self.assertEqual(got, [b"node-%d" % i for i in range(5)])
        for i in range(5):
            host.sendMessage(encode_upstream(b"x" * 2000 + b"host-%d" % i), True)
        done = yield guest.next_event("done")
        self.assertEqual(done["received"], ["x" * 2000 + f"host-{i}" for i in range(5)])
        code = yield guest.ended.addTimeout(20, reactor)
        self.assertEqual(code, 0, guest.stderr)

        # And the other way round: Node hosts, Autobahn's client joins.
        node_host = spawn_node(self, node, url, host_message("carol"), send=3, expect=3)
        yield node_host.next_event("open")
        hosted = (yield node_host.next_event("control"))["message"]
        self.assertEqual(hosted["type"], "hosted", hosted)
        joiner = yield autobahn_client(url)
        self.addCleanup(close_peer, joiner)
        self.assertEqual(joiner.websocket_extensions_in_use, [])
        joiner.sendMessage(json.dumps({"type": "join", "v": 1, "session": hosted["session"],
                                       "token": hosted["joinToken"], "name": "dave"}).encode())
        joined = yield next_message(joiner, binary=False)
        self.assertEqual(joined["type"], "joined", joined)
        got = yield data_payloads(joiner, 3)
        self.assertEqual(got, [b"node-%d" % i for i in range(3)])
        for i in range(3):
            joiner.sendMessage(encode_upstream(b"dave-%d" % i), True)
        done = yield node_host.next_event("done")
        self.assertEqual(done["received"], [f"dave-{i}" for i in range(3)])
        code = yield node_host.ended.addTimeout(20, reactor)
        self.assertEqual(code, 0, node_host.stderr)
        self.assertEqual(log_lines(edge, r"Traceback|#critical|TypeError"), [])


# ------------------------------------------------------------------ findings 11 and 29


class NestedJSONTests(unittest.TestCase):
    timeout = 120

    def test_finding_11_control_depth_fits_real_messages(self):
        """The deepest message the edge sends (``ice-servers``) fits; one level more does not."""
        from ct.protocol.wire import MAX_CONTROL_DEPTH

        ice = {"type": "ice-servers", "iceServers": [{"urls": ["turn:127.0.0.1:3478"],
                                                     "username": "u", "credential": "c"}]}
        self.assertEqual(decode_control(encode_control(ice)), ice)
        limit = {"type": "x", "deep": json.loads("[" * (MAX_CONTROL_DEPTH - 1)
                                                 + "]" * (MAX_CONTROL_DEPTH - 1))}
        self.assertEqual(decode_control(encode_control(limit)), limit)
        for data in (NESTED_8K, b'{"type":"x","a":' + b"[" * MAX_CONTROL_DEPTH
                     + b"]" * MAX_CONTROL_DEPTH + b"}"):
            with self.assertRaises(ProtocolError) as caught:
                decode_control(data)
            self.assertEqual(caught.exception.code.name, "bad-message")
            self.assertIn("nested more than", caught.exception.message)

    @defer.inlineCallbacks
    def test_finding_11_deeply_nested_json_gets_bad_message_and_one_warning(self):
        edge, hostport = start_daemon(self)
        url = f"ws://{hostport}/ws/session"
        presence = f"ws://{hostport}/ws/presence"

        def scenario():
            out = {"first": rejected(url, [NESTED_8K.decode()]),
                   "presence": rejected(presence, [NESTED_8K.decode()])}
            peer = Peer(url)
            try:
                out["hosted"] = peer.ask(host_message())["type"]
                peer.ws.send('{"type":"ack","seq":' + "[" * 500 + "]" * 500 + "}")
                replies, code, reason = peer.until_closed()
            finally:
                peer.close()
            out["after-host"] = (replies[-1], code, reason)
            return out

        out = yield threads.deferToThread(scenario)
        self.assertEqual(out["hosted"], "hosted")
        for case in ("first", "presence", "after-host"):
            error, code, reason = out[case]
            self.assertEqual((code, reason), (4000, "bad-message"), case)
            self.assertEqual(error["code"], "bad-message", case)
            self.assertIn("nested more than 8 levels deep", error["message"], case)
        yield wait_for(lambda: len(log_lines(edge, r"closing 127\.0\.0\.1: bad-message")) == 3)
        self.assertEqual(len(log_lines(edge, r"#warn\] closing 127\.0\.0\.1: bad-message "
                                             r"\(control message nested more than 8")), 3)
        self.assertEqual(log_lines(edge, r"Traceback|#critical|RecursionError"), [])


class LogThrottleTests(unittest.TestCase):
    def test_finding_29_log_throttle_limits_lines_and_summarises_the_rest(self):
        clock = Clock()
        throttle = LogThrottle(Logger(namespace="test.throttle"), clock, limit=3, interval=60,
                               what="client rejections")
        with capturedLogs() as events:
            logged = [throttle.warn("bad input from {peer}", peer=i) for i in range(10)]
            clock.advance(59)
            logged.append(throttle.warn("bad input from {peer}", peer=10))
            clock.advance(1)
            logged.append(throttle.warn("bad input from {peer}", peer=11))
        self.assertEqual(logged, [True] * 3 + [False] * 8 + [True])
        lines = [e["log_format"].format(**e) for e in events]
        self.assertEqual(lines, ["bad input from 0", "bad input from 1", "bad input from 2",
                                 "suppressed 8 similar client rejections in the last 60 s",
                                 "bad input from 11"])
        self.assertTrue(all(e["log_level"].name == "warn" for e in events))
        self.assertEqual(throttle.suppressed_total, 8)

    def test_finding_29_log_throttle_limit_0_logs_every_line(self):
        throttle = LogThrottle(Logger(namespace="test.throttle"), Clock(), limit=0)
        with capturedLogs() as events:
            for i in range(50):
                throttle.warn("line {i}", i=i)
        self.assertEqual(len(events), 50)


class FloodTests(unittest.TestCase):
    timeout = 180

    @defer.inlineCallbacks
    def test_finding_29_flood_of_bad_messages_bounded_log_and_lossless_stream(self):
        edge, hostport = start_daemon(self, CT_TEAM_SECRET="flood-team-secret",
                                      CT_MAX_FRAME_BYTES="65536")
        base = f"http://{hostport}"
        url = f"ws://{hostport}/ws/session"
        presence = f"ws://{hostport}/ws/presence"

        # A well-behaved session (the reference client) streams throughout.
        received = []
        host, guest = yield host_and_guests(self, base, frames={
            "bob": lambda f: received.append(f.data)})
        total = 400
        stream_frames(self, host, total, per_tick=2, interval=0.01)

        nested_host = json.dumps({"type": "host", "v": 1, "name": "m",
                                  "title": json.loads("[" * 60 + "]" * 60)})
        bad = [
            (url, [NESTED_8K.decode()]),
            (url, [nested_host]),
            (url, ["{garbage"]),
            (url, [b"\x00\x01binary-first"]),
            (url, [json.dumps({"type": "x" * 8000})]),  # quoted in the error message
            (presence, ['{"type":"presence","v":1,"team":' + "{\"a\":" * 300 + "1" + "}" * 300
                        + "}"]),
        ]
        rounds = 80

        def flood():
            codes = {}
            for i in range(rounds):
                for target, messages in bad:
                    _, code, reason = rejected(target, messages)
                    codes[(code, reason)] = codes.get((code, reason), 0) + 1
            return codes

        raw = [  # what Autobahn itself refuses: framing, UTF-8, size, the upgrade request
            (dict(frames=compressed_host_frame(), offer_deflate=True), "close 1002"),
            (dict(frames=masked_frame(0x81, b"\xff\xfe not UTF-8")), "close 1007"),
            (dict(frames=masked_frame(0x82, b"", length=1 << 20)), "close 1009"),
            (dict(frames=b"", key=False), "HTTP/1.1 400"),
        ]

        def raw_flood():
            outcomes = {}
            for i in range(rounds):
                for kwargs, _ in raw:
                    head, after = raw_websocket(hostport, **kwargs)
                    outcome = (f"close {close_code(after)}" if head.startswith("HTTP/1.1 101")
                               else head.split("\r\n")[0][:12])
                    outcomes[outcome] = outcomes.get(outcome, 0) + 1
            return outcomes

        codes = yield threads.deferToThread(flood)
        self.assertEqual(codes, {(4000, "bad-message"): rounds * len(bad)})
        outcomes = yield threads.deferToThread(raw_flood)
        self.assertEqual(outcomes, {expected: rounds for _, expected in raw})

        yield wait_for(lambda: len(received) == total, timeout=60)
        self.assertEqual(received, [b"good-%d" % i for i in range(total)])
        self.assertEqual(guest.resumes + host.resumes, 0)
        # 800 rejections: CT_BAD_INPUT_LOG_LIMIT (20) warning lines, no traceback, and
        # nothing from Autobahn itself.
        self.assertEqual(log_lines(edge, r"Traceback|#critical|RecursionError"), [])
        self.assertEqual(log_lines(edge, r"\[autobahn"), [])
        warnings = log_lines(edge, r"#warn\]")
        self.assertEqual(len(warnings), 21, "\n".join(warnings))
        self.assertIn("no dashboard password configured", warnings[0])
        warnings = warnings[1:]
        self.assertTrue(all("ct.edge.ws#warn] closing 127.0.0.1: bad-message" in line
                            for line in warnings), "\n".join(warnings))
        self.assertLess(max(len(line) for line in warnings), 400)
        self.assertLess(len(edge.log()), 64 * 1024)
