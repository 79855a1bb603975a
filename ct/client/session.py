"""Reference client for protocol v1: host, join, send, receive, resume (Twisted + Autobahn).

A :class:`SessionClient` is one participant. It encrypts what it sends (when it has the
session key), keeps what the edge has not acknowledged, tracks the last sequence number
it received, and after an unexpected drop reconnects and resumes: the edge replays what
it missed and the client resends what the edge did not get. IDE plugin authors can read
this module as the protocol's worked example.
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.endpoints import clientFromString, wrapClientTLS
from twisted.internet.ssl import optionsForClientTLS
from twisted.logger import Logger

from ct.client.crypto import DecryptError, SessionKey
from ct.client.links import JoinLink, parse_link, websocket_url
from ct.common.logthrottle import LogThrottle
from ct.protocol.errors import BY_NAME
from ct.protocol.wire import (
    FLAG_TEXT,
    PROTOCOL_VERSION,
    decode_control,
    decode_downstream,
    encode_control,
    encode_upstream,
)

_log = Logger()

CLIENT_NAME = "ct-python-client/0.1"
# After a close the client resumes unless the close is final (see docs/protocol.md, "Which
# closes end the session for a client"): the edge keeps an away participant's seat for the
# resume window, and its answer to ``resume`` is the authority on whether the seat is still
# there. Final: the session or the seat is gone, the credentials are refused, another
# connection took over, or this client broke the protocol (resuming would repeat it).
FINAL_ERRORS = frozenset({
    "session-ended", "removed", "resume-expired", "forbidden", "superseded",
    "unsupported-version", "client-too-old", "bad-message",
})
# Websocket closes for this client's own protocol violations (bad framing, bad UTF-8,
# message too big, ...): the resent frames would only be refused again.
FINAL_CLOSE_CODES = frozenset({1002, 1003, 1007, 1008, 1009, 1010})
# Answers to a ``resume`` after which the client tries again (bounded by resume_attempts);
# any other refusal (not-found, resume-expired, forbidden, ...) ends the session for it.
RESUME_RETRY = frozenset({"closed", "rate-limited", "handshake-timeout", "shutting-down"})


def close_is_final(error_code: str | None, close_code: int | None) -> bool:
    """Whether a close of an established session connection ends the session for the client."""
    if error_code is not None:
        return error_code in FINAL_ERRORS
    return close_code in FINAL_CLOSE_CODES


@dataclass
class Frame:
    """A payload received from another participant."""

    sender: int
    seq: int
    data: bytes | str


class SessionEnded(Exception):
    """The session is over for this participant (ended, removed, resume refused)."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def connect_websocket(reactor, url: str, protocol_factory: Callable[[], WebSocketClientProtocol],
                      trust_all: bool = False, headers: dict[str, str] | None = None) -> Deferred:
    """Open a websocket to ``ws(s)://host:port/path``; fires with the protocol once open."""
    factory = WebSocketClientFactory(url, reactor=reactor, headers=headers or None)
    factory.protocol = protocol_factory
    factory.noisy = False
    factory.setProtocolOptions(autoPingInterval=20, autoPingTimeout=20, openHandshakeTimeout=10)
    host, port = factory.host, factory.port
    endpoint = clientFromString(reactor, f"tcp:host={_quote(host)}:port={port}:timeout=10")
    if factory.isSecure:
        if trust_all:
            from twisted.internet.ssl import CertificateOptions
            endpoint = wrapClientTLS(CertificateOptions(verify=False), endpoint)
        else:
            endpoint = wrapClientTLS(optionsForClientTLS(host), endpoint)
    opened = Deferred()
    factory.opened = opened

    def connected(proto):
        return opened

    def failed(f):
        if not opened.called:
            return f
        return opened

    d = endpoint.connect(factory)
    d.addCallbacks(connected, failed)
    return d


def _quote(text: str) -> str:
    return text.replace(":", r"\:")


