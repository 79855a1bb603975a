"""Random and mutated packets: the codec and the server never raise and do not grow.

Feeds well over 100,000 packets (random, mutated valid ones, and re-signed messages whose
attributes are garbage but whose credentials are right, so they reach the handlers) to
``stun.parse_message``, the UDP listener and the TCP framing. No sockets are opened: the
relay sockets and the peers are fakes, so nothing leaves the process.
"""

from __future__ import annotations

import gc
import random
import struct
import tracemalloc

from hypothesis import given, settings, strategies as st
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial import unittest

from ct.turn import datapath, server as server_module, sockets, stream as stream_module, stun
from ct.turn.policy import PeerPolicy
from ct.turn.sockets import UdpServerSocket
from ct.turn.stream import TurnStreamProtocol

from .support import make_server
from .test_stun import (SAMPLE_IPV4_RESPONSE, SAMPLE_IPV6_RESPONSE, SAMPLE_LONG_TERM_REQUEST,
                        SAMPLE_REQUEST)

PACKETS_PER_ROUND = 12_000
ROUNDS = 3  # 36,000 packets x 3 consumers (codec, UDP listener, TCP stream) = 108,000
ATTRIBUTE_TYPES = sorted(stun.KNOWN_ATTRIBUTES | {stun.SOFTWARE, stun.ALTERNATE_SERVER,
                                                  stun.PASSWORD_ALGORITHMS, 0x0777, 0x8777})
METHODS = [stun.BINDING, stun.ALLOCATE, stun.REFRESH, stun.SEND, stun.DATA,
           stun.CREATE_PERMISSION, stun.CHANNEL_BIND, 0x00A, 0xFFF]
CLASSES = [stun.REQUEST, stun.INDICATION, stun.SUCCESS, stun.ERROR]


class NullSocket:
    """Stands for every socket of the fuzzed server: sends nothing anywhere.

    Datagrams put in ``queue`` are what the next reads return.
    """

    def __init__(self):
        self.queue = []

    def sendto(self, data, addr):
        return len(data)

    def getsockname(self):
        return ("127.0.0.1", 3478)

    def recvfrom_into(self, buffer):
        if not self.queue:
            raise BlockingIOError(11, "no data")
        data, addr = self.queue.pop()
        data = data[:len(buffer)]
        buffer[:len(data)] = data
        return len(data), addr

    def setsockopt(self, *args):
        pass

    def getsockopt(self, *args):
        return 1 << 30

    def fileno(self):
        return -1

    def recvfrom(self, size):
        raise BlockingIOError(11, "no data")

    def close(self):
        pass


class FakeAddress:
    def __init__(self, host, port):
        self.host = host
        self.port = port


class FuzzReactor(Clock):
    """Time from a Clock; relay sockets are never polled."""

    def addReader(self, reader):
        pass

    def removeReader(self, reader):
        pass


class NullStreamTransport:
    disconnecting = False

    def write(self, data):
        pass

    def getPeer(self):
        return FakeAddress("127.0.0.1", 40001)

    def setTcpNoDelay(self, flag):
        pass

    def loseConnection(self):
        self.disconnecting = True


