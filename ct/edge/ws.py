"""Websocket adapters: Autobahn protocols that feed the relay and the presence hub.

Each protocol is thin: it decodes, applies the per-connection rate limit and the
handshake timeout, hands the message to the pure core and turns every
:class:`ProtocolError` into an error frame plus, when fatal, a documented close code.
"""

from __future__ import annotations

import sys
from collections import deque
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import TrafficStats, WebSocketProtocol
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import LoopingCall
from twisted.internet.tcp import Server as TCPServerTransport
from twisted.logger import Logger
from twisted.web.http import HTTPChannel

from ct.common.logthrottle import LogThrottle
from ct.common.ratelimit import TokenBucket
from ct.edge import stickiness
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

# What Autobahn keeps from the opening handshake; nothing reads it once the connection is open.
_HANDSHAKE_LEFTOVERS = (
    "http_headers", "http_request_data", "http_response_data", "http_status_line",
    "http_request_uri", "http_request_path", "http_request_params", "http_request_host",
    "_wskey", "websocket_protocols", "websocket_extensions", "websocket_origin",
)
# Per-connection flags Autobahn sets to these values when a connection starts and changes
# only when it closes. As class attributes of the same value they need no slot in each
# idle connection's ``__dict__``. (Attributes set again for every frame or ping are not
# listed: dropping them would only make the dict grow again, to a larger size.)
_FLAG_DEFAULTS = dict.fromkeys((
    "closedByMe", "failedByMe", "droppedByMe", "wasClean", "wasServerConnectionDropTimeout",
    "wasOpenHandshakeTimeout", "wasCloseHandshakeTimeout", "wasServingFlashSocketPolicyFile",
    "wasMaxFramePayloadSizeExceeded", "wasMaxMessagePayloadSizeExceeded", "triggered",
), False)
_FLAG_DEFAULTS.update(dict.fromkeys((
    "wasNotCleanReason", "localCloseCode", "localCloseReason", "remoteCloseCode",
    "remoteCloseReason", "openHandshakeTimeoutCall", "closeHandshakeTimeoutCall",
    "_perMessageCompress", "trackedTimings", "websocket_protocol_in_use",
    # Autobahn's own keep-alive is off (see KeepAlive): its state never changes.
    "autoPingTimeoutCall", "autoPingPending", "autoPingPendingCall", "autoPingPendingSent",
), None))
_FLAG_DEFAULTS["autoPingPendingSeq"] = 0
_FLAG_DEFAULTS["websocket_version"] = 13  # RFC 6455; older drafts keep their own value
# Autobahn's per-frame and per-message state: attributes with no class default anywhere,
# set before they are read. Slots hold them, so they take no room in each ``__dict__``.
_AUTOBAHN_SLOTS = (
    "state", "send_state", "data", "current_frame", "current_frame_masker", "frame_data",
    "frame_length", "inside_message", "message_data", "message_data_total_length",
    "message_is_binary", "_isMessageCompressed", "utf8validateIncomingCurrentMessage",
    "utf8validateLast", "utf8validator",
)


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


class _Unobserved:
    """Stands for Autobahn's ``is_open``/``is_closed`` Deferreds when nothing waits on them."""

    __slots__ = ()
    called = False

    def callback(self, result=None) -> None:
        pass

    def errback(self, fail=None) -> None:
        pass


_UNOBSERVED = _Unobserved()


class KeepAlive:
    """Websocket pings for every open connection of a factory, from one timer.

    The connections are spread over ``slices`` groups; each tick of the timer visits one
    group, so each connection is visited once per ``interval``. A visit drops a connection
    still marked quiet (nothing received since the previous visit's ping, a whole
    ``interval`` ago); otherwise it pings it and marks it quiet. Anything received from the
    peer clears the mark (``conn.keepalive_quiet = False``). So every connection gets a ping
    per ``interval``, has ``interval`` to answer it, and a silent peer is dropped at most
    ``2 * interval`` (plus one tick) after the last thing it sent.

    A connection provides ``keepalive_quiet``, ``send_ping()`` and ``drop_silent()``.
    """

    def __init__(self, clock, interval: float, slices: int = 40):
        self.clock = clock
        self.interval = interval
        self.slices = max(1, int(slices))
        self._groups: list[set] = [set() for _ in range(self.slices)]
        self._next = 0
        self._count = 0
        self._loop: LoopingCall | None = None

    def __len__(self) -> int:
        return self._count

    @property
    def tick(self) -> float:
        return self.interval / self.slices

    def add(self, conn) -> None:
        """Start keeping ``conn`` alive (it has just opened); a no-op when interval is 0."""
        if self.interval <= 0:
            return
        group = self._groups[hash(conn) % self.slices]
        if conn in group:
            return
        group.add(conn)
        self._count += 1
        if self._loop is None:
            self._loop = LoopingCall(self._visit_next_group)
            self._loop.clock = self.clock
            self._loop.start(self.tick, now=False)

    def discard(self, conn) -> None:
        """Forget ``conn`` (it has closed); the timer stops with the last connection."""
        group = self._groups[hash(conn) % self.slices]
        if conn not in group:
            return
        group.remove(conn)
        self._count -= 1
        if not self._count and self._loop is not None:
            loop, self._loop = self._loop, None
            if loop.running:
                loop.stop()

    def _visit_next_group(self) -> None:
        # One group per tick, however late the tick: after a stall of the reactor, the
        # answers to earlier pings may still be unread, so nobody is judged early.
        group = self._groups[self._next]
        self._next = (self._next + 1) % self.slices
        for conn in list(group):
            if conn.keepalive_quiet:
                self.discard(conn)
                try:
                    conn.drop_silent()
                except Exception:
                    _log.failure("error dropping a silent connection")
            else:
                conn.keepalive_quiet = True
                try:
                    conn.send_ping()
                except Exception:
                    _log.failure("error sending a websocket ping")


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


