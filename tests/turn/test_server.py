"""TURN server behaviour: requests, lifetimes (injected clock), policy, quotas, data paths."""

from __future__ import annotations

import errno
import json
import os
import select
import socket
import sys

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import DatagramProtocol, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import capturedLogs
from twisted.trial import unittest

from ct.turn import auth, stun
from ct.turn.datapath import DataPath
from ct.turn.metrics import TurnStats
from ct.turn.policy import PeerPolicy
from ct.turn.server import TurnConfig, TurnServer
from ct.turn.sockets import UdpServerSocket
from ct.turn.stream import TurnStreamFactory

from .support import (ClockedReactor, ScriptedClient, UdpClient, error_code,
                      listen_on_loopback, make_server, wait_until)

HERE = os.path.dirname(os.path.abspath(__file__))


class PeerSocket(DatagramProtocol):
    def __init__(self):
        self.received = []

    def datagramReceived(self, data, addr):
        self.received.append((data, addr))


class ServerTestBase(unittest.TestCase):
    fast_path = True  # the compiled UDP data path when built; test_fastpath.py runs False

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.reactor = ClockedReactor(self.clock, reactor)
        self.server = self.make(**self.config())
        self.server.start()
        self.addCleanup(self.server.stop)

    def config(self):
        return {}

    def make(self, **kwargs):
        kwargs.setdefault("fast_path", self.fast_path)
        return make_server(self.reactor, **kwargs)

    def peer(self):
        peer = PeerSocket()
        port = reactor.listenUDP(0, peer, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return peer, ("127.0.0.1", port.getHost().port)


class AllocateTests(ServerTestBase):
    def test_binding_needs_no_credentials(self):
        client = ScriptedClient(self.server)
        reply = client.request(stun.BINDING, sign=False)
        self.assertEqual(reply.cls, stun.SUCCESS)
        self.assertEqual(stun.decode_xor_address(reply.get(stun.XOR_MAPPED_ADDRESS),
                                                 reply.transaction_id), client.addr)
        self.assertTrue(stun.check_fingerprint(reply))  # the request had one
        self.assertIsNone(reply.get(stun.SOFTWARE))  # unauthenticated answers stay small

    def test_challenge_then_allocate(self):
        client = ScriptedClient(self.server)
        bare = client.request(stun.ALLOCATE, [(stun.REQUESTED_TRANSPORT, b"\x11\0\0\0")],
                              sign=False)
        self.assertEqual(error_code(bare), 401)
        self.assertEqual(bare.get(stun.REALM), b"test.realm")
        self.assertTrue(bare.get(stun.NONCE).startswith(b"obMatJos2"))
        self.assertEqual(self.server.stats.auth_failures, 0)
        reply = client.allocate(lifetime=1200)
        self.assertEqual(reply.cls, stun.SUCCESS)
        self.assertTrue(stun.check_integrity(reply, client.last_key))
        relayed = stun.decode_xor_address(reply.get(stun.XOR_RELAYED_ADDRESS),
                                          reply.transaction_id)
        self.assertEqual(relayed[0], "127.0.0.1")
        self.assertTrue(50000 <= relayed[1] <= 59999)
        self.assertEqual(stun.decode_u32(reply.get(stun.LIFETIME)), 1200)
        self.assertEqual(stun.decode_xor_address(reply.get(stun.XOR_MAPPED_ADDRESS),
                                                 reply.transaction_id), client.addr)
        self.assertEqual(self.server.stats.allocations_active, 1)

    def test_sha256_integrity_answered_in_kind(self):
        client = ScriptedClient(self.server, integrity="sha256", algorithm=stun.ALGORITHM_SHA256)
        reply = client.allocate()
        self.assertEqual(reply.cls, stun.SUCCESS)
        self.assertEqual(reply.integrity_at, -1)
        self.assertTrue(stun.check_integrity_sha256(reply, client.last_key))

    def test_rest_api_credentials(self):
        username, password = auth.rest_credentials("s3cret", "bob", 60, self.clock.seconds())
        client = ScriptedClient(self.server, username=username, password=password)
        self.assertEqual(client.allocate().cls, stun.SUCCESS)
        self.clock.advance(61)
        late = ScriptedClient(self.server, addr=("198.51.100.2", 1), username=username,
                              password=password)
        with capturedLogs() as events:
            self.assertEqual(error_code(late.allocate()), 401)
        self.assertEqual(self.server.stats.auth_failures, 1)
        refusals = [e for e in events if "expired REST API credentials" in str(e.get("reason"))]
        self.assertEqual(len(refusals), 1)

    def test_wrong_password_counts_and_logs_once(self):
        client = ScriptedClient(self.server, password="nope")
        with capturedLogs() as events:
            self.assertEqual(error_code(client.allocate()), 401)
        self.assertEqual(self.server.stats.auth_failures, 1)
        self.assertEqual([e["reason"] for e in events if "reason" in e],
                         ["bad MESSAGE-INTEGRITY"])

    def test_stale_nonce(self):
        client = ScriptedClient(self.server)
        self.assertEqual(client.allocate(lifetime=1200).cls, stun.SUCCESS)
        old_nonce = client.nonce
        self.clock.advance(601)
        client.nonce = old_nonce
        data = stun.encode_message(stun.REFRESH, stun.REQUEST, b"x" * 12, [
            (stun.USERNAME, b"alice"), (stun.REALM, b"test.realm"), (stun.NONCE, old_nonce)],
            key=stun.long_term_key("alice", "test.realm", "pw"))
        reply = client.raw(data)
        self.assertEqual(error_code(reply), 438)
        self.assertNotEqual(reply.get(stun.NONCE), old_nonce)
        self.assertEqual(client.refresh(600).cls, stun.SUCCESS)  # retried with the new nonce

    def test_issue16_foreign_realm_refused(self):
        client = ScriptedClient(self.server)
        challenge = client.request(stun.ALLOCATE, sign=False)
        nonce = challenge.get(stun.NONCE)
        key = stun.long_term_key("alice", "test.realm", "pw")  # the key matches
        data = stun.encode_message(stun.ALLOCATE, stun.REQUEST, os.urandom(12), [
            (stun.REQUESTED_TRANSPORT, stun.encode_requested_transport(17)),
            (stun.USERNAME, b"alice"), (stun.REALM, b"other.realm"), (stun.NONCE, nonce)],
            key=key)
        with capturedLogs() as events:
            reply = client.raw(data)
        self.assertEqual(error_code(reply), 401)
        self.assertEqual(reply.get(stun.REALM), b"test.realm")
        self.assertIsNotNone(reply.get(stun.NONCE))
        self.assertIsNone(self.server.table.get(client.addr))
        self.assertEqual([e["reason"] for e in events if "reason" in e], ["foreign realm"])

    def test_retransmitted_allocate_and_mismatch(self):
        client = ScriptedClient(self.server)
        client.allocate()
        tid = os.urandom(12)
        attrs = [(stun.REQUESTED_TRANSPORT, b"\x11\0\0\0")]
        first = client.request(stun.ALLOCATE, attrs, tid=tid)
        self.assertEqual(error_code(first), 437)
        allocation = self.server.table.get(client.addr)
        again = client.request(stun.ALLOCATE, attrs, tid=allocation.allocate_tid)
        self.assertEqual(again.raw, allocation.allocate_response)

    def test_bad_requests(self):
        client = ScriptedClient(self.server)
        self.assertEqual(error_code(client.request(stun.ALLOCATE, [])), 400)
        self.assertEqual(error_code(client.request(
            stun.ALLOCATE, [(stun.REQUESTED_TRANSPORT, b"\x06\0\0\0")])), 442)
        self.assertEqual(error_code(client.request(stun.REFRESH, [])), 437)
        unknown = client.request(stun.BINDING, [(0x0777, b"x")], sign=False)
        self.assertEqual(error_code(unknown), 420)
        self.assertEqual(unknown.get(stun.UNKNOWN_ATTRIBUTES), b"\x07\x77")
        self.assertIsNone(client.raw(b"\x00\x01\x00\x00garbage"))
        self.assertEqual(self.server.stats.allocations_active, 0)

    def test_other_user_on_same_allocation(self):
        ScriptedClient(self.server).allocate()
        self.server.credentials.users["eve"] = "pw2"
        eve = ScriptedClient(self.server, username="eve", password="pw2")
        self.assertEqual(error_code(eve.refresh(600)), 441)


class LifetimeTests(ServerTestBase):
    def test_refresh_zero_deletes_and_frees_port(self):
        client = ScriptedClient(self.server)
        client.allocate()
        port = self.server.table.get(client.addr).relay
        reply = client.refresh(0)
        self.assertEqual(reply.cls, stun.SUCCESS)
        self.assertEqual(stun.decode_u32(reply.get(stun.LIFETIME)), 0)
        self.assertIsNone(self.server.table.get(client.addr))
        self.assertTrue(port.closed)
        self.assertEqual(self.server._ports_in_use, set())
        self.assertEqual(error_code(client.refresh(600)), 437)

    def test_allocation_freed_after_lifetime(self):
        client = ScriptedClient(self.server)
        client.allocate()  # 600 s
        self.clock.advance(300)
        self.assertEqual(client.refresh(700).cls, stun.SUCCESS)
        self.clock.advance(699)
        self.assertIsNotNone(self.server.table.get(client.addr))
        port = self.server.table.get(client.addr).relay
        self.clock.advance(2)
        self.assertIsNone(self.server.table.get(client.addr))
        self.assertTrue(port.closed)
        self.assertEqual(self.server.stats.allocations_active, 0)

    def test_lifetime_clamped(self):
        client = ScriptedClient(self.server)
        reply = client.allocate(lifetime=10)
        self.assertEqual(stun.decode_u32(reply.get(stun.LIFETIME)), 600)
        reply = client.refresh(100000)
        self.assertEqual(stun.decode_u32(reply.get(stun.LIFETIME)), 3600)

    @defer.inlineCallbacks
    def test_permission_and_channel_expire_on_the_data_path(self):
        peer, peer_addr = self.peer()
        client = ScriptedClient(self.server)
        client.allocate(lifetime=3600)
        allocation = self.server.table.get(client.addr)
        relay = ("127.0.0.1", allocation.relay_address[1])
        self.assertEqual(client.bind(0x4001, peer_addr).cls, stun.SUCCESS)
        sock = peer  # the peer's socket sends to the relay
        sock.transport.write(b"ping", relay)
        yield wait_until(reactor, lambda: client.link.sent, message="permitted data lost")
        self.assertEqual(client.link.sent, [b"\x40\x01\x00\x04ping"])
        # Without refresh, the permission lapses at 300 s: peer data is dropped.
        self.clock.advance(301)
        self.assertEqual(allocation.permissions, {})
        self.assertIn(0x4001, allocation.channels)
        dropped = self.server.stats.dropped_packets
        sock.transport.write(b"late", relay)
        yield wait_until(reactor, lambda: self.server.stats.dropped_packets > dropped,
                         message="the late datagram was not dropped")
        self.assertEqual(self.server.stats.refusals["data from a peer without permission"], 1)
        # A fresh permission lets the next datagram through, and only that one.
        self.assertEqual(client.permit("127.0.0.1").cls, stun.SUCCESS)
        sock.transport.write(b"again", relay)
        yield wait_until(reactor, lambda: len(client.link.sent) > 1,
                         message="data after the fresh permission lost")
        self.assertEqual(client.link.sent, [b"\x40\x01\x00\x04ping",
                                            b"\x40\x01\x00\x05again"])
        self.clock.advance(300)
        self.assertEqual(allocation.channels, {})
        self.assertEqual(self.server.stats.channels_active, 0)
        self.assertEqual(self.server.stats.permissions_active, 0)


class PolicyTests(ServerTestBase):
    def config(self):
        return {"allow": ()}

    def test_loopback_and_private_refused_by_default(self):
        client = ScriptedClient(self.server)
        client.allocate()
        with capturedLogs() as events:
            self.assertEqual(error_code(client.permit("127.0.0.1")), 403)
            self.assertEqual(error_code(client.bind(0x4000, ("10.1.2.3", 9))), 403)
        self.assertEqual([(e["reason"], e["detail"]) for e in events if "reason" in e],
                         [("loopback peer", " (127.0.0.1)"), ("private peer", " (10.1.2.3)")])
        self.assertEqual(client.permit("198.51.100.9").cls, stun.SUCCESS)
        self.assertEqual(error_code(client.permit("::1")), 443)
        self.assertEqual(self.server.stats.refusals["loopback peer"], 1)

    def test_allow_list_opens_ranges(self):
        server = self.make(allow=("127.0.0.0/8", "10.0.0.0/8"))
        self.addCleanup(server.stop)
        client = ScriptedClient(server)
        client.allocate()
        self.assertEqual(client.permit("127.0.0.1", "10.9.9.9").cls, stun.SUCCESS)

    def test_quotas(self):
        server = self.make(max_allocations=2, user_quota=1)
        self.addCleanup(server.stop)
        self.assertEqual(ScriptedClient(server, addr=("1.1.1.1", 1)).allocate().cls, stun.SUCCESS)
        self.assertEqual(error_code(ScriptedClient(server, addr=("1.1.1.1", 2)).allocate()), 486)
        server.credentials.users["bob"] = "pw"
        server.credentials.users["carol"] = "pw"
        self.assertEqual(ScriptedClient(server, addr=("1.1.1.1", 3), username="bob")
                         .allocate().cls, stun.SUCCESS)
        self.assertEqual(error_code(ScriptedClient(server, addr=("1.1.1.1", 4),
                                                   username="carol").allocate()), 486)
        self.assertEqual(server.stats.refusals, {"user allocation quota reached": 1,
                                                 "total allocation cap reached": 1})

    def test_alternate_server(self):
        server = self.make(alternate_server=("192.0.2.10", 3478))
        self.addCleanup(server.stop)
        reply = ScriptedClient(server).allocate()
        self.assertEqual(error_code(reply), 300)
        self.assertEqual(stun.decode_address(reply.get(stun.ALTERNATE_SERVER)),
                         ("192.0.2.10", 3478))


class CredentialScopeTests(ServerTestBase):
    """Finding 5: allocations outlive short credentials, revocation ends them, quotas count
    per participant."""

    def rest_client(self, user, ttl=60, addr=("198.51.100.1", 40000)):
        username, password = auth.rest_credentials("s3cret", user, ttl, self.clock.seconds())
        return ScriptedClient(self.server, addr=addr, username=username, password=password)

    def test_finding_5_allocation_outlives_its_short_credential_until_revoked(self):
        client = self.rest_client("s1.2")
        self.assertEqual(client.allocate().cls, stun.SUCCESS)
        self.clock.advance(120)  # the credential has expired
        self.assertEqual(client.refresh(600).cls, stun.SUCCESS)
        self.assertEqual(client.permit("198.51.100.9").cls, stun.SUCCESS)
        late = ScriptedClient(self.server, addr=("198.51.100.1", 40001),
                              username=client.username, password=client.password)
        self.assertEqual(error_code(late.allocate()), 401)  # no new allocation with it
        other = self.rest_client("s10.1", addr=("198.51.100.2", 1))
        self.assertEqual(other.allocate().cls, stun.SUCCESS)
        with capturedLogs() as events:
            self.assertEqual(self.server.revoke("s1", self.clock.seconds() + 600), 1)
        self.assertIsNone(self.server.table.get(client.addr))
        self.assertEqual(len([e for e in events if "revoked" in str(e.get("why"))]), 1)
        self.assertIn(error_code(client.refresh(600)), (401, 437))
        fresh = self.rest_client("s1.3", addr=("198.51.100.3", 1))
        self.assertEqual(error_code(fresh.allocate()), 401)
        self.assertIsNotNone(self.server.table.get(other.addr))  # another session's
        self.clock.advance(601)
        self.assertEqual(self.server.credentials.revoked, {})

    def test_finding_5_quota_counts_every_credential_of_one_participant(self):
        server = self.make(user_quota=2)
        self.addCleanup(server.stop)
        self.server = server
        for ttl, port, code in ((60, 1, 0), (120, 2, 0), (180, 3, 486)):
            client = self.rest_client("s1.2", ttl, ("198.51.100.1", port))
            self.assertEqual(error_code(client.allocate()), code)
        self.assertEqual(error_code(self.rest_client("s1.3", 60, ("198.51.100.1", 4))
                                    .allocate()), 0)

    def test_finding_5_secure_defaults(self):
        server = self.make()
        self.addCleanup(server.stop)
        config = server.config
        self.assertEqual((config.max_allocations, config.user_quota, config.bandwidth),
                         (1000, 10, 1024 * 1024))


class EmbeddedIpv4OverSocketsTests(ServerTestBase):
    """Finding 6 over real sockets: an IPv6 relay refuses the metadata address via NAT64."""

    def config(self):
        return {"allow": ("64:ff9b::/96",), "relay_host": "::1"}

    @defer.inlineCallbacks
    def test_finding_6_nat64_metadata_permission_refused_over_udp(self):
        udp = UdpServerSocket(self.server, "::1", 0)
        self.addCleanup(udp.close)
        client = UdpClient(reactor, ("::1", udp.port), interface="::1")
        self.addCleanup(client.close)
        self.assertEqual((yield client.allocate_call()).cls, stun.SUCCESS)
        with capturedLogs() as events:
            refused = yield client.permit_call("64:ff9b::a9fe:a9fe")
        self.assertEqual(error_code(refused), 403)
        self.assertEqual([e["reason"] for e in events if "reason" in e],
                         ["link-local peer (embedded IPv4)"])
        self.assertEqual((yield client.permit_call("64:ff9b::808:808")).cls, stun.SUCCESS)
        allocation = self.server.table.get(client.addr)
        self.assertEqual(list(allocation.permissions), ["64:ff9b::808:808"])


class AmplificationTests(ServerTestBase):
    """Finding 13: small unauthenticated answers, rate-limited per source, over real UDP."""

    def config(self):
        return {"unauthenticated_rate": 10.0}

    def setUp(self):
        super().setUp()
        self.udp = UdpServerSocket(self.server, "127.0.0.1", 0)
        self.addCleanup(self.udp.close)

    def client(self, interface="127.0.0.1"):
        client = UdpClient(reactor, ("127.0.0.1", self.udp.port), interface=interface)
        self.addCleanup(client.close)
        return client

    @defer.inlineCallbacks
    def test_finding_13_unauthenticated_answers_are_small(self):
        client = self.client()
        bare = stun.encode_message(stun.ALLOCATE, stun.REQUEST, os.urandom(12),
                                   add_fingerprint=False)
        self.assertEqual(len(bare), 20)
        challenge = yield client.exchange(bare)
        self.assertEqual(error_code(challenge), 401)
        # header 20, ERROR-CODE 8, REALM "test.realm" 16, NONCE 40, PASSWORD-ALGORITHMS 12
        self.assertEqual(len(challenge.raw), 96)
        self.assertLessEqual(len(challenge.raw) / len(bare), 4.8)  # was 132 bytes, x6.6
        self.assertIsNone(challenge.get(stun.SOFTWARE))
        self.assertEqual(challenge.fingerprint_at, -1)
        self.assertEqual(stun.decode_error(challenge.get(stun.ERROR_CODE)), (401, ""))
        binding = yield client.exchange(stun.encode_message(
            stun.BINDING, stun.REQUEST, os.urandom(12), add_fingerprint=False))
        self.assertEqual(len(binding.raw), 32)  # x1.6 (was 52)
        # A signed answer still names the software and carries a fingerprint.
        allocated = yield client.allocate_call()
        self.assertEqual(allocated.get(stun.SOFTWARE), b"ct-turn")
        self.assertTrue(stun.check_fingerprint(allocated))

    @defer.inlineCallbacks
    def test_finding_13_requests_without_allocation_rate_limited_per_source(self):
        flooder, other = self.client(), self.client("127.0.0.2")  # another source IP
        bare = stun.encode_message(stun.ALLOCATE, stun.REQUEST, b"\0" * 12,
                                   add_fingerprint=False)
        with capturedLogs() as events:
            for _ in range(200):
                flooder.send(bare)
            refusals = self.server.stats.refusals
            yield wait_until(reactor, lambda: refusals.get("unauthenticated rate limit") == 180,
                             message="the 200 requests were not all handled")
            yield wait_until(reactor, lambda: len(flooder.inbox.received) == 20,
                             message="the burst of 20 was not answered")
        answered = sum(len(m) for m in flooder.inbox.received)
        self.assertLess(answered, 200 * len(bare))  # fewer bytes out than in
        warnings = [e for e in events if "not answering UDP requests" in str(e.get("log_format"))]
        self.assertEqual(len(warnings), 1)
        # Another source is not affected; the flooder gets tokens back with time.
        self.assertEqual(error_code((yield other.allocate_call())), 0)
        self.clock.advance(1)
        flooder.inbox.received = []
        self.assertEqual(error_code((yield flooder.exchange(bare))), 401)


class DataPathTests(ServerTestBase):
    """Real UDP sockets for the client and the peer."""

    @defer.inlineCallbacks
    def setUp(self):
        super().setUp()
        self.udp = UdpServerSocket(self.server, "127.0.0.1", 0)
        self.addCleanup(self.udp.close)
        self.client_socket = PeerSocket()
        cport = reactor.listenUDP(0, self.client_socket, interface="127.0.0.1")
        self.addCleanup(cport.stopListening)
        self.client_addr = ("127.0.0.1", cport.getHost().port)
        self.server_addr = ("127.0.0.1", self.udp.port)
        yield None

    @defer.inlineCallbacks
    def roundtrip(self, data):
        before = len(self.client_socket.received)
        self.client_socket.transport.write(data, self.server_addr)
        yield wait_until(reactor, lambda: len(self.client_socket.received) > before,
                         message="no answer")
        return stun.parse_message(self.client_socket.received[-1][0])

    @defer.inlineCallbacks
    def channel_both_ways(self, number, channel_data):
        """Allocate, bind ``number`` to a peer, send ``channel_data`` (payload ``abc``) and
        have the peer answer ``xyz``; the client and the relay address."""
        peer, peer_addr = self.peer()
        # Allocate through the real listener so the sink is a real socket.
        client = ScriptedClient(self.server, addr=self.client_addr, link=self.udp)
        self.assertEqual(client.allocate().cls, stun.SUCCESS)
        relay = ("127.0.0.1", self.server.table.get(self.client_addr).relay_address[1])
        self.assertEqual(client.bind(number, peer_addr).cls, stun.SUCCESS)
        self.client_socket.transport.write(channel_data, self.server_addr)
        yield wait_until(reactor, lambda: peer.received, message="ChannelData lost")
        self.assertEqual(peer.received[0], (b"abc", relay))
        peer.transport.write(b"xyz", relay)  # back to the client as ChannelData
        yield wait_until(reactor, lambda: self.client_socket.received,
                         message="peer data lost")
        self.assertEqual(self.client_socket.received[0][0],
                         stun.encode_channel_data(number, b"xyz"))
        return client, relay

    @defer.inlineCallbacks
    def test_udp_channel_and_indications(self):
        # with padding, allowed on UDP
        client, relay = yield self.channel_both_ways(0x4000, b"\x40\x00\x00\x03abc\x00")
        # client -> peer by Send indication; a second peer without channel gets Data indications
        peer2, peer2_addr = self.peer()
        self.assertEqual(client.permit("127.0.0.1").cls, stun.SUCCESS)
        client.send_indication(peer2_addr, b"via send")
        yield wait_until(reactor, lambda: peer2.received, message="Send indication lost")
        self.assertEqual(peer2.received[0], (b"via send", relay))
        peer2.transport.write(b"back", relay)
        yield wait_until(reactor, lambda: len(self.client_socket.received) > 1,
                         message="Data indication lost")
        data = stun.parse_message(self.client_socket.received[1][0])
        self.assertEqual((data.method, data.cls), (stun.DATA, stun.INDICATION))
        self.assertEqual(data.get(stun.DATA_ATTR), b"back")
        self.assertEqual(stun.decode_xor_address(data.get(stun.XOR_PEER_ADDRESS),
                                                 data.transaction_id), peer2_addr)
        stats = self.server.stats
        self.assertEqual((stats.packets_to_peer, stats.bytes_to_peer), (2, 11))
        self.assertEqual((stats.packets_to_client, stats.bytes_to_client), (2, 7))

    @defer.inlineCallbacks
    def test_issue16_rfc5766_channel_0x7ffe_both_ways(self):
        client, _ = yield self.channel_both_ways(0x7FFE, b"\x7f\xfe\x00\x03abc")
        self.assertEqual(error_code(client.bind(0x7FFF, ("127.0.0.1", 9))), 400)

    def test_socket_buffers(self):
        # Linux reports twice what it grants; as much as asked when net.core.rmem_max
        # allows it or the process may exceed it.
        wanted = 512 * 1024
        server = self.make(socket_buffer=wanted, relay_socket_buffer=wanted)
        self.addCleanup(server.stop)
        udp = UdpServerSocket(server, "127.0.0.1", 0)
        self.addCleanup(udp.close)
        client = ScriptedClient(server)
        self.assertEqual(client.allocate().cls, stun.SUCCESS)
        relay = server.table.get(client.addr).relay.sock
        for sock in (udp.sock, relay):
            self.assertGreaterEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
                                    wanted)
        self.assertGreaterEqual(udp.sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF), wanted)
        default = self.make()
        self.addCleanup(default.stop)
        plain = default.sockets.bind_relay(0)
        self.addCleanup(plain.close)
        self.assertLess(plain.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), wanted)

    @defer.inlineCallbacks
    def test_binding_over_real_udp(self):
        reply = yield self.roundtrip(stun.encode_message(stun.BINDING, stun.REQUEST, b"b" * 12))
        self.assertEqual(stun.decode_xor_address(reply.get(stun.XOR_MAPPED_ADDRESS), b"b" * 12),
                         self.client_addr)

    def test_bandwidth_limit(self):
        server = self.make(bandwidth=1000)
        self.addCleanup(server.stop)
        sent = []
        client = ScriptedClient(server)
        client.allocate()
        allocation = server.table.get(client.addr)
        allocation.peer_send = lambda payload, peer: sent.append(payload)
        client.permit("127.0.0.1")
        for _ in range(5):
            client.send_indication(("127.0.0.1", 9), b"x" * 300)
        self.assertEqual(len(sent), 3)
        server.sweep()  # next window
        client.send_indication(("127.0.0.1", 9), b"x" * 300)
        self.assertEqual(len(sent), 4)
        self.assertEqual(server.stats.refusals["bandwidth limit"], 1)


