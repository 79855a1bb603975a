"""Websocket adapters: Autobahn protocols that feed the relay and the presence hub.

Each protocol is thin: it decodes, applies the per-connection rate limit and the
handshake timeout, hands the message to the pure core and turns every
:class:`ProtocolError` into an error frame plus, when fatal, a documented close code.
What keeps idle connections small lives in :mod:`ct.edge.autobahn_trim`; the fast paths
here (reads, writes, message ends, close) use a few more Autobahn internals, all checked by
``tests/edge/test_autobahn_canary.py``.
"""

from __future__ import annotations

import sys
from typing import Any

from autobahn.twisted.util import peer2str
from autobahn.twisted.websocket import WebSocketServerFactory
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.tcp import Server as TCPServerTransport
from twisted.logger import Logger

from ct.common.logthrottle import LogThrottle
from ct.common.ratelimit import TokenBucket
from ct.edge import stickiness
from ct.edge.autobahn_trim import (
    TrimmedServerProtocol,
    trimmed_protocol_class,
)
from ct.edge.keepalive import KeepAlive
from ct.common.tokens import check_team_token
from ct.protocol import errors
from ct.protocol.errors import ProtocolError
from ct.protocol.wire import (
    MAX_NAME,
    check_version,
    decode_control,
    encode_control,
    field_str,
)

_log = Logger()

# Warning lines about rejected clients per minute, unless tap.py says otherwise
# (CT_BAD_INPUT_LOG_LIMIT).
DEFAULT_REJECTION_LOG_LIMIT = 20
# Characters of an error message quoted in the log line (the client gets all of it).
_LOGGED_MESSAGE_MAX = 200

_STATE_OPEN = WebSocketProtocol.STATE_OPEN
_STATE_CLOSED = WebSocketProtocol.STATE_CLOSED
# An unmasked websocket ping with no payload (FIN + opcode 9, length 0).
_PING_FRAME = b"\x89\x00"


class _SilentLog:
    """Autobahn's logger for a connection already reported in one rate-limited line."""

    __slots__ = ()

    def _nothing(self, *args, **kwargs) -> None:
        pass

    critical = error = warn = info = debug = trace = failure = _nothing


_SILENT_LOG = _SilentLog()


def _for_log(text: str) -> str:
    """``text`` cut to :data:`_LOGGED_MESSAGE_MAX` characters (it may quote client input)."""
    text = str(text)
    return text if len(text) <= _LOGGED_MESSAGE_MAX else text[:_LOGGED_MESSAGE_MAX] + "..."


class _WriteBatch:
    """Frames for many connections, gathered while one read is processed, written once each.

    A read from a sender can carry many frames, each going to many receivers; instead of
    one transport write per frame and receiver, each receiver gets one write per read.
    """

    __slots__ = ("active", "dirty")

    def __init__(self):
        self.active = False
        self.dirty = []

    def flush(self) -> None:
        dirty, self.dirty = self.dirty, []
        for conn in dirty:
            conn._flush()


