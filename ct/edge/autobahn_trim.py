"""Small idle websocket connections: where the edge relies on Autobahn's internals for memory.

An Autobahn server connection owns ~100 ``__dict__`` entries (~3 KB) once open. The edge
keeps thousands of idle ones, so :class:`TrimmedServerProtocol` and
:func:`trimmed_protocol_class` move what every connection shares onto the class and drop
what only the opening handshake needed. They rely on these Autobahn internals (pinned
``<27`` in pyproject; ``tests/edge/test_autobahn_canary.py`` fails when an upgrade renames
or removes any of them):

* ``WebSocketProtocol.CONFIG_ATTRS`` and ``_connectionMade`` copying each option from the
  factory into the connection unless the protocol class already has it;
* the flags ``_connectionMade`` sets to the values in :data:`FLAG_DEFAULTS`, and the
  per-frame state in :data:`AUTOBAHN_SLOTS` (set before it is read, no class default);
* the opening-handshake attributes in :data:`HANDSHAKE_LEFTOVERS`;
* ``send_queue`` (a ``deque`` used only by sync or chopped sends),
  ``websocket_extensions_in_use``, ``_transport_details``, ``trafficStats``
  (``TrafficStats``) and the ``is_open``/``is_closed`` Deferreds;
* ``peer`` (a string ``_connectionMade`` stores) and ``current_frame_masker`` (kept until
  the next frame);
* ObservableMixin's ``_listeners``, ``_valid_events`` and ``_results``;
* twisted.web's ``HTTPChannel`` left registered as the transport's producer after the
  upgrade by ``autobahn.twisted.resource.WebSocketResource``.
"""

from __future__ import annotations

from collections import deque

from autobahn.twisted.util import peer2str
from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.websocket.protocol import TrafficStats
from twisted.web.http import HTTPChannel

# What Autobahn keeps from the opening handshake; nothing reads it once the connection is open.
HANDSHAKE_LEFTOVERS = (
    "http_headers", "http_request_data", "http_response_data", "http_status_line",
    "http_request_uri", "http_request_path", "http_request_params", "http_request_host",
    "_wskey", "websocket_protocols", "websocket_extensions", "websocket_origin",
)
# Per-connection flags Autobahn sets to these values when a connection starts and changes
# only when it closes. As class attributes of the same value they need no slot in each
# idle connection's ``__dict__``. (Attributes set again for every frame or ping are not
# listed: dropping them would only make the dict grow again, to a larger size.)
FLAG_DEFAULTS = dict.fromkeys((
    "closedByMe", "failedByMe", "droppedByMe", "wasClean", "wasServerConnectionDropTimeout",
    "wasOpenHandshakeTimeout", "wasCloseHandshakeTimeout", "wasServingFlashSocketPolicyFile",
    "wasMaxFramePayloadSizeExceeded", "wasMaxMessagePayloadSizeExceeded", "triggered",
), False)
FLAG_DEFAULTS.update(dict.fromkeys((
    "wasNotCleanReason", "localCloseCode", "localCloseReason", "remoteCloseCode",
    "remoteCloseReason", "openHandshakeTimeoutCall", "closeHandshakeTimeoutCall",
    "_perMessageCompress", "trackedTimings", "websocket_protocol_in_use",
    # Autobahn's own keep-alive is off (see ct.edge.keepalive.KeepAlive): its state never changes.
    "autoPingTimeoutCall", "autoPingPending", "autoPingPendingCall", "autoPingPendingSent",
), None))
FLAG_DEFAULTS["autoPingPendingSeq"] = 0
FLAG_DEFAULTS["websocket_version"] = 13  # RFC 6455; older drafts keep their own value
# Autobahn's per-frame and per-message state: attributes with no class default anywhere,
# set before they are read. Slots hold them, so they take no room in each ``__dict__``.
AUTOBAHN_SLOTS = (
    "state", "send_state", "data", "current_frame", "current_frame_masker", "frame_data",
    "frame_length", "inside_message", "message_data", "message_data_total_length",
    "message_is_binary", "_isMessageCompressed", "utf8validateIncomingCurrentMessage",
    "utf8validateLast", "utf8validator",
)
# Kept in ``__dict__`` only when they differ from the class's shared value.
_SHARED_WHEN_EMPTY = ("send_queue", "websocket_extensions_in_use")
_SHARED_ALWAYS = ("is_open", "is_closed", "_transport_details", "trafficStats")