class StreamFramingTests(ServerTestBase):
    def connect(self):
        protocol = TurnStreamFactory(self.server).buildProtocol(None)
        transport = StringTransport(peerAddress=FakeAddress("198.51.100.5", 4444))
        protocol.makeConnection(transport)
        return protocol, transport

    def test_issue16_rfc5766_channel_0x7ffe_on_a_stream(self):
        protocol, transport = self.connect()
        client = ScriptedClient(self.server, addr=("198.51.100.5", 4444), key=protocol,
                                link=protocol)
        client.allocate()
        allocation = self.server.table.get(protocol)
        peer = ("127.0.0.1", 9)
        self.assertEqual(client.bind(0x7FFE, peer).cls, stun.SUCCESS)
        sent = []
        allocation.peer_send = lambda payload, to: sent.append((payload, to))
        protocol.dataReceived(stun.encode_channel_data(0x7FFE, b"abcde", pad=True))
        self.assertEqual(sent, [(b"abcde", peer)])
        self.assertFalse(transport.disconnecting)

    def test_split_and_padded_frames(self):
        protocol, transport = self.connect()
        client = ScriptedClient(self.server, addr=("198.51.100.5", 4444), key=protocol,
                                link=protocol)
        binding = stun.encode_message(stun.BINDING, stun.REQUEST, b"q" * 12)
        for i in range(len(binding)):  # one byte at a time
            protocol.dataReceived(binding[i:i + 1])
        reply = stun.parse_message(transport.value())
        self.assertEqual(reply.cls, stun.SUCCESS)
        transport.clear()
        client.allocate()
        allocation = self.server.table.get(protocol)
        self.assertEqual(allocation.sink, transport.write)
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(peer.close)
        peer.bind(("127.0.0.1", 0))
        peer_addr = peer.getsockname()
        client.bind(0x4005, peer_addr)
        sent = []
        allocation.peer_send = lambda payload, peer: sent.append((payload, peer))
        # two padded ChannelData frames and a STUN message in one chunk, split oddly
        chunk = (stun.encode_channel_data(0x4005, b"a", pad=True)
                 + stun.encode_channel_data(0x4005, b"bcdef", pad=True) + binding)
        protocol.dataReceived(chunk[:5])
        protocol.dataReceived(chunk[5:11])
        protocol.dataReceived(chunk[11:])
        self.assertEqual(sent, [(b"a", peer_addr), (b"bcdef", peer_addr)])
        self.assertEqual(stun.parse_message(transport.value()).cls, stun.SUCCESS)
        # peer -> client over a stream is padded
        transport.clear()
        relay = allocation.relay
        peer.sendto(b"12345", allocation.relay_address)
        self.assertEqual(select.select([relay.sock], [], [], 5.0)[0], [relay.sock],
                         "the peer's datagram did not reach the relay socket")
        relay.doRead()
        self.assertEqual(transport.value(), b"\x40\x05\x00\x0512345\x00\x00\x00")
        protocol.connectionLost(None)
        self.assertIsNone(self.server.table.get(protocol))

    def test_garbage_closes_stream(self):
        protocol, transport = self.connect()
        protocol.dataReceived(b"\xff\xff\xff\xff")
        self.assertTrue(transport.disconnecting)