class _ClientProtocol(WebSocketClientProtocol):
    owner = None

    def onOpen(self):
        opened = self.factory.opened
        if not opened.called:
            opened.callback(self)

    def onMessage(self, payload, isBinary):
        if self.owner is not None:
            try:
                self.owner._received(self, payload, isBinary)
            except Exception:
                _log.failure("client failed handling a message")

    def onClose(self, wasClean, code, reason):
        opened = self.factory.opened
        if not opened.called:
            opened.errback(ConnectionError(f"websocket closed before opening: {code} {reason}"))
        if self.owner is not None:
            self.owner._closed(self, code, reason)


class SessionClient:
    """One participant of one session."""

    def __init__(self, reactor, server: str, name: str, *, key: SessionKey | None = None,
                 client: str = CLIENT_NAME, auto_resume: bool = True,
                 resume_delays=(0.1, 0.25, 0.5, 1.0, 2.0), resume_attempts: int = 60,
                 ack_every: int = 128, trust_all_certs: bool = False,
                 on_frame: Callable[[Frame], None] | None = None,
                 on_resumed: Callable[[dict[str, Any]], None] | None = None):
        self.reactor = reactor
        self.server = server
        self.name = name
        self.key = key
        self.client = client
        self.auto_resume = auto_resume
        self.resume_delays = resume_delays
        self.resume_attempts = resume_attempts
        self.ack_every = ack_every
        self.trust_all = trust_all_certs
        self.on_frame = on_frame
        self.on_resumed = on_resumed  # called with each ``resumed`` reply (after the resend)
        self._bad_frames = LogThrottle(_log, reactor, limit=20, interval=60.0)
        self.frames: DeferredQueue = DeferredQueue()
        self.events: DeferredQueue = DeferredQueue()
        self.ended: Deferred = Deferred()  # fires with SessionEnded once the session is over
        self.session: str | None = None
        self.participant: int | None = None
        self.role: str | None = None
        self.join_token: str | None = None
        self.resume_token: str | None = None
        self.participants: dict[int, dict[str, Any]] = {}
        self.last_seq = 0
        self.acked_seq = 0
        self.sent = 0  # data frames handed to send()
        self.unacked: deque[tuple[int, bytes]] = deque()  # (index, frame) not yet acked by the edge
        self.resumes = 0
        self.resume_reports: list[dict[str, Any]] = []
        self.ice_servers: list[dict[str, Any]] | None = None
        self._proto: _ClientProtocol | None = None
        self._handshake: Deferred | None = None
        self._over = False
        self._leaving = False
        self._last_error: dict[str, Any] | None = None
        self._on_close: Deferred | None = None
        self._link_token: tuple[str, str] | None = None
        # ctstickiness: the same value on every request of this session keeps a load
        # balancer (without a locator) sending them all to one edge.
        self.stickiness: str | None = None

    # ------------------------------------------------------------ public API

    @property
    def link(self) -> JoinLink:
        return JoinLink(self.server, self.session, self.join_token,
                        self.key.to_text() if self.key else None, self.stickiness)

    def host(self, title: str | None = None, team: str | None = None,
             team_token: str | None = None, client_version: str | None = None,
             probe: str | None = None, host_token: str | None = None,
             guests_sign_in: bool = False) -> Deferred:
        """Create a session; fires with the ``hosted`` reply. ``probe``: the edge's own
        self-probe secret (such sessions stay out of audit, presence and metrics);
        ``host_token``: from signing in (``ct-client login``), for CT_HOST_AUTH=sso;
        ``guests_sign_in``: guests must sign in to join (``guestSignIn``)."""
        if self.key is None:
            self.key = SessionKey.generate()
        if self.stickiness is None:
            self.stickiness = secrets.token_urlsafe(12)
        message = {"type": "host", "v": PROTOCOL_VERSION, "name": self.name, "client": self.client}
        if title:
            message["title"] = title
        if team:
            message.update(team=team, teamToken=team_token)
        if client_version:
            message["clientVersion"] = client_version
        if probe:
            message["probe"] = probe
        if host_token:
            message["hostToken"] = host_token
        if guests_sign_in:
            message["guestSignIn"] = True
        self.role = "host"
        return self._open(message)

    def join(self, session: str, token: str, host_token: str | None = None) -> Deferred:
        """Join a session with its join token; fires with the ``joined`` reply.
        ``host_token``: from signing in, where guests must (CT_GUEST_AUTH=sso, or the
        host's ``guestSignIn``)."""
        self.role = "guest"
        message = {"type": "join", "v": PROTOCOL_VERSION, "session": session,
                   "token": token, "name": self.name, "client": self.client}
        if host_token:
            message["hostToken"] = host_token
        return self._open(message)

    @classmethod
    def from_link(cls, reactor, link: str, name: str, **kw) -> "SessionClient":
        parsed = parse_link(link)
        key = SessionKey.from_text(parsed.key) if parsed.key else None
        client = cls(reactor, parsed.server, name, key=key, **kw)
        client._link_token = (parsed.session, parsed.token)
        client.stickiness = parsed.stickiness
        return client

    def join_link(self, host_token: str | None = None) -> Deferred:
        session, token = self._link_token
        return self.join(session, token, host_token)

    def send(self, data: bytes | str, to: int = 0) -> None:
        """Send a payload to everyone (``to=0``) or one participant; survives a drop."""
        text = isinstance(data, str)
        raw = data.encode("utf-8") if text else bytes(data)
        if self.key is not None:
            raw = self.key.encrypt(raw, self.session.encode())
        frame = encode_upstream(raw, to, text)
        self.sent += 1
        self.unacked.append((self.sent, frame))
        if self._proto is not None and self._handshake is None:
            self._proto.sendMessage(frame, True)

    def control(self, message: dict[str, Any]) -> None:
        if self._proto is not None:
            self._proto.sendMessage(encode_control(message), False)

    def kick(self, participant: int) -> None:
        self.control({"type": "kick", "participant": participant})

    def end(self) -> None:
        self.control({"type": "end"})

    def leave(self) -> Deferred:
        """Leave the session (a host ends it); fires when the connection closed."""
        self._leaving = True
        self._over = True
        if self._proto is None:
            return defer.succeed(None)
        done = Deferred()
        self._on_close = done
        self.control({"type": "leave"})
        return done

    def drop(self) -> None:
        """Cut the TCP connection without a goodbye (tests: simulate a network drop)."""
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.abortConnection()

    def next_frame(self, timeout: float = 10.0) -> Deferred:
        return self._with_timeout(self.frames.get(), timeout)

    def next_event(self, kind: str | None = None, timeout: float = 10.0) -> Deferred:
        """Next event (optionally the next of one kind, earlier ones are dropped)."""

        @defer.inlineCallbacks
        def wait():
            while True:
                event = yield self.events.get()
                if kind is None or event.get("type") == kind:
                    return event

        return self._with_timeout(wait(), timeout)

    def _with_timeout(self, d: Deferred, timeout: float) -> Deferred:
        return d.addTimeout(timeout, self.reactor)

    # ------------------------------------------------------------ connection

    def _open(self, first: dict[str, Any]) -> Deferred:
        self._handshake = Deferred()
        url = websocket_url(self.server, "session")
        headers = {"ctstickiness": self.stickiness} if self.stickiness else None
        d = connect_websocket(self.reactor, url, self._new_protocol, self.trust_all, headers)

        def opened(proto):
            self._proto = proto
            proto.sendMessage(encode_control(first), False)
            return self._handshake

        def failed(f):
            self._handshake = None
            return f

        d.addCallback(opened)
        d.addErrback(failed)
        return d

    def _new_protocol(self):
        proto = _ClientProtocol()
        proto.owner = self
        return proto

    def _received(self, proto, payload: bytes, is_binary: bool) -> None:
        if proto is not self._proto:
            return
        if is_binary:
            flags, seq, sender, body = decode_downstream(payload)
            if seq <= self.last_seq:
                return  # already had it (cannot happen with a correct edge)
            self.last_seq = seq
            if self.key is not None:
                try:
                    body = self.key.decrypt(body, self.session.encode())
                except DecryptError as e:
                    self._bad_frames.warn("dropped a frame from participant {sender}: {why}",
                                          sender=sender, why=e)
                    self._maybe_ack()
                    return
            data = body.decode("utf-8") if flags & FLAG_TEXT else body
            frame = Frame(sender, seq, data)
            if self.on_frame is not None:
                self.on_frame(frame)
            else:
                self.frames.put(frame)
            self._maybe_ack()
            return
        message = decode_control(payload)
        kind = message["type"]
        seq = message.get("seq")
        if kind in ("hosted", "joined", "resumed"):
            self._handshake_reply(message)
            return
        if kind == "ack":
            self._trim(message["received"])
            return
        if kind == "error":
            if "received" in message:
                self._trim(message["received"])
            self.events.put(message)
            known = BY_NAME.get(message.get("code"))
            if known is None or known.close_code is not None:
                self._last_error = message  # the edge is about to close this connection
            return
        if kind == "ice-servers":
            self.ice_servers = message.get("iceServers")
        if seq is not None:
            if seq <= self.last_seq:
                return
            self.last_seq = seq
            self._maybe_ack()
        if kind == "participant-joined":
            info = message["participant"]
            self.participants[info["id"]] = info
        elif kind == "participant-left":
            self.participants.pop(message["participant"], None)
        elif kind in ("participant-away", "participant-back"):
            info = self.participants.get(message["participant"])
            if info is not None:
                info["connected"] = kind == "participant-back"
        self.events.put(message)

    def _handshake_reply(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        self.session = message["session"]
        self.participant = message["participant"]
        if kind == "hosted":
            self.join_token = message["joinToken"]
            self.resume_token = message["hostSecret"]
            self.stickiness = message.get("stickiness") or self.stickiness
        elif kind == "joined":
            self.resume_token = message["resumeToken"]
        if kind in ("joined", "resumed"):
            self.participants = {p["id"]: p for p in message["participants"]}
        if kind == "resumed":
            self.resumes += 1
            self.resume_reports.append(message)
            self._trim(message["received"])
            for _, frame in self.unacked:  # everything the edge did not get, in order
                self._proto.sendMessage(frame, True)
        else:
            self.last_seq = self.acked_seq = message["seq"]
        d, self._handshake = self._handshake, None
        if d is not None:
            d.callback(message)
        if kind == "resumed" and self.on_resumed is not None:
            self.on_resumed(message)

    def _maybe_ack(self) -> None:
        if self.last_seq - self.acked_seq >= self.ack_every:
            self.acked_seq = self.last_seq
            self.control({"type": "ack", "seq": self.last_seq})

    def _trim(self, received: int) -> None:
        unacked = self.unacked
        while unacked and unacked[0][0] <= received:
            unacked.popleft()

    def _closed(self, proto, code, reason) -> None:
        if proto is not self._proto:
            return
        self._proto = None
        error, self._last_error = self._last_error, None
        done = self._on_close
        if done is not None and not done.called:
            done.callback(code)
        if self._handshake is not None:
            # host/join/resume refused or cut: whoever waits on the handshake decides.
            d, self._handshake = self._handshake, None
            why = error or {"code": "closed", "message": f"closed with {code} {reason}"}
            d.errback(SessionEnded(why["code"], why["message"]))
            return
        if self._leaving or self._over:
            self._finish("left", "left the session")
        elif close_is_final(error and error.get("code"), code):
            if error is not None:
                self._finish(error["code"], error["message"])
            else:
                self._finish("closed", f"connection closed ({code} {reason})")
        elif self.auto_resume and self.session is not None:
            self._resume(0)
        else:
            self._finish("closed", f"connection closed ({code})")

    def _resume(self, attempt: int) -> None:
        if self._over:
            return
        if attempt >= self.resume_attempts:
            self._finish("resume-failed", "could not reach the edge to resume")
            return
        delay = self.resume_delays[min(attempt, len(self.resume_delays) - 1)]

        def go():
            d = self._open({"type": "resume", "v": PROTOCOL_VERSION, "session": self.session,
                            "participant": self.participant, "token": self.resume_token,
                            "lastSeq": self.last_seq})

            def failed(f):
                if f.check(SessionEnded) and f.value.code not in RESUME_RETRY:
                    self._finish(f.value.code, f.value.message)
                else:
                    self._resume(attempt + 1)

            d.addErrback(failed)

        self.reactor.callLater(delay, go)

    def _finish(self, code: str, message: str) -> None:
        self._over = True
        if not self.ended.called:
            self.ended.callback(SessionEnded(code, message))
