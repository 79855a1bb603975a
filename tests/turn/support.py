"""Test helpers for the TURN server: a scripted client, a clocked reactor, waiting."""

from __future__ import annotations

import os

from twisted.internet import defer, task
from twisted.internet.protocol import DatagramProtocol

from ct.turn import auth, stun
from ct.turn.policy import PeerPolicy
from ct.turn.server import TurnConfig
from ct.turn.settings import TURN_SETTINGS
from ct.turn.sockets import UdpServerSocket
from ct.turn.stream import TurnStreamFactory, tls_factory
from ct.turn.tap import build_turn_server

# An edge's parsed settings as far as TURN is concerned: every default.
EDGE_DEFAULTS = {**{s.key: s.default for s in TURN_SETTINGS},
                 "server_url": None, "tls_cert": None, "tls_key": None}


class ReaderReactor(task.Clock):
    """Time and timers from a ``Clock``; the readers the reactor would watch, recorded."""

    def __init__(self):
        super().__init__()
        self.readers = []

    def addReader(self, reader):
        if reader not in self.readers:
            self.readers.append(reader)

    def removeReader(self, reader):
        if reader in self.readers:
            self.readers.remove(reader)


class ClockedReactor:
    """Time from a ``Clock``, sockets from the real reactor."""

    def __init__(self, clock, real):
        self.clock = clock
        self.real = real

    def seconds(self):
        return self.clock.seconds()

    def callLater(self, *args, **kwargs):
        return self.clock.callLater(*args, **kwargs)

    def addReader(self, reader):
        return self.real.addReader(reader)

    def removeReader(self, reader):
        return self.real.removeReader(reader)


class FakeLink:
    """Stands for a client's listener/connection: records what is sent to the client."""

    def __init__(self, stream=False):
        self.stream = stream
        self.sent = []

    def sink_for(self, addr):
        # A sink's argument is only valid during the call (it may be a reused buffer).
        return lambda data: self.sent.append(bytes(data))


def make_server(reactor, allow=("127.0.0.0/8",), users=None, secret="s3cret", **config):
    config.setdefault("relay_host", "127.0.0.1")
    config.setdefault("relay_ports", (50000, 59999))
    credentials = auth.Credentials("test.realm", users if users is not None else {"alice": "pw"},
                                   secret=secret)
    return build_turn_server(TurnConfig(realm="test.realm", **config), credentials,
                             PeerPolicy(allowed=allow), reactor)


def listen_on_loopback(test, server, reactor, tls=None) -> dict:
    """UDP and TCP listeners for ``server`` on 127.0.0.1 (TLS too with a context), closed
    at the test's cleanup; their ports by transport."""
    udp = UdpServerSocket(server, "127.0.0.1", 0)
    test.addCleanup(udp.close)
    ports = {"udp": udp.port}
    listeners = {"tcp": lambda: reactor.listenTCP(0, TurnStreamFactory(server),
                                                  interface="127.0.0.1")}
    if tls is not None:
        listeners["tls"] = lambda: reactor.listenTCP(
            0, tls_factory(tls, TurnStreamFactory(server)), interface="127.0.0.1")
    for transport, listen in listeners.items():
        port = listen()
        test.addCleanup(port.stopListening)
        ports[transport] = port.getHost().port
    return ports