class FakeRelay:
    """A relay socket in memory: records what goes to peers."""

    def __init__(self, port):
        self.port = port
        self.sent = []
        self.closed = False

    def send_to_peer(self, payload, peer):
        self.sent.append((bytes(payload), peer))

    def close(self):
        self.closed = True


class FakeRelaySockets:
    """:class:`~ct.turn.server.RelaySockets` in memory; ports in ``taken`` are in use."""

    def __init__(self, taken=()):
        self.taken = set(taken)
        self.opened = []

    def open_relay(self, allocation, port, link, client, dont_fragment):
        if port in self.taken:
            raise OSError(errno.EADDRINUSE, "address in use")
        relay = FakeRelay(port)
        self.opened.append(relay)
        return relay


class InMemoryServerTests(unittest.TestCase):
    """The request logic without a socket: relay sockets from a fake, time from a Clock."""

    def make(self, ports, taken=()):
        sockets = FakeRelaySockets(taken)
        server = TurnServer(TurnConfig(realm="test.realm", relay_ports=ports),
                            auth.Credentials("test.realm", {"alice": "pw"}, secret="s3cret"),
                            PeerPolicy(allowed=("127.0.0.0/8",)), Clock(), sockets,
                            DataPath(TurnStats()))
        return server, sockets

    def test_taken_ports_are_skipped_and_a_full_range_refused(self):
        server, sockets = self.make((50000, 50001), taken={50000})
        first = ScriptedClient(server, addr=("198.51.100.1", 1))
        reply = first.allocate()
        self.assertEqual(reply.cls, stun.SUCCESS)
        relayed = stun.decode_xor_address(reply.get(stun.XOR_RELAYED_ADDRESS),
                                          reply.transaction_id)
        self.assertEqual(relayed[1], 50001)
        second = ScriptedClient(server, addr=("198.51.100.1", 2))
        self.assertEqual(error_code(second.allocate()), 508)
        self.assertEqual(first.refresh(0).cls, stun.SUCCESS)
        self.assertEqual([relay.closed for relay in sockets.opened], [True])
        self.assertEqual(second.allocate().cls, stun.SUCCESS)  # the port is free again

    def test_stream_channel_data_reaches_the_peer_once_bound(self):
        server, sockets = self.make((50000, 50009))
        protocol = TurnStreamFactory(server).buildProtocol(None)
        protocol.makeConnection(StringTransport(peerAddress=FakeAddress("198.51.100.5", 4444)))
        client = ScriptedClient(server, addr=("198.51.100.5", 4444), key=protocol,
                                link=protocol)
        self.assertEqual(client.allocate().cls, stun.SUCCESS)
        self.assertEqual(client.bind(0x4000, ("127.0.0.1", 7)).cls, stun.SUCCESS)
        protocol.dataReceived(stun.encode_channel_data(0x4000, b"hello", pad=True)
                              + stun.encode_channel_data(0x4001, b"unbound", pad=True))
        self.assertEqual(sockets.opened[0].sent, [(b"hello", ("127.0.0.1", 7))])
        self.assertEqual(server.stats.refusals.get("ChannelData on an unbound channel"), 1)
        self.assertEqual((server.stats.packets_to_peer, server.stats.bytes_to_peer), (1, 5))


