"""The edge never sees plaintext: capture every byte between clients and edge and look for it."""

from __future__ import annotations

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.trial import unittest

from tests.edge.util import host_and_guests, start_edge, wait_for


class _Pipe(protocol.Protocol):
    """One side of the capturing proxy; appends what passes to a shared list."""

    peer = None

    def __init__(self, capture):
        self.capture = capture
        self.pending = []

    def dataReceived(self, data):
        self.capture.append(data)
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)
        else:
            self.pending.append(data)

    def connectionLost(self, reason):
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.loseConnection()


class CapturingProxy(protocol.Factory):
    def __init__(self, target_port):
        self.target_port = target_port
        self.capture = []

    def buildProtocol(self, addr):
        inbound = _Pipe(self.capture)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.target_port)

        def connected(outbound):
            inbound.peer, outbound.peer = outbound, inbound
            for data in inbound.pending:
                outbound.transport.write(data)
            inbound.pending = []

        factory = protocol.Factory.forProtocol(lambda: _Pipe(self.capture))
        endpoint.connect(factory).addCallback(connected)
        return inbound


class EncryptionTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_relayed_bytes_hold_no_plaintext_and_no_key(self):
        service, url = start_edge(self)
        edge_port = int(url.rsplit(":", 1)[1])
        proxy = CapturingProxy(edge_port)
        listening = reactor.listenTCP(0, proxy, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        via_proxy = f"http://127.0.0.1:{listening.getHost().port}"

        got = []
        host, guest = yield host_and_guests(self, via_proxy, frames={
            "bob": lambda f: got.append(f.data)})
        secret_text = "def launch_codes(): return 'PLAINTEXT-MARKER-0042'"
        secret_bytes = b"\x89PNG-BINARY-MARKER-0043" * 4
        host.send(secret_text)
        host.send(secret_bytes)
        yield wait_for(lambda: len(got) == 2)
        self.assertEqual(got, [secret_text, secret_bytes])  # the guest decrypts both

        wire = b"".join(proxy.capture)
        self.assertIn(b"/ws/session", wire)  # we did capture the session traffic
        self.assertGreater(len(wire), 2 * len(secret_bytes))
        for needle in (b"PLAINTEXT-MARKER-0042", b"BINARY-MARKER-0043", b"launch_codes",
                       host.key.key, host.key.to_text().encode()):
            self.assertNotIn(needle, wire)