class _GuardedProtocol(TrimmedServerProtocol):
    """Common parts: peer address, handshake timer, rate limit, error handling."""

    __slots__ = (
        "peer_host", "stickiness", "bucket", "keepalive_quiet", "_handshake_call",
        "_pending",  # frames waiting for the end of the current read (see _WriteBatch)
    )
    keeps_stickiness = False
    _closing = False

    def __init__(self):
        self.peer_host = "?"
        self.stickiness = None
        self.keepalive_quiet = False  # see KeepAlive; cleared by every read
        self._handshake_call = None
        self._pending = None
        super().__init__()

    def onConnect(self, request):
        edge = self.factory.edge
        address = self.transport.getPeer()
        socket_host = getattr(address, "host", None) or peer2str(self.transport)
        # The client's address (X-Forwarded-For only from CT_TRUSTED_PROXIES): the
        # per-address limits and the log lines use it. One interned copy per address.
        self.peer_host = sys.intern(edge.client_address(
            socket_host, request.headers.get("x-forwarded-for")))
        headers = request.headers
        value = stickiness.value_for(headers.get(stickiness.NAME), headers.get("cookie"),
                                     edge.edge_id)
        if self.keeps_stickiness:
            self.stickiness = value  # goes into the ``hosted`` reply
        secure = bool(getattr(self.factory, "isSecure", False))
        return None, {stickiness.NAME: value, "Set-Cookie": stickiness.cookie(value, secure)}

    def dataReceived(self, data: bytes) -> None:
        self.keepalive_quiet = False  # anything from the peer shows it is there
        batch = self.factory.write_batch
        # (Autobahn's own dataReceived only adds a debug log line whose arguments it
        # formats even when debug logging is off.)
        if batch.active:  # cannot nest; be safe
            self._dataReceived(data)
            return
        batch.active = True
        try:
            self._dataReceived(data)
        finally:
            batch.active = False
            batch.flush()

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        if self._pending is not None:
            self._flush()  # keep the order of everything written to this connection
        if sync or chopsize or self.send_queue or self.logOctets:
            super().sendData(data, sync, chopsize)
        else:
            # Autobahn's sendData is this write plus a debug line it formats even when
            # debug logging is off, and traffic counters nothing here reads.
            self._write_now(data)

    def _write_now(self, data: bytes) -> None:
        """Write ``data``: with one send() when nothing is queued on a plain TCP socket.

        Twisted's ``write`` queues the bytes, registers the socket for writability, sends
        on the next turn of the reactor and unregisters it: two ``epoll_ctl`` calls and a
        loop turn per write. With an empty queue, sending at once saves all three; what
        the kernel does not take (or an error) goes through Twisted's queue as before.
        """
        t = self.transport
        if t is None:
            return
        if (type(t) is TCPServerTransport and not t.TLS and t.connected and not t.disconnecting
                and not t._tempDataLen and t.offset >= len(t.dataBuffer)
                and not t._writeDisconnected):
            sent = t.writeSomeData(data)
            if type(sent) is int:
                if sent >= len(data):
                    return
                data = data[sent:]
        t.write(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending:
            self._write_now(b"".join(pending) if len(pending) > 1 else pending[0])

    def write_frame(self, frame: bytes) -> None:
        """Write a ready websocket frame: batched during a read, else at once."""
        pending = self._pending
        if pending is not None:
            pending.append(frame)
        elif (self.state != _STATE_OPEN or self._perMessageCompress is not None
              or self.send_queue or self.logOctets):
            super().sendData(frame)
        elif self.factory.write_batch.active:
            self._pending = [frame]
            self.factory.write_batch.dirty.append(self)
        else:
            self._write_now(frame)

    def onOpen(self):
        self.trim_after_handshake()
        edge = self.factory.edge
        self.bucket = TokenBucket(edge.rate_limit, edge.rate_burst, edge.clock.seconds)
        self._handshake_call = edge.clock.callLater(edge.handshake_timeout, self._handshake_expired)
        self.factory.keepalive.add(self)

    # -- KeepAlive interface

    def send_ping(self) -> None:
        if self.state == _STATE_OPEN and not self._closing:
            self.write_frame(_PING_FRAME)

    def drop_silent(self) -> None:
        """The peer answered nothing, not even the last ping: drop the TCP connection."""
        if self.state == _STATE_CLOSED:
            return
        self.wasClean = False
        self.wasNotCleanReason = (f"no answer to a websocket ping within "
                                  f"{self.factory.keepalive.interval:g} s")
        self._rejected("dropping {peer}: {reason}", reason=self.wasNotCleanReason)
        self.dropConnection(abort=True)

    # -- Autobahn's own refusals: one rate-limited line naming the client, not its lines

    def _rejected(self, format: str, **fields) -> None:
        """Log ``format`` through the factory's throttle; silence Autobahn for this
        connection (it is ending; its own warnings would repeat the line, unthrottled)."""
        peer = self.peer_host
        if peer == "?" and self.transport is not None:  # before onConnect
            peer = self.peer
        self.factory.rejections.warn(format, peer=peer, **fields)
        self.log = _SILENT_LOG

    def _fail_connection(self, code: int = 1001, reason: str = "going away") -> None:
        """Autobahn refuses what the peer sent (bad framing, UTF-8, size)."""
        if self.state != _STATE_CLOSED and self.log is not _SILENT_LOG:
            self._rejected("closing {peer}: websocket error {code} ({reason})", code=code,
                           reason=_for_log(reason))
        super()._fail_connection(code, reason)

    def failHandshake(self, reason: str, code: int = 400, responseHeaders=None):
        """Autobahn refuses the opening handshake (a bad upgrade request)."""
        self._rejected("refusing the websocket handshake of {peer}: {code} ({reason})",
                       code=code, reason=_for_log(reason))
        return super().failHandshake(reason, code, responseHeaders)

    def _handshake_expired(self):
        self._handshake_call = None
        self.fail(ProtocolError(errors.HANDSHAKE_TIMEOUT, "no first message within "
                                f"{self.factory.edge.handshake_timeout:g} s"))

    def _handshake_done(self):
        if self._handshake_call is not None and self._handshake_call.active():
            self._handshake_call.cancel()
        self._handshake_call = None

    def onMessage(self, payload: bytes, isBinary: bool):
        if self._closing:
            return
        try:
            if not self.bucket.take():
                raise ProtocolError(errors.RATE_LIMITED, "more than "
                                    f"{self.factory.edge.rate_limit:g} messages/s sustained")
            self.handle(payload, isBinary)
        except ProtocolError as e:
            self.fail(e)
        except Exception:
            # A bug of ours, but one a client may be able to repeat: rate-limited too.
            self.factory.rejections.failure("internal error handling a message from {peer}",
                                            peer=self.peer_host)
            self.fail(ProtocolError(errors.BAD_MESSAGE, "internal error; see the edge log"))

    def onMessageEnd(self):
        if self._listeners is not None or self.trackedTimings:
            return super().onMessageEnd()
        # Autobahn's version also fires a "message" event for observers: with none, that
        # is a Deferred made and resolved per message for nothing.
        if not self.failedByMe:
            self._onMessage(b"".join(self.message_data), self.message_is_binary)
        self.message_data = None

    def fail(self, e: ProtocolError) -> None:
        """Send the error; close the connection when the error is fatal.

        A client can provoke a fatal error at will, so its warning line is rate-limited
        (see :class:`LogThrottle`); every error is counted in the relay's statistics.
        """
        self.factory.edge.relay.count_error(e.code)
        if e.fatal:
            self._rejected("closing {peer}: {code} ({message})", code=e.code.name,
                           message=_for_log(e.message))
            self.close(e.code, e.message)
        else:
            self.send_control({"type": "error", "code": e.code.name, "message": e.message})

    # -- Connection interface used by the core

    def send_control(self, message: dict[str, Any]) -> None:
        if not self._closing:
            self.sendMessage(encode_control(message), False)

    def send_raw(self, payload: bytes) -> None:
        if not self._closing:
            self.sendMessage(payload, False)

    def close(self, code: errors.ErrorCode, message: str) -> None:
        if self._closing:
            return
        self.send_control({"type": "error", "code": code.name, "message": message})
        self._closing = True
        self._handshake_done()
        self.sendCloseFrame(code=code.close_code, reasonUtf8=code.name.encode(), isReply=False)

    def onClose(self, wasClean, code, reason):
        self._closing = True
        self._handshake_done()
        close_timeout = self.closeHandshakeTimeoutCall
        if close_timeout is not None:
            # Autobahn cancels it only when the peer answers our close frame; a peer that
            # drops the TCP connection instead would leave it pending for seconds.
            self.closeHandshakeTimeoutCall = None
            close_timeout.cancel()
        self.factory.keepalive.discard(self)
        try:
            self.closed()
        except Exception:
            _log.failure("error cleaning up after {peer}", peer=self.peer_host)

    def closed(self) -> None:
        """Hook: the connection is gone."""


class SessionProtocol(_GuardedProtocol):
    """``/ws/session``: host, join or resume; then data frames and control messages."""

    __slots__ = ("participant",)
    keeps_stickiness = True

    def __init__(self):
        self.participant = None
        super().__init__()

    def handle(self, payload: bytes, isBinary: bool) -> None:
        relay = self.factory.edge.relay
        p = self.participant
        if p is not None:
            if isBinary:
                relay.data(p, payload)
                return
            message = decode_control(payload)
            kind = message["type"]
            if kind == "ack":
                relay.ack(p, message)
            elif kind == "leave":
                self.participant = None
                relay.leave(p)
                self.close_normally("left")
            elif kind == "end":
                if p.role != "host":
                    raise ProtocolError(errors.NOT_ALLOWED, "only the host can end the session")
                relay.end(p.session, "ended-by-host")
            elif kind == "kick":
                relay.kick(p, message)
            elif kind == "ping":
                self.send_control({"type": "pong"})
            elif kind == "av-report":  # call counters for the metrics (ct/edge/av.py)
                reports = self.factory.edge.av_reports
                if reports is not None:
                    reports.report(p.session.id, p.id, message)
            else:
                raise ProtocolError(errors.BAD_MESSAGE, f"unknown message type {kind!r}")
            return
        if isBinary:
            raise ProtocolError(errors.BAD_MESSAGE, "first message must be host, join or resume")
        message = decode_control(payload)
        kind = message["type"]
        if kind not in ("host", "join", "resume"):
            raise ProtocolError(errors.BAD_MESSAGE, "first message must be host, join or "
                                f"resume, not {kind!r}")
        check_version(message)
        self._handshake_done()
        self.participant = p = getattr(relay, kind)(self, message)
        _log.info("{kind} from {peer}: session {sid}, participant #{pid}", kind=kind,
                  peer=self.peer_host, sid=p.session.id, pid=p.id)
        self.factory.edge.after_handshake(self, p)

    def send(self, message) -> None:
        if self._closing:
            return
        prepared = message.prepared
        if prepared is None:
            prepared = message.prepared = self.factory.prepareMessage(
                message.payload, message.is_binary).payloadHybi
        self.write_frame(prepared)

    def close_normally(self, why: str) -> None:
        self._closing = True
        self.sendCloseFrame(code=1000, reasonUtf8=why.encode(), isReply=False)

    def closed(self) -> None:
        p, self.participant = self.participant, None
        if p is not None:
            self.factory.edge.relay.connection_lost(p, self)


class PresenceProtocol(_GuardedProtocol):
    """``/ws/presence``: one team member's presence subscription."""

    __slots__ = ("team", "user", "client")

    def __init__(self):
        self.team = self.user = self.client = None
        super().__init__()

    def handle(self, payload: bytes, isBinary: bool) -> None:
        if isBinary:
            raise ProtocolError(errors.BAD_MESSAGE, "presence takes JSON text messages only")
        message = decode_control(payload)
        kind = message["type"]
        if self.team is not None:
            if kind == "ping":
                self.send_control({"type": "pong"})
                return
            raise ProtocolError(errors.BAD_MESSAGE, f"unknown message type {kind!r}")
        if kind != "presence":
            raise ProtocolError(errors.BAD_MESSAGE, "first message must be 'presence'")
        check_version(message)
        edge = self.factory.edge
        team = field_str(message, "team", MAX_NAME)
        token = field_str(message, "token", 128)
        user = field_str(message, "user", MAX_NAME)
        client = field_str(message, "client", MAX_NAME, required=False)
        if not edge.team_secret:
            raise ProtocolError(errors.PRESENCE_DISABLED, "team presence is not configured on "
                                "this edge (CT_TEAM_SECRET)")
        if not check_team_token(edge.team_secret, team, token):
            raise ProtocolError(errors.FORBIDDEN, f"wrong token for team {team!r}")
        identity = edge.signed_in(message)  # CT_HOST_AUTH=sso: the name is the identity's
        user = identity.name if identity is not None else user
        self._handshake_done()
        self.team, self.user, self.client = team, user, client
        edge.presence.subscribe(team, self)

    def closed(self) -> None:
        if self.team is not None:
            self.factory.edge.presence.unsubscribe(self.team, self)
            self.team = None


def rejection_log(clock, limit: int = DEFAULT_REJECTION_LOG_LIMIT) -> LogThrottle:
    """The rate-limited warning log of rejected clients, shared by an edge's factories."""
    return LogThrottle(_log, clock, limit, 60.0, "client rejections")


def decline_compression(offers) -> None:
    """``perMessageCompressionAccept``: decline every permessage-deflate offer.

    The handshake succeeds without the extension. Payloads are end-to-end encrypted
    (incompressible), and an inflating edge would need a decompressed-size cap per message.
    """
    return None


def make_factory(protocol, edge, url: str, max_bytes: int, reactor,
                 rejections: LogThrottle | None = None) -> WebSocketServerFactory:
    """The factory of ``protocol`` connections for ``edge``, with its own protocol class
    (see :func:`trimmed_protocol_class`)."""
    factory = WebSocketServerFactory(url, reactor=reactor)
    factory.edge = edge
    factory.rejections = rejections if rejections is not None else rejection_log(edge.clock)
    factory.write_batch = _WriteBatch()
    # One timer pings every connection (Autobahn's keep-alive costs two timer objects
    # per connection).
    factory.keepalive = KeepAlive(edge.clock, edge.ping_interval)
    factory.setProtocolOptions(
        maxFramePayloadSize=max_bytes,
        maxMessagePayloadSize=max_bytes,
        autoPingInterval=0,
        autoPingTimeout=0,
        openHandshakeTimeout=edge.handshake_timeout,
        closeHandshakeTimeout=5,
        utf8validateIncoming=True,
        failByDrop=False,
        perMessageCompressionAccept=decline_compression,
    )
    factory.protocol = trimmed_protocol_class(protocol, factory)
    return factory
