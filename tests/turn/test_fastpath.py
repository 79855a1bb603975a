"""The compiled UDP data path (``ct/turn/_fastpath.c``) and its Python fallback.

Every rule of ``datapath.py`` holds on both paths over real sockets: permission, channel
binding, the peer policy, bandwidth budget, lifetimes, counters. A differential fuzz feeds
the same random and mutated datagrams to a server on each path and compares what reached
the peer and the client and what was counted. The real-socket suites of test_server.py
and test_interop.py run again here on the fallback (they run on the fast path there).
"""

from __future__ import annotations

import gc
import os
import random
import socket
import struct
import tracemalloc

from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial import unittest

from ct.turn import datapath as datapath_module
from ct.turn import server as server_module
from ct.turn import sockets as sockets_module
from ct.turn import stun
from ct.turn.sockets import FAST_PATH, UdpServerSocket
from tests.turn import test_interop, test_server

from .support import (ClockedReactor, ReaderReactor, ScriptedClient, error_code, make_server,
                      wait_until)

BUILD_HINT = ("ct.turn._fastpath is not built: `python setup.py build_ext --inplace` (or "
              "`make setup`, which installs the project editable) builds it")


class ExtensionTests(unittest.TestCase):
    def test_extension_is_built_and_chosen(self):
        self.assertIsNotNone(FAST_PATH, BUILD_HINT)
        fast = make_server(Clock(), fast_path=True)
        self.assertIs(fast.sockets.fast, FAST_PATH)
        self.assertIs(fast.sockets.poller.fast, FAST_PATH)
        forced_off = make_server(Clock(), fast_path=False)
        self.assertIsNone(forced_off.sockets.fast)
        self.assertIsNone(forced_off.sockets.poller.fast)

    def udp_pair(self):
        listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.setblocking(False)
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(client.close)
        client.bind(("127.0.0.1", 0))
        return listener, client

    def test_calls_do_not_nest(self):
        # a callback that re-enters the fast path gets an error, not clobbered buffers
        self.assertIsNotNone(FAST_PATH, BUILD_HINT)
        listener, client = self.udp_pair()
        request = stun.encode_message(stun.BINDING, stun.REQUEST, b"x" * 12)
        client.sendto(request, listener.getsockname())
        seen, nested = [], []

        def on_stun(data, addr):
            seen.append((data, addr))
            try:
                FAST_PATH.drain_listener(listener.fileno(), {}, on_stun, None, 1)
            except RuntimeError as e:
                nested.append(str(e))
            return True
        self.assertEqual(FAST_PATH.drain_listener(listener.fileno(), {}, on_stun, None, 8),
                         (0, 0, 0))
        self.assertEqual(seen, [(request, client.getsockname())])
        self.assertEqual(nested, ["the fast path is already running"])

    def test_tables_of_any_type(self):
        # the tables are read through attributes: a plain object works like an Allocation
        self.assertIsNotNone(FAST_PATH, BUILD_HINT)
        listener, client = self.udp_pair()
        relay, peer = self.udp_pair()

        class Table:
            pass
        table = Table()
        table.channels = {0x4000: peer.getsockname()}
        table.permissions = {"127.0.0.1": 0.0}
        table.budget = float("inf")
        table.relay_fd = relay.fileno()
        allocations = {client.getsockname(): table}
        drops = []

        def drop(allocation, reason, detail):
            drops.append((allocation, reason, detail))
        client.sendto(stun.encode_channel_data(0x4000, b"hello"), listener.getsockname())
        self.assertEqual(FAST_PATH.drain_listener(listener.fileno(), allocations, None, drop,
                                                  8), (1, 5, 0))
        self.assertEqual(peer.recvfrom(100), (b"hello", relay.getsockname()))
        table.budget = 3.0
        client.sendto(stun.encode_channel_data(0x4000, b"hello"), listener.getsockname())
        self.assertEqual(FAST_PATH.drain_listener(listener.fileno(), allocations, None, drop,
                                                  8), (0, 0, 0))
        self.assertEqual((drops, table.budget), ([(table, "bandwidth limit", None)], -2.0))

    def test_datagram_without_address_dropped(self):
        self.assertIsNotNone(FAST_PATH, BUILD_HINT)
        listener, client = self.udp_pair()  # first a UDP datagram: an address in the slot
        client.sendto(b"\xff" * 8, listener.getsockname())
        self.assertEqual(FAST_PATH.drain_listener(listener.fileno(), {}, None, None, 8),
                         (0, 0, 1))
        unix_a, unix_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(unix_a.close)
        self.addCleanup(unix_b.close)
        unix_b.setblocking(False)
        unix_a.send(stun.encode_message(stun.BINDING, stun.REQUEST, b"x" * 12))
        called = []
        self.assertEqual(FAST_PATH.drain_listener(unix_b.fileno(), {}, called.append, None, 8),
                         (0, 0, 1))
        self.assertEqual(called, [])