class Fuzzer:
    def __init__(self, server, seed):
        self.server = server
        self.rng = random.Random(seed)
        self.key = stun.long_term_key("alice", "test.realm", "pw")

    def signed(self, method, cls, attrs):
        tid = self.rng.randbytes(12)
        nonce = self.server.nonces.mint(self.server.clock.seconds())
        body = [(t, v(tid) if callable(v) else v) for t, v in attrs]
        body += [(stun.USERNAME, b"alice"), (stun.REALM, b"test.realm"),
                 (stun.NONCE, nonce.encode())]
        return stun.encode_message(method, cls, tid, body, key=self.key,
                                   integrity=self.rng.choice(["sha1", "sha256", "both"]))

    def seeds(self):
        peer = ("127.0.0.1", 9)
        xor_peer = lambda tid: stun.encode_xor_address(peer[0], peer[1], tid)  # noqa: E731
        return [
            stun.encode_message(stun.BINDING, stun.REQUEST, b"b" * 12),
            self.signed(stun.ALLOCATE, stun.REQUEST, [(stun.REQUESTED_TRANSPORT, b"\x11\0\0\0"),
                                                      (stun.LIFETIME, b"\0\0\x02\x58")]),
            self.signed(stun.REFRESH, stun.REQUEST, [(stun.LIFETIME, b"\0\0\x02\x58")]),
            self.signed(stun.CREATE_PERMISSION, stun.REQUEST, [(stun.XOR_PEER_ADDRESS, xor_peer)]),
            self.signed(stun.CHANNEL_BIND, stun.REQUEST, [
                (stun.CHANNEL_NUMBER, b"\x40\x00\0\0"), (stun.XOR_PEER_ADDRESS, xor_peer)]),
            stun.encode_message(stun.SEND, stun.INDICATION, b"s" * 12, [
                (stun.XOR_PEER_ADDRESS, stun.encode_xor_address("127.0.0.1", 9, b"s" * 12)),
                (stun.DATA_ATTR, b"payload")]),
            stun.encode_channel_data(0x4000, b"channel payload"),
            stun.encode_channel_data(0x4000, b"odd", pad=True),
            SAMPLE_REQUEST, SAMPLE_IPV4_RESPONSE, SAMPLE_IPV6_RESPONSE, SAMPLE_LONG_TERM_REQUEST,
        ]

    def garbage_signed(self):
        """A correctly signed message whose attributes are random: reaches the handlers."""
        rng = self.rng
        attrs = []
        for _ in range(rng.randint(0, 5)):
            kind = rng.choice(ATTRIBUTE_TYPES)
            if kind in (stun.USERNAME, stun.REALM, stun.NONCE, stun.MESSAGE_INTEGRITY,
                        stun.MESSAGE_INTEGRITY_SHA256, stun.FINGERPRINT):
                continue
            if kind == stun.XOR_PEER_ADDRESS and rng.random() < 0.5:
                host = rng.choice(["127.0.0.1", "10.0.0.1", "::1", "8.8.8.8", "224.0.0.1"])
                attrs.append((kind, lambda tid, h=host: stun.encode_xor_address(
                    h, rng.randint(0, 65535), tid)))
                continue
            attrs.append((kind, rng.randbytes(rng.choice([0, 1, 2, 4, 4, 4, 8, 20, 33]))))
        return self.signed(rng.choice(METHODS), rng.choice(CLASSES), attrs)

    def mutate(self, data):
        rng = self.rng
        data = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            op = rng.randrange(8)
            if op == 0 and data:
                i = rng.randrange(len(data))
                data[i] ^= 1 << rng.randrange(8)
            elif op == 1 and data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif op == 2:
                del data[rng.randrange(len(data) + 1):]
            elif op == 3:
                data += rng.randbytes(rng.randint(1, 16))
            elif op == 4 and len(data) >= 4:
                struct.pack_into("!H", data, 2, rng.randrange(65536))
            elif op == 5 and len(data) >= 24:
                at = 20 + 4 * rng.randrange((len(data) - 20) // 4)
                struct.pack_into("!HH", data, at, rng.choice(ATTRIBUTE_TYPES),
                                 rng.randrange(70))
            elif op == 6 and data:
                i = rng.randrange(len(data))
                data[i:i] = data[i:i + rng.randint(1, 12)]
            else:
                data = bytearray(rng.randbytes(rng.randint(0, 120)))
        return bytes(data)

    def packet(self, seeds):
        r = self.rng.random()
        if r < 0.15:
            return self.rng.randbytes(self.rng.randint(0, 200))
        if r < 0.4:
            return self.garbage_signed()
        if r < 0.5:
            return self.rng.choice(seeds)
        return self.mutate(self.rng.choice(seeds))


class FuzzTests(unittest.TestCase):
    timeout = 240

    def test_codec_and_server_survive_random_and_mutated_packets(self):
        failures = []

        def observe(event):
            if "log_failure" in event:
                failures.append(event["log_failure"])
        # Refusals are logged at every packet: route them to a cheap observer.
        for module in (server_module, datapath, sockets, stream_module):
            self.patch(module, "_log", Logger(observer=observe))
        reactor = FuzzReactor()
        reactor.advance(1_700_000_000)
        policy = PeerPolicy(allowed=["127.0.0.0/8"], denied=[("0.0.0.0/0", "any"),
                                                              ("::/0", "any")])
        # fake sockets (no descriptors): the Python data path; the compiled one is fuzzed
        # over real sockets in test_fastpath.py
        server = make_server(reactor, relay_ports=(50000, 50063), max_allocations=10,
                             bandwidth=10_000_000, fast_path=False)
        server.sockets.poller = None  # fake sockets: never polled
        server.policy = policy
        server.sockets.bind_relay = lambda port: NullSocket()
        server.start()
        self.addCleanup(server.stop)
        udp = UdpServerSocket(server, "127.0.0.1", 3478, sock=NullSocket())
        fuzzer = Fuzzer(server, seed=20240611)
        seeds = fuzzer.seeds()
        stream = self._stream(server)
        client = ("127.0.0.1", 40000)
        fed = 0
        parsed = 0
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        sizes = []
        for round_ in range(ROUNDS):
            for i in range(PACKETS_PER_ROUND):
                data = fuzzer.packet(seeds)
                try:
                    stun.parse_message(data)
                    parsed += 1
                except stun.StunError:
                    pass
                udp.sock.queue.append((data, client))
                udp.doRead()
                if stream.transport.disconnecting:
                    stream.connectionLost(None)
                    stream = self._stream(server)
                stream.dataReceived(data)
                fed += 3
                for allocation in list(server.table.by_key.values()):
                    if allocation.relay is not None:  # peer -> client direction
                        allocation.relay.sock.queue.append((data, ("127.0.0.1", 9)))
                        allocation.relay.doRead()
                if i % 1000 == 0:
                    reactor.advance(1)  # sweeps, nonce ageing, bandwidth windows
                    seeds = fuzzer.seeds()  # fresh nonces
            reactor.advance(4000)  # everything expires
            gc.collect()
            sizes.append(tracemalloc.get_traced_memory()[0])
        self.assertEqual(failures, [])
        self.assertGreaterEqual(fed, 100_000)
        self.assertGreater(parsed, 1000)
        self.assertGreater(server.stats.allocations_total, 0)
        self.assertGreater(server.stats.packets_to_peer, 0)
        self.assertGreater(server.stats.packets_to_client, 0)
        # Round 1 warms caches up; later rounds must not keep growing.
        growth = sizes[-1] - sizes[0]
        self.assertLess(growth, 256 * 1024, sizes)

    def _stream(self, server):
        protocol = TurnStreamProtocol(server)
        protocol.makeConnection(NullStreamTransport())
        return protocol


class PropertyTests(unittest.TestCase):
    @settings(max_examples=2000, deadline=None)
    @given(st.binary(max_size=300))
    def test_parse_raises_only_stun_error(self, data):
        try:
            message = stun.parse_message(data)
        except stun.StunError:
            return
        stun.check_fingerprint(message)
        stun.check_integrity(message, b"key")
        stun.check_integrity_sha256(message, b"key")

    @settings(max_examples=500, deadline=None)
    @given(st.sampled_from(METHODS), st.sampled_from(CLASSES), st.binary(min_size=12, max_size=12),
           st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=64)), max_size=6))
    def test_encode_parse_round_trip(self, method, cls, tid, attrs):
        attrs = [(t, v) for t, v in attrs if t not in (
            stun.MESSAGE_INTEGRITY, stun.MESSAGE_INTEGRITY_SHA256, stun.FINGERPRINT)]
        data = stun.encode_message(method, cls, tid, attrs, key=b"k")
        message = stun.parse_message(data)
        self.assertEqual((message.method, message.cls, message.transaction_id), (method, cls, tid))
        self.assertTrue(stun.check_integrity(message, b"k"))
        self.assertTrue(stun.check_fingerprint(message))
        for kind, value in attrs:
            self.assertIn(kind, message.attributes)