class _GuardedProtocol(WebSocketServerProtocol):
    """Common parts: peer address, handshake timer, rate limit, error handling."""

    __slots__ = _AUTOBAHN_SLOTS + (
        "transport", "factory", "connected",  # Twisted's, with their defaults set below
        "peer_host", "stickiness", "bucket", "keepalive_quiet", "_handshake_call",
        "_pending",  # frames waiting for the end of the current read (see _WriteBatch)
    )
    keeps_stickiness = False
    _closing = False
    # Autobahn queues writes only for sync/chopped sends, which this server never makes;
    # an idle connection shares this empty tuple instead of owning an empty deque.
    send_queue = ()
    # Nothing here reads Autobahn's transport details or traffic counters once the
    # connection is open: after the handshake they are shared (see _trim_after_handshake).
    _transport_details = None
    websocket_extensions_in_use = ()
    is_open = is_closed = _UNOBSERVED

    def __init__(self):
        self.transport = self.factory = None
        self.connected = 0
        self.peer_host = "?"
        self.stickiness = None
        self.keepalive_quiet = False  # see KeepAlive; cleared by every read
        self._handshake_call = None
        self._pending = None
        super().__init__()

    @property
    def peer(self) -> str:
        """Autobahn's peer string, worked out when a log line asks for it (not stored)."""
        t = self.transport
        return peer_string(t.getPeer()) if t is not None else "?"

    @peer.setter
    def peer(self, value) -> None:
        pass  # the same value as the getter's (the X-Forwarded-For option is off)

    def onConnect(self, request):
        edge = self.factory.edge
        address = self.transport.getPeer()
        socket_host = getattr(address, "host", None) or peer_string(address)
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

    def _trim_after_handshake(self) -> None:
        """Forget what only the opening handshake needed: idle connections stay small."""
        transport = self.transport
        if isinstance(getattr(transport, "producer", None), HTTPChannel):
            # twisted.web's channel (and its request) registered itself as the transport's
            # producer; the websocket has replaced it, so let both go.
            transport.unregisterProducer()
        cls = type(self)
        drop = _HANDSHAKE_LEFTOVERS
        if self._listeners is None:
            # Nothing observes this connection's events (nothing here calls ``on``): its
            # event list and per-event results need no copy of their own.
            drop = drop + ("_valid_events", "_results")
        kept = {}
        for name, value in self.__dict__.items():
            if name in drop:
                continue
            if name in _FLAG_DEFAULTS and getattr(cls, name, self) is value:
                continue
            if name in ("send_queue", "websocket_extensions_in_use") and not value:
                continue
            if name in ("is_open", "is_closed", "_transport_details", "trafficStats"):
                # The class's instead (see above and make_factory): nothing here waits on
                # these Deferreds (Autobahn does only on the client side), and nothing
                # reads the details or counters after the handshake.
                continue
            kept[name] = value
        self.__dict__ = kept  # a new dict, sized for what is left

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
            if "send_queue" not in self.__dict__:
                self.send_queue = deque()
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
        self._trim_after_handshake()
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

    def onFrameEnd(self):
        try:
            return super().onFrameEnd()
        finally:
            # Autobahn keeps each frame's unmasker (~1 KB) until the next frame arrives;
            # an idle connection's last frame is often a pong.
            self.current_frame_masker = None

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
        self._handshake_done()
        self.team, self.user, self.client = team, user, client
        edge.presence.subscribe(team, self)

    def closed(self) -> None:
        if self.team is not None:
            self.factory.edge.presence.unsubscribe(self.team, self)
            self.team = None


def peer_string(address) -> str:
    """Autobahn's peer descriptor (``tcp4:127.0.0.1:52914``) of a Twisted address."""
    if isinstance(address, IPv4Address):
        return f"tcp4:{address.host}:{address.port}"
    if isinstance(address, IPv6Address):
        return f"tcp6:{address.host}:{address.port}"
    name = getattr(address, "name", None)
    if name is not None:
        return f"unix:{name.decode(errors='replace') if isinstance(name, bytes) else name}"
    return "unknown"


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
    # Autobahn copies every option from the factory into each connection unless the
    # protocol class already has it: give this factory's class the options and the
    # default flags once, instead of ~60 dict entries per connection. A function option
    # stays a plain function (not a method) on the class.
    attrs = {name: _class_attr(getattr(factory, name)) for name in protocol.CONFIG_ATTRS}
    attrs.update(_FLAG_DEFAULTS)
    attrs["trafficStats"] = TrafficStats()  # counted for all connections; nothing reads it
    factory.protocol = type(protocol.__name__, (protocol,), attrs)
    return factory


def _class_attr(value):
    return staticmethod(value) if callable(value) else value