class _Unobserved:
    """Stands for Autobahn's ``is_open``/``is_closed`` Deferreds when nothing waits on them."""

    __slots__ = ()
    called = False

    def callback(self, result=None) -> None:
        pass

    def errback(self, fail=None) -> None:
        pass


_UNOBSERVED = _Unobserved()


class TrimmedServerProtocol(WebSocketServerProtocol):
    """An Autobahn server protocol whose open connections keep only what they use.

    Subclasses call :meth:`trim_after_handshake` from ``onOpen`` and are served by a class
    made with :func:`trimmed_protocol_class`.
    """

    __slots__ = AUTOBAHN_SLOTS + ("transport", "factory", "connected")  # Twisted's three
    # Autobahn queues writes only for sync/chopped sends, which this server never makes;
    # an idle connection shares this empty tuple instead of owning an empty deque.
    send_queue = ()
    # Nothing reads Autobahn's transport details or traffic counters once the connection
    # is open, nor waits on these Deferreds (Autobahn does only on the client side).
    _transport_details = None
    websocket_extensions_in_use = ()
    is_open = is_closed = _UNOBSERVED

    def __init__(self):
        self.transport = self.factory = None
        self.connected = 0
        super().__init__()

    @property
    def peer(self) -> str:
        """Autobahn's peer string, worked out when a log line asks for it (not stored)."""
        t = self.transport
        return peer2str(t) if t is not None else "?"

    @peer.setter
    def peer(self, value) -> None:
        pass  # the same value as the getter's (the X-Forwarded-For option is off)

    def trim_after_handshake(self) -> None:
        """Forget what only the opening handshake needed: idle connections stay small."""
        transport = self.transport
        if isinstance(getattr(transport, "producer", None), HTTPChannel):
            # twisted.web's channel (and its request) registered itself as the transport's
            # producer; the websocket has replaced it, so let both go.
            transport.unregisterProducer()
        cls = type(self)
        drop = HANDSHAKE_LEFTOVERS
        if self._listeners is None:
            # Nothing observes this connection's events (nothing here calls ``on``): its
            # event list and per-event results need no copy of their own.
            drop = drop + ("_valid_events", "_results")
        kept = {}
        for name, value in self.__dict__.items():
            if name in drop or name in _SHARED_ALWAYS:
                continue
            if name in FLAG_DEFAULTS and getattr(cls, name, self) is value:
                continue
            if name in _SHARED_WHEN_EMPTY and not value:
                continue
            kept[name] = value
        self.__dict__ = kept  # a new dict, sized for what is left

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        if (sync or chopsize) and "send_queue" not in self.__dict__:
            self.send_queue = deque()  # Autobahn's queueing needs a queue of its own
        super().sendData(data, sync, chopsize)

    def onFrameEnd(self):
        try:
            return super().onFrameEnd()
        finally:
            # Autobahn keeps each frame's unmasker (~1 KB) until the next frame arrives;
            # an idle connection's last frame is often a pong.
            self.current_frame_masker = None


def trimmed_protocol_class(protocol: type, factory) -> type:
    """A subclass of ``protocol`` holding ``factory``'s options and the default flags.

    Autobahn copies every option from the factory into each connection unless the
    protocol class already has it: this class has them once, instead of ~60 dict entries
    per connection. A function option stays a plain function (not a method) on the class.
    """
    attrs = {name: _class_attr(getattr(factory, name)) for name in protocol.CONFIG_ATTRS}
    attrs.update(FLAG_DEFAULTS)
    attrs["trafficStats"] = TrafficStats()  # counted for all connections; nothing reads it
    return type(protocol.__name__, (protocol,), attrs)


def _class_attr(value):
    return staticmethod(value) if callable(value) else value
