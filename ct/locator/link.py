"""Locator side of the edge link: ``/ws/edge``, one websocket per edge.

Messages of one link are handled strictly in order (each waits for the database work of
the one before), so a report never overtakes the registration it depends on.
"""

from __future__ import annotations

import json
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import defer
from twisted.logger import Logger

from ct.common.tokens import same_secret
from ct.protocol import errors
from ct.protocol.errors import ProtocolError
from ct.protocol.wire import MAX_NAME, encode_control, field_str

_log = Logger()

LINK_VERSION = 1
MAX_LINK_MESSAGE = 16 * 1024 * 1024


class EdgeLinkProtocol(WebSocketServerProtocol):
    info = None

    def onOpen(self):
        self._queue = defer.succeed(None)
        self._closing = False

    def onMessage(self, payload, isBinary):
        if self._closing:
            return
        self._queue.addCallback(lambda _: self._handle(payload, isBinary))
        self._queue.addErrback(self._failed)

    def _failed(self, failure):
        if failure.check(ProtocolError):
            self.fail(failure.value)
        else:
            _log.failure("edge link: error handling a message from {edge}", failure,
                         edge=self.info.edge_id if self.info else self.peer)
            self.fail(ProtocolError(errors.BAD_MESSAGE, "internal error; see the locator log"))

    def fail(self, e: ProtocolError) -> None:
        if self._closing:
            return
        _log.warn("edge link from {peer} refused: {code} ({message})", peer=self.peer,
                  code=e.code.name, message=e.message)
        self.send_json({"type": "error", "code": e.code.name, "message": e.message})
        self._closing = True
        self.sendCloseFrame(code=e.code.close_code or 4000, reasonUtf8=e.code.name.encode(),
                            isReply=False)

    def send_json(self, message: dict[str, Any]) -> None:
        if not self._closing:
            self.sendMessage(encode_control(message), False)

    @defer.inlineCallbacks
    def _handle(self, payload: bytes, is_binary: bool):
        if self._closing:
            return
        if is_binary:
            raise ProtocolError(errors.BAD_MESSAGE, "the edge link takes JSON text messages")
        message = decode_link_message(payload)
        kind = message["type"]
        locator = self.factory.locator
        if self.info is None:
            if kind != "register":
                raise ProtocolError(errors.BAD_MESSAGE, "first message must be 'register'")
            self._check_secret(message)
            hello = {
                "edge": field_str(message, "edge", 64),
                "url": field_str(message, "url", 512),
                "region": field_str(message, "region", MAX_NAME),
                "version": field_str(message, "version", MAX_NAME),
                "maxConnections": message.get("maxConnections"),
                "sessions": message.get("sessions") or [],
                "teams": message.get("teams") or [],
            }
            self.info = yield locator.edge_registered(self, hello)
            self.send_json({"type": "registered", "suspended": self.info.suspended})
            self.send_json(locator.config_message())
            return
        if kind == "report":
            yield locator.edge_reported(self.info, message)
        elif kind == "records":
            result = yield locator.store_records(self.info, message)
            self.send_json({"type": "stored", "batch": message.get("batch"), **result})
        elif kind == "ping":
            self.send_json({"type": "pong"})
        elif kind in ("sessions", "done"):  # answers to administrator requests
            locator.edge_answered(self.info, message)
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
        if self.info is not None:
            self.factory.locator.edge_disconnected(self.info, self)


def decode_link_message(payload: bytes) -> dict[str, Any]:
    """Parse a link message (larger than client control messages: batches of records)."""
    try:
        message = json.loads(payload)
    except ValueError as e:
        raise ProtocolError(errors.BAD_MESSAGE, f"not JSON: {e}") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError(errors.BAD_MESSAGE, "a link message is a JSON object with a type")
    return message


def make_link_factory(locator, url: str, reactor) -> WebSocketServerFactory:
    factory = WebSocketServerFactory(url, reactor=reactor)
    factory.protocol = EdgeLinkProtocol
    factory.locator = locator
    factory.setProtocolOptions(maxMessagePayloadSize=MAX_LINK_MESSAGE,
                               maxFramePayloadSize=MAX_LINK_MESSAGE,
                               autoPingInterval=5, autoPingTimeout=10,
                               openHandshakeTimeout=10, closeHandshakeTimeout=5)
    return factory