class OverSockets:
    """A real client, listener, relay and peers (mixed into a ``ServerTestBase`` on each
    path)."""

    def config(self):
        return {"bandwidth": 0}

    @defer.inlineCallbacks
    def setUp(self):
        super().setUp()
        self.udp = UdpServerSocket(self.server, "127.0.0.1", 0)
        self.addCleanup(self.udp.close)
        self.client_socket = test_server.PeerSocket()
        port = reactor.listenUDP(0, self.client_socket, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.client_addr = ("127.0.0.1", port.getHost().port)
        self.server_addr = ("127.0.0.1", self.udp.port)
        self.client = ScriptedClient(self.server, addr=self.client_addr, link=self.udp)
        self.assertEqual(self.client.allocate().cls, stun.SUCCESS)
        self.allocation = self.server.table.get(self.client_addr)
        self.relay = ("127.0.0.1", self.allocation.relay_address[1])
        yield None

    def send(self, data):
        self.client_socket.transport.write(data, self.server_addr)

    def send_indication(self, peer, payload, fingerprint=False, tid=None):
        tid = tid or os.urandom(12)
        self.send(stun.encode_message(stun.SEND, stun.INDICATION, tid, [
            (stun.XOR_PEER_ADDRESS, stun.encode_xor_address(peer[0], peer[1], tid)),
            (stun.DATA_ATTR, payload)], add_fingerprint=fingerprint))

    @defer.inlineCallbacks
    def settle(self, predicate, message):
        """Wait for ``predicate``; then one more round trip through the listener (a
        Binding request), so datagrams that should have been dropped had their chance."""
        yield wait_until(reactor, predicate, message=message)
        tid = os.urandom(12)
        before = len(self.client_socket.received)
        self.send(stun.encode_message(stun.BINDING, stun.REQUEST, tid))
        yield wait_until(reactor, lambda: len(self.client_socket.received) > before,
                         message="no Binding answer")



class RulesOverSockets(OverSockets):
    def test_path_under_test(self):
        self.assertEqual(self.server.sockets.fast is not None, self.fast_path)

    @defer.inlineCallbacks
    def test_send_to_a_peer_without_permission_is_dropped(self):
        peer, peer_addr = self.peer()
        self.send_indication(peer_addr, b"not permitted")
        yield self.settle(lambda: self.server.stats.refusals.get("no permission for peer"),
                          "the drop was not counted")
        self.assertEqual(peer.received, [])
        self.assertEqual(self.server.stats.packets_to_peer, 0)
        # with the permission it goes, FINGERPRINT checked when present
        self.assertEqual(self.client.permit("127.0.0.1").cls, stun.SUCCESS)
        self.send_indication(peer_addr, b"permitted", fingerprint=True)
        yield wait_until(reactor, lambda: peer.received, message="Send indication lost")
        self.assertEqual(peer.received, [(b"permitted", self.relay)])

    @defer.inlineCallbacks
    def test_bad_fingerprint_and_odd_indications_are_not_relayed(self):
        peer, peer_addr = self.peer()
        self.assertEqual(self.client.permit("127.0.0.1").cls, stun.SUCCESS)
        tid = os.urandom(12)
        good = stun.encode_message(stun.SEND, stun.INDICATION, tid, [
            (stun.XOR_PEER_ADDRESS, stun.encode_xor_address(*peer_addr, tid)),
            (stun.DATA_ATTR, b"abc")])
        self.send(good[:-1] + bytes([good[-1] ^ 1]))  # FINGERPRINT off by one bit
        self.send(good[:-8])  # header length now wrong
        no_data = stun.encode_message(stun.SEND, stun.INDICATION, tid, [
            (stun.XOR_PEER_ADDRESS, stun.encode_xor_address(*peer_addr, tid))])
        self.send(no_data)
        self.send(good)
        yield self.settle(lambda: peer.received, "the good indication was lost")
        self.assertEqual(peer.received, [(b"abc", self.relay)])
        self.assertEqual(self.server.stats.refusals.get("Send indication without peer or data"),
                         1)
        self.assertEqual(self.server.stats.dropped_packets, 3)

    @defer.inlineCallbacks
    def test_channel_rules_and_counters(self):
        peer, peer_addr = self.peer()
        self.send(stun.encode_channel_data(0x4001, b"unbound"))
        yield self.settle(lambda: self.server.stats.refusals.get(
            "ChannelData on an unbound channel"), "the unbound channel was not refused")
        self.assertEqual(self.client.bind(0x4001, peer_addr).cls, stun.SUCCESS)
        self.send(b"\x40\x01\x00\x09abc")  # announces 9 bytes, carries 3
        self.send(stun.encode_channel_data(0x4001, b"bound"))
        yield self.settle(lambda: peer.received, "ChannelData lost")
        self.assertEqual(peer.received, [(b"bound", self.relay)])
        refusals = self.server.stats.refusals
        self.assertEqual((refusals.get("ChannelData on an unbound channel"),
                          refusals.get("truncated ChannelData")), (1, 1))
        # peer -> client: a bound peer as ChannelData, another permitted one as a Data
        # indication (its XOR-PEER-ADDRESS decodes with the indication's own id), and an
        # unpermitted peer not at all
        other, other_addr = self.peer()
        stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(stranger.close)
        stranger.bind(("127.0.0.2", 0))
        self.client_socket.received = []
        stranger.sendto(b"stranger", self.relay)
        peer.transport.write(b"hello", self.relay)
        other.transport.write(b"data indication", self.relay)
        yield wait_until(reactor, lambda: len(self.client_socket.received) >= 2,
                         message="peer data lost")
        received = [data for data, _ in self.client_socket.received]
        self.assertIn(stun.encode_channel_data(0x4001, b"hello"), received)
        indication = stun.parse_message([d for d in received if d[0] < 0x40][0])
        self.assertEqual((indication.method, indication.cls), (stun.DATA, stun.INDICATION))
        self.assertEqual(indication.get(stun.DATA_ATTR), b"data indication")
        self.assertEqual(stun.decode_xor_address(indication.get(stun.XOR_PEER_ADDRESS),
                                                 indication.transaction_id), other_addr)
        yield self.settle(lambda: self.server.stats.refusals.get(
            "data from a peer without permission"), "the stranger was not refused")
        self.assertEqual(len(self.client_socket.received), 3)  # two relayed + Binding
        stats = self.server.stats
        self.assertEqual((stats.packets_to_peer, stats.bytes_to_peer), (1, 5))
        self.assertEqual((stats.packets_to_client, stats.bytes_to_client), (2, 20))

    @defer.inlineCallbacks
    def test_expired_permission_and_deleted_allocation_stop_the_data(self):
        peer, peer_addr = self.peer()
        self.assertEqual(self.client.bind(0x4000, peer_addr).cls, stun.SUCCESS)
        self.assertEqual(self.client.refresh(3600).cls, stun.SUCCESS)
        self.clock.advance(601)  # channel (600 s) and permission (300 s) expired
        self.send(stun.encode_channel_data(0x4000, b"late"))
        peer.transport.write(b"late too", self.relay)
        yield self.settle(lambda: self.server.stats.refusals.get(
            "ChannelData on an unbound channel"), "the late ChannelData was not refused")
        yield wait_until(reactor, lambda: self.server.stats.refusals.get(
            "data from a peer without permission"), message="the late peer was not refused")
        self.assertEqual(peer.received, [])
        self.assertEqual(self.client.refresh(0).cls, stun.SUCCESS)  # deleted
        dropped = self.server.stats.dropped_packets
        self.send(stun.encode_channel_data(0x4000, b"gone"))
        yield self.settle(lambda: self.server.stats.dropped_packets > dropped,
                          "ChannelData without allocation not counted")
        self.assertEqual(peer.received, [])


class BatchesOverSockets(OverSockets):
    """More datagrams than one system call moves (64): every one arrives, intact and in
    order, both ways; one too big to frame is dropped, not sent broken."""

    def config(self):
        return {"bandwidth": 0, "relay_socket_buffer": 1 << 21}

    def roomy(self, sock):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        return sock

    def test_many_datagrams_in_order_both_ways(self):
        peers = [self.peer() for _ in range(3)]
        for number, (_, address) in enumerate(peers, 0x4000):
            self.assertEqual(self.client.bind(number, address).cls, stun.SUCCESS)
        # the reactor does not run between these calls: the listener and the relay
        # sockets hold them all, and one doRead / serve moves them
        client = self.roomy(self.client_socket.transport.socket)
        for peer, _ in peers:
            self.roomy(peer.transport.socket)
        for i in range(300):
            client.sendto(stun.encode_channel_data(0x4000 + i % 3, b"%04d" % i + b"x" * i),
                          self.server_addr)
        self.udp.doRead()  # at most its batch (256) now, the rest at its next readiness
        self.udp.doRead()
        for number, (peer, _) in enumerate(peers):
            sock = peer.transport.socket
            got = []
            for _ in range(200):
                try:
                    got.append(sock.recv(2048))
                except BlockingIOError:
                    break
            self.assertEqual(got, [b"%04d" % i + b"x" * i for i in range(number, 300, 3)])
            for data in got:  # echoed, in bulk
                sock.sendto(data, self.relay)
        for _ in range(10):  # each call serves a bounded number of rounds
            self.server.sockets.poller.serve()
        received = []
        for _ in range(400):
            try:
                received.append(client.recv(2048))
            except BlockingIOError:
                break
        self.assertEqual(sorted(received), sorted(
            stun.encode_channel_data(0x4000 + i % 3, b"%04d" % i + b"x" * i)
            for i in range(300)))
        for number in range(3):  # in order per peer
            mine = [d for d in received if d[1] == number]
            self.assertEqual(mine, sorted(mine, key=lambda d: int(d[4:8])))
        stats = self.server.stats
        self.assertEqual((stats.packets_to_peer, stats.packets_to_client), (300, 300))
        self.assertEqual(stats.dropped_packets, 0)

    def test_datagram_too_big_to_frame_dropped(self):
        peer, peer_addr = self.peer()
        self.assertEqual(self.client.permit("127.0.0.1").cls, stun.SUCCESS)
        sock = peer.transport.socket
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        sock.sendto(b"z" * 65_500, self.relay)
        sock.sendto(b"small", self.relay)
        self.server.sockets.poller.serve()
        client = self.client_socket.transport.socket
        got = []
        for _ in range(10):
            try:
                got.append(client.recv(70_000))
            except BlockingIOError:
                break
        self.assertEqual([stun.parse_message(d).get(stun.DATA_ATTR) for d in got], [b"small"])
        self.assertEqual(self.server.stats.dropped_packets, 1)


class BandwidthOverSockets(OverSockets):
    def config(self):
        return {"bandwidth": 1000}  # bytes per sweep interval (1 s)

    @defer.inlineCallbacks
    def test_bandwidth_budget_both_ways(self):
        peer, peer_addr = self.peer()
        self.assertEqual(self.client.bind(0x4000, peer_addr).cls, stun.SUCCESS)
        for _ in range(5):
            self.send(stun.encode_channel_data(0x4000, b"x" * 300))
        yield self.settle(lambda: len(peer.received) >= 3, "the budget's datagrams lost")
        self.assertEqual(len(peer.received), 3)
        self.assertEqual(self.server.stats.refusals.get("bandwidth limit"), 1)  # logged once
        self.assertEqual(self.server.stats.dropped_packets, 2)
        peer.transport.write(b"y" * 300, self.relay)  # the budget is spent both ways
        yield self.settle(lambda: self.server.stats.dropped_packets == 3,
                          "the peer's datagram was not dropped")
        self.clock.advance(1)  # the next window
        peer.transport.write(b"y" * 300, self.relay)
        yield wait_until(reactor, lambda: any(d[0] == 0x40 for d, _ in
                                              self.client_socket.received),
                         message="the next window's datagram was lost")


class PolicyOverSockets(OverSockets):
    """The default peer policy: loopback is internal, never a peer."""

    def make(self, **kwargs):
        kwargs.setdefault("fast_path", self.fast_path)
        return make_server(self.reactor, allow=(), **kwargs)

    @defer.inlineCallbacks
    def test_internal_peer_refused_and_never_relayed(self):
        peer, peer_addr = self.peer()
        self.assertEqual(error_code(self.client.permit("127.0.0.1")), 403)
        self.assertEqual(error_code(self.client.bind(0x4000, peer_addr)), 403)
        self.send_indication(peer_addr, b"to loopback")
        self.send(stun.encode_channel_data(0x4000, b"to loopback"))
        yield self.settle(lambda: self.server.stats.refusals.get("no permission for peer"),
                          "the Send indication was not refused")
        self.assertEqual(peer.received, [])
        self.assertEqual(self.server.stats.packets_to_peer, 0)


class FastRules(RulesOverSockets, test_server.ServerTestBase):
    fast_path = True


class FallbackRules(RulesOverSockets, test_server.ServerTestBase):
    fast_path = False


class FastBatches(BatchesOverSockets, test_server.ServerTestBase):
    fast_path = True


class FallbackBatches(BatchesOverSockets, test_server.ServerTestBase):
    fast_path = False


class FastBandwidth(BandwidthOverSockets, test_server.ServerTestBase):
    fast_path = True


class FallbackBandwidth(BandwidthOverSockets, test_server.ServerTestBase):
    fast_path = False


class FastPolicy(PolicyOverSockets, test_server.ServerTestBase):
    fast_path = True


class FallbackPolicy(PolicyOverSockets, test_server.ServerTestBase):
    fast_path = False


# ---------------------------------------------------------------- differential fuzz

class SilentReactor(Clock):
    """Time from a Clock; sockets are served by the test, not by a reactor."""

    def addReader(self, reader):
        pass

    def removeReader(self, reader):
        pass


class Rig:
    """A server on one path, its listener, an allocation with a channel and a permission,
    a client socket and two peers (one bound to channel 0x4000, one permitted only)."""

    def __init__(self, test, fast_path, reactor=None, **config):
        self.reactor = SilentReactor() if reactor is None else reactor
        self.reactor.advance(1_700_000_000)
        config = {"bandwidth": 60_000, "unauthenticated_rate": 0, **config}
        self.server = make_server(self.reactor, fast_path=fast_path, **config)
        test.addCleanup(self.server.stop)
        self.udp = UdpServerSocket(self.server, "127.0.0.1", 0)
        test.addCleanup(self.udp.close)
        self.client = self._socket(test, "127.0.0.1")
        self.peers = [self._socket(test, "127.0.0.1"), self._socket(test, "127.0.0.1")]
        self.stranger = self._socket(test, "127.0.0.2")
        scripted = ScriptedClient(self.server, addr=self.client.getsockname(), link=self.udp)
        assert scripted.allocate().cls == stun.SUCCESS
        assert scripted.bind(0x4000, self.peers[0].getsockname()).cls == stun.SUCCESS
        assert scripted.permit("127.0.0.1").cls == stun.SUCCESS
        allocation = self.server.table.get(self.client.getsockname())
        self.relay = ("127.0.0.1", allocation.relay_address[1])
        self.names = {sock.getsockname(): name for name, sock in
                      (("peer 0", self.peers[0]), ("peer 1", self.peers[1]),
                       ("stranger", self.stranger))}

    @staticmethod
    def _socket(test, host):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        test.addCleanup(sock.close)
        sock.bind((host, 0))
        sock.setblocking(False)
        return sock

    def from_client(self, data):
        self.client.sendto(data, ("127.0.0.1", self.udp.port))
        self.udp.doRead()

    def from_peer(self, index, data):
        (self.peers[index] if index < 2 else self.stranger).sendto(data, self.relay)
        self.server.sockets.poller.serve()

    def tick(self):
        self.reactor.advance(1)  # sweeps: bandwidth windows

    @staticmethod
    def drain(sock):
        out = []
        for _ in range(10_000):
            try:
                out.append(sock.recv(70_000))
            except BlockingIOError:
                return out
        raise AssertionError("socket never drained")

    def outcome(self):
        """What reached the client (Data indications without their random id) and each
        peer, and what was counted."""
        client = []
        for data in self.drain(self.client):
            if data[0] < 0x40 and len(data) >= 20 and data[2:4] == struct.pack(
                    "!H", len(data) - 20) and data[:2] == b"\x00\x17":
                m = stun.parse_message(data)
                sender = stun.decode_xor_address(m.get(stun.XOR_PEER_ADDRESS),
                                                 m.transaction_id)
                client.append(("data", self.names[sender], m.get(stun.DATA_ATTR)))
            elif data[0] < 0x40:  # an answer: it names the client's port, which differs
                client.append(("answer", data[:2], len(data)))
            else:
                client.append(data)
        stats = self.server.stats.snapshot()
        return client, [self.drain(p) for p in self.peers], stats


def mutations(rng, seeds, count):
    for _ in range(count):
        data = bytearray(rng.choice(seeds))
        kind = rng.randrange(10)  # 5-9: the seed as it is
        if kind == 0 and data:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif kind == 1:
            data = data[:rng.randrange(len(data) + 1)]
        elif kind == 2 and len(data) >= 4:
            struct.pack_into("!H", data, 2, rng.randrange(0, 400))
        elif kind == 3:
            data += rng.randbytes(rng.randrange(1, 12))
        elif kind == 4:
            data = bytearray(rng.randbytes(rng.randrange(0, 80)))
        yield bytes(data)


class DifferentialFuzzTests(unittest.TestCase):
    """The same datagrams through a fast and a fallback server: the same datagrams out,
    the same counters and refusals."""

    timeout = 240
    ROUNDS = 5
    PER_ROUND = 1500

    def setUp(self):
        self.assertIsNotNone(FAST_PATH, BUILD_HINT)
        failures = []

        def observe(event):
            if "log_failure" in event:
                failures.append(event["log_failure"])
        for module in (server_module, datapath_module, sockets_module):
            self.patch(module, "_log", Logger(observer=observe))
        self.failures = failures

    def seeds(self, rig):
        peer0 = rig.peers[0].getsockname()
        peer1 = rig.peers[1].getsockname()
        tid = b"t" * 12

        def send(peer, payload, fingerprint):
            return stun.encode_message(stun.SEND, stun.INDICATION, tid, [
                (stun.XOR_PEER_ADDRESS, stun.encode_xor_address(peer[0], peer[1], tid)),
                (stun.DATA_ATTR, payload)], add_fingerprint=fingerprint)
        return [
            stun.encode_channel_data(0x4000, b"c" * 40),
            stun.encode_channel_data(0x4001, b"unbound"),
            stun.encode_channel_data(0x4000, b"p" * 3, pad=True),
            b"\x40\x00\x01\x00short",
            send(peer0, b"s" * 30, False),
            send(peer1, b"f" * 31, True),
            send(("127.0.0.9", 9), b"no permission", False),
            send(("::1", 9), b"v6", False),
            stun.encode_message(stun.SEND, stun.INDICATION, tid, [
                (stun.XOR_PEER_ADDRESS, stun.encode_xor_address(*peer1, tid)),
                (stun.MESSAGE_INTEGRITY, b"\0" * 20), (stun.DATA_ATTR, b"after MI")]),
            stun.encode_message(stun.BINDING, stun.REQUEST, tid),
            stun.encode_message(stun.DATA, stun.INDICATION, tid),
            b"\xff" * 24,
        ]

    def test_same_outcome_on_both_paths(self):
        fast, slow = Rig(self, True), Rig(self, False)
        self.assertIsNotNone(fast.server.sockets.fast)
        self.assertIsNone(slow.server.sockets.fast)
        seeds_fast, seeds_slow = self.seeds(fast), self.seeds(slow)
        rng = random.Random(20261202)
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        sizes = []
        for round_ in range(self.ROUNDS):
            plan = []
            for i in range(self.PER_ROUND):
                which = rng.randrange(len(seeds_fast))
                plan.append((rng.random() < 0.5, which, rng.randrange(4), rng.random()))
            for rig, seeds in ((fast, seeds_fast), (slow, seeds_slow)):
                local = random.Random(round_)
                for to_peer, which, peer, roll in plan:
                    if to_peer:
                        data = next(mutations(local, [seeds[which]], 1))
                        rig.from_client(data)
                    else:
                        data = local.randbytes(local.randrange(0, 200))
                        rig.from_peer(min(peer, 2), data)
                    if roll < 0.02:
                        rig.tick()
            got_fast, got_slow = fast.outcome(), slow.outcome()
            self.assertEqual(got_fast[2], got_slow[2])  # counters and refusals
            self.assertEqual(got_fast[1], got_slow[1])  # what each peer received
            self.assertEqual(got_fast[0], got_slow[0])  # what the client received
            gc.collect()
            sizes.append(tracemalloc.get_traced_memory()[0])
        self.assertEqual(self.failures, [])
        # the first rounds fill caches (addresses, channel numbers, the peer policy's);
        # then memory must stay flat (a leaked float per datagram adds about 14 KB a round)
        self.assertLess(sizes[-1] - sizes[-3], 8 * 1024, sizes)
        stats = fast.server.stats
        self.assertGreater(stats.packets_to_peer, 100)
        self.assertGreater(stats.packets_to_client, 300)
        self.assertGreater(stats.dropped_packets, 1000)
        self.assertGreaterEqual(len(stats.refusals), 6)


# ---------------------------------------------------------------- a lone datagram

class CountingFastPath:
    """The fast path module, its ``serve_round`` calls counted."""

    def __init__(self, module):
        self.module = module
        self.rounds = 0

    def serve_round(self, *args):
        self.rounds += 1
        return self.module.serve_round(*args)


class LoneDatagram:
    """One message at a time (issue 16, the one-at-a-time Send/Data round trip): with a
    batching hold configured, each hop of a lone Send indication and of its echo is relayed
    in the reactor turn that found it, without a timer or a hold; on the fast path without
    a call into Python's STUN handling and without polling again. ChannelData alike."""

    def setUp(self):
        if self.fast_path:
            self.assertIsNotNone(FAST_PATH, BUILD_HINT)
        self.reactor = ReaderReactor()
        self.rig = Rig(self, self.fast_path, reactor=self.reactor, bandwidth=0, hold=0.05)
        self.poller = self.rig.server.sockets.poller
        self.assertEqual(self.reactor.readers, [self.poller])
        if self.fast_path:
            self.poller.fast = CountingFastPath(self.poller.fast)
        self.python_stun = []
        handle_stun = self.rig.server.handle_stun

        def counted(data, *args):
            self.python_stun.append(data[:2])
            return handle_stun(data, *args)
        self.rig.server.handle_stun = counted

    def turn(self):
        """One reactor turn: the poller's descriptor was readable."""
        rounds = self.poller.fast.rounds if self.fast_path else 0
        self.poller.doRead()
        self.assertEqual(self.reactor.getDelayedCalls(), [])  # no hold, no timed round
        self.assertEqual(self.reactor.readers, [self.poller])
        self.assertEqual(self.poller.holds, 0)
        if self.fast_path:
            self.assertEqual(self.poller.fast.rounds - rounds, 1)  # did not poll again

    def round_trip(self, frame, peer_index):
        rig = self.rig
        peer = rig.peers[peer_index]
        for n in range(3):
            payload = b"lone %d" % n
            rig.client.sendto(frame(peer.getsockname(), payload),
                              ("127.0.0.1", rig.udp.port))
            self.turn()
            self.assertEqual(rig.drain(peer), [payload])  # already sent: this turn
            peer.sendto(payload[::-1], rig.relay)
            self.turn()
            answers = rig.drain(rig.client)
            self.assertEqual(len(answers), 1)
            if answers[0][0] >= 0x40:
                self.assertEqual(answers[0][4:], payload[::-1])
            else:
                message = stun.parse_message(answers[0])
                self.assertEqual((message.method, message.cls), (stun.DATA, stun.INDICATION))
                self.assertEqual(message.get(stun.DATA_ATTR), payload[::-1])

    def test_issue16_lone_send_indication_relayed_in_its_turn(self):
        def send(peer, payload):
            tid = os.urandom(12)
            return stun.encode_message(stun.SEND, stun.INDICATION, tid, [
                (stun.XOR_PEER_ADDRESS, stun.encode_xor_address(*peer, tid)),
                (stun.DATA_ATTR, payload)], add_fingerprint=False)
        self.round_trip(send, 1)
        self.assertEqual(self.python_stun, [] if self.fast_path else [b"\x00\x16"] * 3)

    def test_issue16_lone_channel_data_relayed_in_its_turn(self):
        self.round_trip(lambda peer, payload: stun.encode_channel_data(0x4000, payload), 0)
        self.assertEqual(self.python_stun, [])


class FastLoneDatagramTests(LoneDatagram, unittest.TestCase):
    fast_path = True


class FallbackLoneDatagramTests(LoneDatagram, unittest.TestCase):
    fast_path = False


# ---------------------------------------------------------------- the suites on the fallback

class FallbackAllocateTests(test_server.AllocateTests):
    fast_path = False


class FallbackPolicyTests(test_server.PolicyTests):
    fast_path = False


class FallbackLifetimeTests(test_server.LifetimeTests):
    fast_path = False


class FallbackCredentialScopeTests(test_server.CredentialScopeTests):
    fast_path = False


class FallbackStreamFramingTests(test_server.StreamFramingTests):
    fast_path = False


class FallbackEmbeddedIpv4OverSocketsTests(test_server.EmbeddedIpv4OverSocketsTests):
    fast_path = False


class FallbackAmplificationTests(test_server.AmplificationTests):
    fast_path = False


class FallbackDataPathTests(test_server.DataPathTests):
    fast_path = False


class FallbackStreamLimitsTests(test_server.StreamLimitsTests):
    fast_path = False


class FallbackAioiceTests(test_server.AioiceTests):
    fast_path = False


class FallbackUclientTests(test_interop.UclientTests):
    fast_path = False