class ScriptedClient:
    """Builds signed requests for one client 5-tuple and feeds them to ``server``."""

    def __init__(self, server, addr=("198.51.100.1", 40000), username="alice", password="pw",
                 link=None, key=None, integrity="sha1", algorithm=None):
        self.server = server
        self.addr = addr
        self.key = addr if key is None else key
        self.link = link or FakeLink()
        self.username = username
        self.password = password
        self.nonce = None
        self.realm = None
        self.integrity = integrity
        self.algorithm = algorithm

    def raw(self, data):
        reply = self.server.handle_stun(data, self.addr, self.key, self.link)
        return None if reply is None else stun.parse_message(reply)

    def request(self, method, attrs=(), sign=True, tid=None, _retried=False):
        """Send a request; ``attrs`` may be a function of the transaction id.

        A 401/438 challenge is answered once, with a fresh transaction id.
        """
        data = self.build(method, attrs, sign, tid)
        reply = self.raw(data)
        if self.take_challenge(reply, sign, _retried):
            return self.request(method, attrs, sign, None, _retried=True)
        return reply

    def take_challenge(self, reply, sign, retried):
        """Remember the nonce of a 401/438 answer; True when the request should be retried."""
        if sign and not retried and error_code(reply) in (401, 438) and stun.NONCE in reply:
            self.nonce = reply.get(stun.NONCE)
            self.realm = reply.get(stun.REALM)
            return True
        return False

    def build(self, method, attrs=(), sign=True, tid=None):
        """The request's bytes, signed once a nonce is known (sets ``last_key``)."""
        tid = tid or os.urandom(12)
        body = list(attrs(tid) if callable(attrs) else attrs)
        key = None
        if sign and self.nonce is not None:
            alg = self.algorithm or stun.ALGORITHM_MD5
            body += [(stun.USERNAME, self.username.encode()), (stun.REALM, self.realm),
                     (stun.NONCE, self.nonce)]
            if self.algorithm is not None:
                body += [(stun.PASSWORD_ALGORITHMS,
                          stun.encode_password_algorithms(list(auth.SUPPORTED_ALGORITHMS))),
                         (stun.PASSWORD_ALGORITHM, alg.to_bytes(2, "big") + b"\0\0")]
            key = stun.long_term_key(self.username, self.realm.decode(), self.password, alg)
        self.last_key = key
        return stun.encode_message(method, stun.REQUEST, tid, body, key=key,
                                   integrity=self.integrity)

    def allocate(self, lifetime=None, extra=()):
        attrs = [(stun.REQUESTED_TRANSPORT, stun.encode_requested_transport(17))]
        if lifetime is not None:
            attrs.append((stun.LIFETIME, stun.encode_u32(lifetime)))
        return self.request(stun.ALLOCATE, attrs + list(extra))

    def refresh(self, lifetime):
        return self.request(stun.REFRESH, [(stun.LIFETIME, stun.encode_u32(lifetime))])

    def permit(self, *hosts):
        return self.request(stun.CREATE_PERMISSION, lambda tid: [
            (stun.XOR_PEER_ADDRESS, stun.encode_xor_address(h, 0, tid)) for h in hosts])

    def bind(self, number, peer):
        return self.request(stun.CHANNEL_BIND, lambda tid: [
            (stun.CHANNEL_NUMBER, stun.encode_channel_number(number)),
            (stun.XOR_PEER_ADDRESS, stun.encode_xor_address(peer[0], peer[1], tid))])

    def send_indication(self, peer, payload):
        tid = os.urandom(12)
        data = stun.encode_message(stun.SEND, stun.INDICATION, tid, [
            (stun.XOR_PEER_ADDRESS, stun.encode_xor_address(peer[0], peer[1], tid)),
            (stun.DATA_ATTR, payload)])
        return self.raw(data)


class _Inbox(DatagramProtocol):
    def __init__(self):
        self.received = []

    def datagramReceived(self, data, addr):
        self.received.append(data)


class UdpClient(ScriptedClient):
    """A :class:`ScriptedClient` over a real UDP socket: ``call`` returns a Deferred."""

    def __init__(self, reactor, server_addr, interface="127.0.0.1", **kwargs):
        self.reactor = reactor
        self.server_addr = server_addr
        self.inbox = _Inbox()
        self.port = reactor.listenUDP(0, self.inbox, interface=interface)
        super().__init__(None, addr=self.port.getHost().host, **kwargs)
        self.addr = (self.port.getHost().host, self.port.getHost().port)

    def close(self):
        return self.port.stopListening()

    def send(self, data):
        self.port.write(data, self.server_addr)

    @defer.inlineCallbacks
    def exchange(self, data, timeout=5.0):
        """Send ``data``; the answer with its transaction id, failing after ``timeout``."""
        tid = data[8:20]
        self.send(data)
        found = []

        def answered():
            found.extend(m for m in self.inbox.received if m[8:20] == tid)
            return found
        yield wait_until(self.reactor, answered, timeout, f"no answer within {timeout} s")
        self.inbox.received = [m for m in self.inbox.received if m[8:20] != tid]
        return stun.parse_message(found[0])

    @defer.inlineCallbacks
    def call(self, method, attrs=(), sign=True):
        """Like ``request``: a 401/438 challenge is answered once."""
        reply = yield self.exchange(self.build(method, attrs, sign))
        if self.take_challenge(reply, sign, False):
            reply = yield self.exchange(self.build(method, attrs, sign))
        return reply

    def allocate_call(self):
        return self.call(stun.ALLOCATE,
                         [(stun.REQUESTED_TRANSPORT, stun.encode_requested_transport(17))])

    def permit_call(self, *hosts):
        return self.call(stun.CREATE_PERMISSION, lambda tid: [
            (stun.XOR_PEER_ADDRESS, stun.encode_xor_address(h, 0, tid)) for h in hosts])


@defer.inlineCallbacks
def wait_until(reactor, predicate, timeout=5.0, message="condition not met", step=0.01):
    """Poll ``predicate`` on the real reactor until it is true; fail the test (AssertionError)
    after ``timeout`` seconds. ``message`` may be a callable, asked only on failure."""
    deadline = reactor.seconds() + timeout
    while not predicate():
        if reactor.seconds() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"{text} (waited {timeout} s)")
        yield task.deferLater(reactor, step, lambda: None)


def error_code(message):
    if message is None or message.cls != stun.ERROR:
        return 0
    return stun.decode_error(message.get(stun.ERROR_CODE))[0]