class _StreamClient(Protocol):
    def __init__(self):
        self.received = b""
        self.lost = False

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason=None):
        self.lost = True


class StreamLimitsTests(ServerTestBase):
    """Finding 18: TCP connections are capped and idle ones closed, over real sockets."""

    def config(self):
        return {"max_connections": 2, "idle_timeout": 30.0}

    def setUp(self):
        super().setUp()
        self.port = reactor.listenTCP(0, TurnStreamFactory(self.server), interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)

    @defer.inlineCallbacks
    def open(self):
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port)
        client = yield connectProtocol(endpoint, _StreamClient())
        self.addCleanup(lambda: client.transport.abortConnection() if not client.lost else None)
        return client

    @defer.inlineCallbacks
    def binding(self, client):
        before = len(client.received)
        client.transport.write(stun.encode_message(stun.BINDING, stun.REQUEST, os.urandom(12)))
        yield wait_until(reactor, lambda: len(client.received) > before,
                         message="no Binding answer")

    @defer.inlineCallbacks
    def test_finding_18_connections_beyond_the_cap_are_closed(self):
        first = yield self.open()
        second = yield self.open()
        yield wait_until(reactor, lambda: len(self.server.streams) == 2)
        with capturedLogs() as events:
            third = yield self.open()
            yield wait_until(reactor, lambda: third.lost, message="third connection not closed")
            fourth = yield self.open()
            yield wait_until(reactor, lambda: fourth.lost, message="fourth connection not closed")
        self.assertEqual(self.server.stats.refusals["connection cap reached"], 2)
        self.assertEqual(len([e for e in events if "connection cap" in str(e.get("reason"))]),
                         1)  # logged once a minute at most
        yield self.binding(first)  # the first two still work
        yield self.binding(second)
        first.transport.loseConnection()
        yield wait_until(reactor, lambda: len(self.server.streams) == 1)
        fifth = yield self.open()
        yield self.binding(fifth)  # room again

    @defer.inlineCallbacks
    def test_finding_18_idle_connections_without_allocation_are_closed(self):
        silent = yield self.open()
        chatty = yield self.open()
        yield wait_until(reactor, lambda: len(self.server.streams) == 2)
        for _ in range(25):
            self.clock.advance(1)
        yield self.binding(chatty)
        for _ in range(10):
            self.clock.advance(1)
        yield wait_until(reactor, lambda: silent.lost, message="silent connection not closed")
        self.assertFalse(chatty.lost)
        self.assertEqual(self.server.stats.refusals["idle connection"], 1)
        for _ in range(30):
            self.clock.advance(1)
        yield wait_until(reactor, lambda: chatty.lost, message="idle connection not closed")
        # A connection holding an allocation is not idle-closed (its lifetime governs).
        allocated = yield self.open()
        stream = [s for s in self.server.streams][0]
        client = ScriptedClient(self.server, addr=stream.peer, key=stream, link=stream)
        self.assertEqual(client.allocate().cls, stun.SUCCESS)
        for _ in range(120):
            self.clock.advance(1)
        yield self.binding(allocated)
        self.assertFalse(allocated.lost)


