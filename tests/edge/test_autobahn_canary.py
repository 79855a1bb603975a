"""Canary: fails the moment an Autobahn (or Twisted) upgrade renames or removes an internal
the edge relies on (see :mod:`ct.edge.autobahn_trim` and the fast paths of :mod:`ct.edge.ws`).

Connections are opened in memory over ``StringTransport``: a plain Autobahn server protocol
shows what Autobahn itself stores per connection; an edge protocol shows what is left of it.
"""

from __future__ import annotations

import json
from collections import deque

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import TrafficStats, WebSocketProtocol
from twisted.internet import abstract, error, reactor, tcp
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python import failure
from twisted.trial import unittest

from ct.edge import autobahn_trim
from ct.edge.server import EdgeConfig, Edge
from ct.edge.ws import SessionProtocol, make_factory
from ct.protocol import errors
from tests.edge.util import masked_frame, upgrade_request

PEER = IPv4Address("TCP", "127.0.0.1", 40000)
# Autobahn 26's protocol options: a new, renamed or removed one needs a look at
# autobahn_trim.trimmed_protocol_class and at make_factory's setProtocolOptions call.
KNOWN_CONFIG_ATTRS = {
    "allowNullOrigin", "allowedOrigins", "allowedOriginsPatterns", "applyMask",
    "autoFragmentSize", "autoPingInterval", "autoPingRestartOnAnyTraffic", "autoPingSize",
    "autoPingTimeout", "closeHandshakeTimeout", "echoCloseCodeReason", "failByDrop",
    "flashSocketPolicy", "logFrames", "logOctets", "maskServerFrames", "maxConnections",
    "maxFramePayloadSize", "maxMessagePayloadSize", "openHandshakeTimeout",
    "perMessageCompressionAccept", "requireMaskedClientFrames", "serveFlashSocketPolicy",
    "tcpNoDelay", "trackTimings", "trustXForwardedFor", "utf8validateIncoming", "versions",
    "webStatus",
}
# Methods and attributes the edge overrides or calls besides the public API.
PROTOCOL_INTERNALS = (
    "_dataReceived", "_onMessage", "_fail_connection", "_connectionMade", "_connectionLost",
    "onMessageEnd", "onFrameEnd", "sendCloseFrame", "failHandshake", "dropConnection",
    "CONFIG_ATTRS", "STATE_OPEN", "STATE_CLOSED", "_listeners", "_valid_events", "_results",
)
# What ct.edge.ws._write_now reads on Twisted's TCP transport.
TCP_INTERNALS = ("TLS", "writeSomeData", "connected", "disconnecting")
FILE_DESCRIPTOR_STATE = ("_tempDataLen", "offset", "dataBuffer", "_writeDisconnected")


def open_connection(factory):
    """A server connection of ``factory`` over a ``StringTransport``, handshake done."""
    proto = factory.buildProtocol(PEER)
    transport = StringTransport(peerAddress=PEER)
    proto.makeConnection(transport)
    proto.dataReceived(upgrade_request())
    assert transport.value().startswith(b"HTTP/1.1 101 "), transport.value()
    return proto, transport


class AutobahnCanaryTests(unittest.TestCase):
    def plain_connection(self):
        factory = WebSocketServerFactory("ws://localhost")
        factory.protocol = WebSocketServerProtocol
        proto, transport = open_connection(factory)
        return proto, transport

    def test_protocol_options_are_the_known_ones(self):
        self.assertEqual(set(WebSocketServerProtocol.CONFIG_ATTRS), KNOWN_CONFIG_ATTRS)

    def test_internals_called_or_overridden_exist(self):
        for name in PROTOCOL_INTERNALS:
            self.assertTrue(hasattr(WebSocketServerProtocol, name), name)
        self.assertTrue(hasattr(WebSocketServerFactory("ws://localhost"), "_batched_timer"))
        for name in TCP_INTERNALS:
            self.assertTrue(hasattr(tcp.Server, name), name)
        descriptor = abstract.FileDescriptor()
        for name in FILE_DESCRIPTOR_STATE:
            self.assertTrue(hasattr(descriptor, name), name)

    def test_open_connection_holds_what_the_trim_drops_or_shares(self):
        proto, _ = self.plain_connection()
        self.assertEqual(proto.state, WebSocketProtocol.STATE_OPEN)
        stored = proto.__dict__
        for name in autobahn_trim.HANDSHAKE_LEFTOVERS + ("peer", "_valid_events", "_results"):
            self.assertIn(name, stored)
        for name, value in autobahn_trim.FLAG_DEFAULTS.items():
            self.assertIn(name, stored)
            self.assertEqual(stored[name], value, name)
        self.assertIsNone(proto._listeners)
        self.assertIsInstance(stored["send_queue"], deque)
        self.assertIsInstance(stored["trafficStats"], TrafficStats)
        self.assertEqual(stored["websocket_extensions_in_use"], [])
        self.assertIn("_transport_details", stored)
        for name in ("is_open", "is_closed"):
            self.assertTrue(callable(getattr(stored[name], "callback", None)), name)
        for name in proto.CONFIG_ATTRS:  # copied per connection unless the class has it
            self.assertIn(name, stored)

    def test_frames_set_the_slotted_state(self):
        proto, _ = self.plain_connection()
        proto.dataReceived(masked_frame(0x81, b"hello"))
        proto.dataReceived(masked_frame(0x8A, b""))  # a pong
        for name in autobahn_trim.AUTOBAHN_SLOTS:
            self.assertIn(name, proto.__dict__)

    def edge_connection(self):
        """An edge ``/ws/session`` connection that has hosted a session."""
        edge = Edge(Clock(), EdgeConfig(ping_interval=0))
        factory = make_factory(SessionProtocol, edge, "ws://localhost", 1 << 20, reactor)
        proto, transport = open_connection(factory)
        self.addCleanup(lambda: proto.transport is not None and proto.connectionLost(
            failure.Failure(error.ConnectionDone())))
        proto.dataReceived(masked_frame(0x81, json.dumps({"type": "host", "v": 1, "name": "a"}).encode()))
        self.assertIn(b'"hosted"', transport.value())
        return proto

    def test_idle_edge_connection_keeps_next_to_nothing_in_its_dict(self):
        proto = self.edge_connection()
        proto.dataReceived(masked_frame(0x8A, b""))  # a pong: an idle connection's usual last frame
        # Everything else is on the class or in slots (control_frame_data is set per pong).
        self.assertEqual(set(proto.__dict__), {"control_frame_data"})
        self.assertIsNone(proto.current_frame_masker)

    def test_edge_cancels_the_close_handshake_timer_of_a_peer_that_drops(self):
        proto = self.edge_connection()
        proto.close(errors.BAD_MESSAGE, "closing")
        self.assertIsNotNone(proto.closeHandshakeTimeoutCall)  # on Autobahn's batched timer
        proto.connectionLost(failure.Failure(error.ConnectionDone()))  # no close reply
        self.assertIsNone(proto.closeHandshakeTimeoutCall)
        self.assertEqual([c for c in reactor.getDelayedCalls()
                          if getattr(c.func, "__name__", "") == "_notify_bucket"], [])
