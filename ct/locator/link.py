"""Locator side of the edge link: ``/ws/edge``, one websocket per edge.

Messages of one link are handled strictly in order (each waits for the database work of
the one before), so a report never overtakes the registration it depends on.

Until an edge has registered with the right secret its link is held short: it must do so
within ``register_timeout`` seconds, in a message of at most ``MAX_REGISTER_MESSAGE``
bytes, and the whole register message is checked before anything is stored. Once
registered, a link silent for ``link_timeout`` seconds (no answer to the locator's pings,
e.g. a hung or partitioned edge) is dropped, which flags the edge ``link-lost``.
"""

from __future__ import annotations

from typing import Any

from autobahn.util import encode_truncate
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import defer
from twisted.logger import Logger

from ct.common.logthrottle import RateLimitedLog
from ct.common.tokens import same_secret
from ct.protocol import errors, link
from ct.protocol.errors import ProtocolError
from ct.protocol.link import MAX_LINK_MESSAGE, MAX_REGISTER_MESSAGE, decode_link_message
from ct.protocol.wire import encode_control
from ct.storage.database import DATABASE_RETRY_AFTER, DatabaseUnavailable

_log = Logger()

DEFAULT_REGISTER_TIMEOUT = 5.0
DEFAULT_LINK_TIMEOUT = 6.0
# Refusals are logged, at most this many at once and this many per second on average.
REFUSAL_LOG_BURST = 10
REFUSAL_LOG_RATE = 1.0