class FakeAddress:
    def __init__(self, host, port):
        self.host = host
        self.port = port


class AioiceTests(unittest.TestCase):
    """aioice (an independent client) allocates and relays to a UDP peer on loopback."""

    timeout = 60
    fast_path = True

    def setUp(self):
        self.server = make_server(reactor, allow=("127.0.0.0/8",), relay_ports=(50000, 59999),
                                  fast_path=self.fast_path)
        self.server.start()
        self.addCleanup(self.server.stop)
        self.ports = listen_on_loopback(self, self.server, reactor)

    @defer.inlineCallbacks
    def run_client(self, transport, username, password, count=3):
        port = self.ports[transport]
        out, err, code = yield getProcessOutputAndValue(
            sys.executable, [os.path.join(HERE, "aioice_client.py"), "127.0.0.1", str(port),
                             transport, username, password, str(count)],
            env=dict(os.environ), reactor=reactor)
        self.assertEqual(code, 0, err.decode(errors="replace"))
        result = json.loads(out.decode().strip().splitlines()[-1])
        self.assertTrue(result["ok"], result)
        self.assertEqual(result["echoes"], count)
        self.assertEqual(result["peer_saw"], [result["relayed"]])
        yield wait_until(reactor, lambda: self.server.stats.allocations_active == 0,
                         message="the client did not delete its allocation")
        return result

    def rest(self):
        return auth.rest_credentials("s3cret", "carol", 3600, reactor.seconds())

    @defer.inlineCallbacks
    def test_udp_static(self):
        yield self.run_client("udp", "alice", "pw")
        self.assertGreaterEqual(self.server.stats.packets_to_client, 3)

    @defer.inlineCallbacks
    def test_udp_rest(self):
        yield self.run_client("udp", *self.rest())

    @defer.inlineCallbacks
    def test_tcp_static(self):
        yield self.run_client("tcp", "alice", "pw")

    @defer.inlineCallbacks
    def test_tcp_rest(self):
        yield self.run_client("tcp", *self.rest())