class EdgeLinkProtocol(WebSocketServerProtocol):
    info = None
    _batch_in_hand = None  # the outbox batch being stored
    _register_deadline = None

    def connectionMade(self):
        super().connectionMade()
        self._queue = defer.succeed(None)
        self._closing = False
        # Held short until registered: small messages, a deadline.
        self.maxMessagePayloadSize = self.maxFramePayloadSize = MAX_REGISTER_MESSAGE
        self._register_deadline = self.factory.clock.callLater(
            self.factory.register_timeout, self._register_timed_out)

    def _register_timed_out(self):
        self._register_deadline = None
        if self.info is not None or self._closing:
            return
        error = ProtocolError(errors.HANDSHAKE_TIMEOUT, "no register within "
                              f"{self.factory.register_timeout:g} s")
        if self.state != self.STATE_OPEN:  # not even the websocket handshake: just cut
            self._closing = True
            self.factory.log_refusal(self.peer, error.code.name, error.message)
            self.transport.abortConnection()
            return
        self.fail(error)

    def _cancel_deadline(self):
        if self._register_deadline is not None and self._register_deadline.active():
            self._register_deadline.cancel()
        self._register_deadline = None

    def onMessage(self, payload, isBinary):
        if self._closing:
            return
        self._queue.addCallback(lambda _: self._handle(payload, isBinary))
        self._queue.addErrback(self._failed)

    def _failed(self, failure):
        if failure.check(ProtocolError):
            self.fail(failure.value)
        elif failure.check(DatabaseUnavailable):
            # The database logs its own outage once; the edge keeps what it sent.
            self._database_unavailable()
        else:
            _log.failure("edge link: error handling a message from {edge}", failure,
                         edge=self.info.edge_id if self.info else self.peer)
            self.fail(ProtocolError(errors.BAD_MESSAGE, "internal error; see the locator log"))

    def _database_unavailable(self) -> None:
        """A message could not be handled while the database is away: nothing is lost.

        A registered edge keeps the link and sends its outbox batch again after
        ``retry``'s delay; live updates are carried by its next registration or report.
        An edge that could not register yet is closed with 1013 (try again later) and
        reconnects with back-off.
        """
        if self.info is None:
            self._closing = True
            self.sendCloseFrame(code=1013, reasonUtf8=b"database unavailable", isReply=False)
            return
        batch = self._batch_in_hand
        if batch is not None:
            self.send_json(link.retry(batch, DATABASE_RETRY_AFTER))

    def dataReceived(self, data):
        # Any bytes from a registered edge prove it alive: a big outbox batch on a slow
        # line (the pong queued behind it) must not count as silence. (Autobahn itself
        # only counts whole frames.)
        if self.info is not None and self.autoPingTimeoutCall is not None:
            self._cancelAutoPingTimeoutCall()
        super().dataReceived(data)

    def _fail_connection(self, code: int = 1001, reason: str = "going away") -> None:
        """Autobahn refuses a frame (too big, bad UTF-8): close with its code, logged once
        through the throttled refusal log (autobahn would log each failure itself)."""
        if self.failedByMe or self.state in (self.STATE_CLOSING, self.STATE_CLOSED):
            return  # already failing: the close handshake or its time-out ends it
        self.failedByMe = True
        self._closing = True
        self.factory.log_refusal(self.peer, f"websocket close {code}", reason)
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(code=code, reasonUtf8=encode_truncate(reason, 123),
                                isReply=False)
        # The peer's framing is not to be trusted any more (it may be inside a 10 MB
        # frame): no close handshake, the connection closes once the close frame is out.
        self.transport.loseConnection()

    def fail(self, e: ProtocolError) -> None:
        if self._closing:
            return
        self.factory.log_refusal(self.peer, e.code.name, e.message)
        self.send_json(link.error(e))
        self._closing = True
        self.sendCloseFrame(code=e.code.close_code or 4000, reasonUtf8=e.code.name.encode(),
                            isReply=False)

    def send_json(self, message: dict[str, Any]) -> None:
        if not self._closing:
            self.sendMessage(encode_control(message), False)

    @defer.inlineCallbacks
    def _handle(self, payload: bytes, is_binary: bool):
        self._batch_in_hand = None
        if self._closing:
            return
        if is_binary:
            raise ProtocolError(errors.BAD_MESSAGE, "the edge link takes JSON text messages")
        message = decode_link_message(payload)
        kind = message["type"]
        locator = self.factory.locator
        if self.info is None:
            if kind != link.REGISTER:
                raise ProtocolError(errors.BAD_MESSAGE, "first message must be 'register'")
            self._check_secret(message)
            hello = link.Register.from_json(message)
            self._cancel_deadline()
            self.info = yield locator.edge_registered(self, hello)
            self.maxMessagePayloadSize = self.factory.maxMessagePayloadSize
            self.maxFramePayloadSize = self.factory.maxFramePayloadSize
            self.send_json(link.registered(self.info.suspended))
            self.send_json(locator.config_message())
            return
        if kind == link.REPORT:
            yield locator.edge_reported(self.info, link.Report.from_json(message))
        elif kind == link.RECORDS:
            records = link.Records.from_json(message)
            self._batch_in_hand = records.batch
            stored, rejected = yield locator.store_records(self.info, records)
            self.send_json(link.stored(records.batch, stored, rejected))
        elif kind == link.DRAINING:
            yield locator.edge_draining(self.info, link.Draining.from_json(message))
        elif kind == link.SESSION_UPDATE:
            yield locator.session_updated(self.info, link.SessionUpdate.from_json(message))
        elif kind == link.PING:
            self.send_json({"type": link.PONG})
        elif kind in link.ADMIN_ANSWERS:
            locator.edge_answered(link.answer_request(message), message)
        else:
            raise ProtocolError(errors.BAD_MESSAGE, f"unknown message type {kind!r}")

    def _check_secret(self, message: dict[str, Any]) -> None:
        expected = self.factory.locator.edge_secret
        given = message.get("secret")
        if not expected:
            raise ProtocolError(errors.FORBIDDEN, "this locator accepts no edges: "
                                "CT_EDGE_SECRET is not set on the locator")
        if not isinstance(given, str) or not same_secret(given, expected):
            raise ProtocolError(errors.FORBIDDEN, "wrong edge secret (CT_EDGE_SECRET must be "
                                "the same on the edge and the locator)")

    def onClose(self, wasClean, code, reason):
        self._closing = True
        self._cancel_deadline()
        if self.info is not None:
            self.factory.locator.edge_disconnected(self.info, self, clean=wasClean)


class EdgeLinkFactory(WebSocketServerFactory):
    """``/ws/edge`` connections: register deadline, link liveness, throttled refusal log."""

    protocol = EdgeLinkProtocol

    def __init__(self, url: str, locator, reactor, clock=None,
                 register_timeout: float = DEFAULT_REGISTER_TIMEOUT,
                 link_timeout: float = DEFAULT_LINK_TIMEOUT):
        super().__init__(url, reactor=reactor)
        self.locator = locator
        self.clock = clock or reactor
        self.register_timeout = register_timeout
        self._refusal_log = RateLimitedLog(_log, self.clock.seconds, REFUSAL_LOG_RATE,
                                           REFUSAL_LOG_BURST)
        # Ping every half of link_timeout; no answer within the other half drops the link.
        self.setProtocolOptions(maxMessagePayloadSize=MAX_LINK_MESSAGE,
                                maxFramePayloadSize=MAX_LINK_MESSAGE,
                                autoPingInterval=link_timeout / 2,
                                autoPingTimeout=link_timeout / 2,
                                openHandshakeTimeout=10, closeHandshakeTimeout=5)

    def log_refusal(self, peer: str, code: str, message: str) -> None:
        """One warning per refused link, throttled: anyone can open links and be refused."""
        self._refusal_log.warn("refusal", "edge link from {peer} refused: {code} ({message})",
                               peer=peer, code=code, message=message)
