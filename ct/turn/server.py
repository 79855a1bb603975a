"""Twisted adapters of the STUN/TURN relay: UDP listener, TCP/TLS framing, relay sockets.

:class:`TurnServer` answers STUN/TURN requests and owns the allocations; the adapters
(:class:`UdpListener`, :class:`TurnStreamProtocol`, :class:`RelaySocket`) move bytes.
The ChannelData paths (client -> peer and peer -> client) avoid parsing and write to the
sockets directly.
"""

from __future__ import annotations

import errno
import os
import random
import select
import socket
import struct
from dataclasses import dataclass
from typing import Any, Callable, Hashable

from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from ct.turn import auth, stun
from ct.turn.allocation import DEFAULT_LIFETIME, MAX_LIFETIME, Allocation, AllocationTable
from ct.turn.limits import LogThrottle, SourceLimiter
from ct.turn.metrics import TurnStats
from ct.turn.policy import PeerPolicy

_log = Logger()

_CHANNEL_HEADER = struct.Struct("!HH")
_pack_channel = _CHANNEL_HEADER.pack
_unpack_channel = _CHANNEL_HEADER.unpack_from
_PADS = (b"", b"\x00\x00\x00", b"\x00\x00", b"\x00")
MAX_DATAGRAM = 65535


@dataclass
class TurnConfig:
    """What the server needs to know; built by ``tap.py`` from the settings."""

    realm: str = "ct"
    software: str = "ct-turn"
    relay_host: str = "127.0.0.1"
    external_host: str | None = None
    relay_ports: tuple[int, int] = (49152, 65535)
    max_allocations: int = 1000  # 0: no cap
    user_quota: int = 10  # allocations per user (REST: per participant); 0: no quota
    bandwidth: int = 1024 * 1024  # bytes/s per allocation, both directions; 0: no limit
    default_lifetime: int = DEFAULT_LIFETIME
    max_lifetime: int = MAX_LIFETIME
    nonce_lifetime: float = 600.0
    alternate_server: tuple[str, int] | None = None
    sweep_interval: float = 1.0
    hold: float = 0.0  # seconds a busy relay may hold datagrams to serve them in batches
    socket_buffer: int = 4 * 1024 * 1024  # receive/send buffer of the UDP listener
    relay_socket_buffer: int = 0  # receive buffer of each relay socket (0: system default)
    # UDP requests answered per second per source IP without an allocation (0: no limit);
    # bursts of twice that; at most ``rate_sources`` sources tracked one by one.
    unauthenticated_rate: float = 20.0
    rate_sources: int = 10000
    max_connections: int = 2000  # TCP/TLS client connections at once (0: no cap)
    idle_timeout: float = 60.0  # close a TCP/TLS connection without allocation this idle


def set_socket_buffers(sock: socket.socket, size: int, send: bool = True) -> int:
    """Ask for ``size`` bytes of receive (and send) buffer; return the receive buffer got.

    Beyond ``net.core.rmem_max`` the kernel caps the request; with CAP_NET_ADMIN the cap
    is lifted (``SO_RCVBUFFORCE``). Linux reports twice the usable size.
    """
    options = [(socket.SO_RCVBUF, getattr(socket, "SO_RCVBUFFORCE", None))]
    if send:
        options.append((socket.SO_SNDBUF, getattr(socket, "SO_SNDBUFFORCE", None)))
    for option, force in options:
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
            if force is not None and sock.getsockopt(socket.SOL_SOCKET, option) < size:
                sock.setsockopt(socket.SOL_SOCKET, force, size)
        except OSError:
            pass
    try:
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    except OSError:
        return 0


def _udp_sender(sock: socket.socket, addr: tuple[str, int], stats: TurnStats) -> Callable:
    """A callable sending one datagram to ``addr``; a full buffer drops it."""
    sendto = sock.sendto

    def send(data: bytes) -> None:
        try:
            sendto(data, addr)
        except OSError:
            stats.dropped_packets += 1

    return send


class TurnServer:
    """STUN/TURN request handling and the allocations of one relay."""

    def __init__(self, config: TurnConfig, credentials: auth.Credentials, policy: PeerPolicy,
                 reactor: Any, stats: TurnStats | None = None,
                 nonces: auth.NonceMinter | None = None):
        self.config = config
        self.credentials = credentials
        self.policy = policy
        self.reactor = reactor
        self.stats = stats if stats is not None else TurnStats()
        self.nonces = nonces or auth.NonceMinter(config.nonce_lifetime)
        self.table = AllocationTable(self.stats, config.max_allocations, config.user_quota)
        self.advertised_host = config.external_host or config.relay_host
        self.relay_family = socket.AF_INET6 if ":" in config.relay_host else socket.AF_INET
        self._software = config.software.encode("utf-8")
        self._ports_in_use: set[int] = set()
        low, high = config.relay_ports
        self._next_port = random.randint(low, high)
        self._sweeper = LoopingCall(self.sweep)
        self._sweeper.clock = reactor
        rate = config.unauthenticated_rate
        self.limiter = (SourceLimiter(rate, max(1, int(2 * rate)), config.rate_sources,
                                      reactor.seconds) if rate > 0 else None)
        self._rate_log = LogThrottle()
        self._connection_log = LogThrottle()
        self.streams: set = set()  # open TCP/TLS client connections
        self.poller = (SocketPoller(reactor, config.hold) if hasattr(select, "epoll")
                       else None)

    def watch(self, reader, busy: bool = False) -> None:
        """Have ``reader.doRead`` called when its socket is readable.

        A ``busy`` reader (the server's own socket) keeps reading in batches; the many
        quiet relay sockets read one datagram per readiness.
        """
        if self.poller is not None:
            self.poller.add(reader, None if busy else 1)
        else:
            self.reactor.addReader(reader)

    def unwatch(self, reader) -> None:
        if self.poller is not None:
            self.poller.remove(reader)
        else:
            self.reactor.removeReader(reader)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if not self._sweeper.running:
            self._sweeper.start(self.config.sweep_interval, now=False)

    def stop(self) -> None:
        if self._sweeper.running:
            self._sweeper.stop()
        for allocation in list(self.table.by_key.values()):
            self.delete(allocation, "server stopping")

    def sweep(self) -> None:
        """Expire allocations, permissions and channels; refill bandwidth budgets."""
        if self.limiter is not None:
            self.limiter.prune()
        self.credentials.forget_revoked(self.reactor.seconds())
        if self.streams:
            self.close_idle_streams(self.reactor.seconds())
        for allocation in self.table.expire(self.reactor.seconds()):
            self._release(allocation)
            _log.info("turn: allocation of {user} for {client} expired",
                      user=allocation.username, client=_show(allocation.key))
        bandwidth = self.config.bandwidth
        if bandwidth:
            budget = bandwidth * self.config.sweep_interval
            for allocation in self.table.by_key.values():
                allocation.budget = budget

    def delete(self, allocation: Allocation, why: str) -> None:
        if self.table.remove(allocation):
            self._release(allocation)
            _log.info("turn: allocation of {user} for {client} deleted ({why})",
                      user=allocation.username, client=_show(allocation.key), why=why)

    def stream_opened(self, stream) -> bool:
        """Register a TCP/TLS client connection; False (refuse it) beyond the cap."""
        cap = self.config.max_connections
        if cap and len(self.streams) >= cap:
            self._refuse_connection(stream, "connection cap reached",
                                    f"{cap} connections, CT_TURN_MAX_CONNECTIONS")
            return False
        self.streams.add(stream)
        return True

    def _refuse_connection(self, stream, reason: str, detail: str) -> None:
        self.stats.refused(reason)
        more = self._connection_log.ready(self.reactor.seconds())
        if more is not None:
            _log.warn("turn: closing {client}: {reason} ({detail}; {more} more since the last "
                      "line, logged once a minute at most)", client=stream, reason=reason,
                      detail=detail, more=more)

    def close_idle_streams(self, now: float) -> None:
        """Close connections without an allocation that received nothing for the timeout."""
        timeout = self.config.idle_timeout
        if not timeout:
            return
        allocations = self.table.by_key
        for stream in list(self.streams):
            if stream.active:
                stream.active = False
                stream.idle_since = now
            elif now - stream.idle_since >= timeout and stream not in allocations:
                self._refuse_connection(stream, "idle connection",
                                        f"nothing received for {timeout:g} s without an "
                                        "allocation, CT_TURN_TCP_IDLE_TIMEOUT")
                self.streams.discard(stream)
                stream.abort()

    def revoke(self, scope: str, until: float) -> int:
        """End the REST credentials of ``scope`` (a session id, or ``session.participant``)
        and delete their allocations; ``until``: when all such credentials have expired.
        Returns how many allocations went."""
        self.credentials.revoke(scope, until)
        revoked = self.credentials.is_revoked
        gone = [a for a in self.table.by_key.values() if revoked(auth.rest_user(a.username))]
        for allocation in gone:
            self.delete(allocation, f"credentials of {scope} revoked")
        return len(gone)

    def client_gone(self, key: Hashable) -> None:
        """A stream client disconnected: its allocation goes with it."""
        self.streams.discard(key)
        allocation = self.table.get(key)
        if allocation is not None:
            self.delete(allocation, "connection closed")

    def _release(self, allocation: Allocation) -> None:
        relay = allocation.relay
        allocation.relay = None
        allocation.peer_send = None
        allocation.sink = None
        if relay is not None:
            self._ports_in_use.discard(relay.port)
            relay.close()

    # ------------------------------------------------------------ refusals

    def _refuse(self, reason: str, code: int, method: int, client: Any,
                username: str | None, detail: str = "") -> None:
        """Count and log one refused request; ``reason`` is a fixed category, ``detail`` not."""
        self.stats.refused(reason)
        _log.info("turn: refused {method} from {client} user={user}: {code} {reason}{detail}",
                  method=stun.METHOD_NAMES.get(method, hex(method)), client=_show(client),
                  user=username, code=code, reason=reason,
                  detail=f" ({detail})" if detail else "")

    def _rate_limited(self, addr) -> None:
        """Count an unanswered request; one warning line per minute at most."""
        self.stats.refused("unauthenticated rate limit")
        more = self._rate_log.ready(self.reactor.seconds())
        if more is not None:
            _log.warn("turn: not answering UDP requests from {client} ({more} more since the "
                      "last line) beyond {rate}/s per source without an allocation "
                      "(CT_TURN_UNAUTHENTICATED_RATE; logged once a minute at most)",
                      client=addr[0], more=more, rate=self.config.unauthenticated_rate)

    def drop_once(self, allocation: Allocation, reason: str, detail: str = "") -> None:
        """Count a dropped packet; log the first drop of each reason per allocation."""
        self.stats.dropped_packets += 1
        if allocation.logged is None:
            allocation.logged = set()
        if reason not in allocation.logged:
            allocation.logged.add(reason)
            self.stats.refused(reason)
            _log.info("turn: dropping packets of {user} for {client}: {reason}{detail} "
                      "(logged once per allocation)",
                      user=allocation.username, client=_show(allocation.key), reason=reason,
                      detail=f" ({detail})" if detail else "")

    # ------------------------------------------------------------ STUN messages

    def handle_stun(self, data: bytes, addr: tuple[str, int], key: Hashable,
                    link: Any) -> bytes | None:
        """Answer one STUN message from a client; return the reply bytes, if any.

        ``key`` identifies the client's 5-tuple; ``link`` is the listener or connection,
        with ``stream`` (bool) and ``sink_for(addr)``. Never raises for bad input.
        """
        try:
            message = stun.parse_message(data)
        except stun.StunError:
            self.stats.dropped_packets += 1
            return None
        try:
            return self._dispatch(message, addr, key, link)
        except stun.StunError as e:
            self._refuse("malformed attribute", 400, message.method, addr, None, str(e))
            if message.cls == stun.REQUEST:
                return self._error(message, 400)
            return None

    def _dispatch(self, message: stun.Message, addr, key, link) -> bytes | None:
        if message.fingerprint_at >= 0 and not stun.check_fingerprint(message):
            self.stats.dropped_packets += 1
            return None
        method = message.method
        if message.cls == stun.INDICATION:
            if method == stun.SEND:
                self._send_indication(message, key)
            return None
        if message.cls != stun.REQUEST:
            return None
        if (self.limiter is not None and not link.stream and key not in self.table.by_key
                and not self.limiter.allow(addr[0])):
            self._rate_limited(addr)
            return None
        if message.unknown:
            self._refuse("unknown comprehension-required attributes", 420, method, addr, None)
            return self._error(message, 420, extra=[
                (stun.UNKNOWN_ATTRIBUTES, stun.encode_unknown_attributes(message.unknown))])
        if method == stun.BINDING:
            self.stats.binding_requests += 1
            return self._reply(message, stun.SUCCESS, [
                (stun.XOR_MAPPED_ADDRESS,
                 stun.encode_xor_address(addr[0], addr[1], message.transaction_id))])
        handler = self._handlers.get(method)
        if handler is None:
            self._refuse("unknown method", 400, method, addr, None)
            return self._error(message, 400)
        now = self.reactor.seconds()
        allocation = self.table.get(key)
        result = auth.authenticate(message, self.credentials, self.nonces, now,
                                   allocation.username if allocation is not None else None)
        if result.error:
            if result.reason:
                if result.error == 401:
                    self.stats.auth_failures += 1
                self._refuse(result.reason, result.error, method, addr, result.username)
            if result.error in (401, 438):
                return self._error(message, result.error, extra=auth.challenge_attributes(
                    self.credentials.realm, self.nonces.mint(now)))
            return self._error(message, result.error)
        if allocation is not None and allocation.username != result.username:
            self._refuse("user differs from the allocation's", 441, method, addr,
                         result.username)
            return self._error(message, 441, result)
        return handler(self, message, result, allocation, addr, key, link, now)

    # ------------------------------------------------------------ replies

    def _reply(self, message: stun.Message, cls: int, attrs: list,
               result: auth.AuthResult | None = None) -> bytes:
        """Signed answers carry SOFTWARE and FINGERPRINT; unauthenticated ones stay small
        (no SOFTWARE, FINGERPRINT only when the request had one) against amplification."""
        if result is not None and result.key is not None:
            return stun.encode_message(message.method, cls, message.transaction_id,
                                       attrs + [(stun.SOFTWARE, self._software)],
                                       key=result.key, integrity=result.integrity)
        return stun.encode_message(message.method, cls, message.transaction_id, attrs,
                                   add_fingerprint=message.fingerprint_at >= 0)

    def _error(self, message: stun.Message, code: int, result: auth.AuthResult | None = None,
               extra: list = ()) -> bytes:
        """An error answer; an unauthenticated one has an empty reason phrase."""
        signed = result is not None and result.key is not None
        attrs = [(stun.ERROR_CODE, stun.encode_error(code, None if signed else ""))]
        return self._reply(message, stun.ERROR, attrs + list(extra), result)

    def _fail(self, message, code, reason, result, addr, detail="") -> bytes:
        self._refuse(reason, code, message.method, addr, result.username, detail)
        return self._error(message, code, result)

    # ------------------------------------------------------------ TURN methods

    def _allocate(self, message, result, allocation, addr, key, link, now) -> bytes:
        attrs = message.attributes
        if allocation is not None:
            if message.transaction_id == allocation.allocate_tid:
                return allocation.allocate_response  # retransmission
            return self._fail(message, 437, "allocation exists", result, addr)
        transport = attrs.get(stun.REQUESTED_TRANSPORT)
        if transport is None:
            return self._fail(message, 400, "no REQUESTED-TRANSPORT", result, addr)
        if stun.decode_requested_transport(transport) != stun.PROTOCOL_UDP:
            return self._fail(message, 442, "only UDP relaying", result, addr)
        family = attrs.get(stun.REQUESTED_ADDRESS_FAMILY)
        if family is not None:
            if stun.RESERVATION_TOKEN in attrs:
                return self._fail(message, 400, "family with reservation token", result, addr)
            wanted = stun.decode_family(family)
            ours = stun.FAMILY_IPV6 if self.relay_family == socket.AF_INET6 else stun.FAMILY_IPV4
            if wanted != ours:
                return self._fail(message, 440, "address family not served", result, addr)
        if stun.RESERVATION_TOKEN in attrs:
            return self._fail(message, 508, "reservations not supported", result, addr)
        quota = self.table.quota_refusal(result.username)
        if quota is not None:
            return self._fail(message, 486, quota, result, addr)
        if self.config.alternate_server is not None:
            host, port = self.config.alternate_server
            self._refuse("redirected to the alternate server", 300, message.method, addr,
                         result.username)
            return self._error(message, 300, result, extra=[
                (stun.ALTERNATE_SERVER, stun.encode_address(host, port))])
        lifetime = self._lifetime(attrs.get(stun.LIFETIME), allocate=True)
        allocation = Allocation(key, result.username, self.credentials.realm, result.key,
                                now + lifetime)
        port = self._open_relay(allocation, link.stream, stun.EVEN_PORT in attrs,
                                stun.DONT_FRAGMENT in attrs)
        if port is None:
            return self._fail(message, 508, "no relay port free", result, addr)
        allocation.sink = link.sink_for(addr)
        udp_target = getattr(link, "udp_target", None)
        if udp_target is not None:
            allocation.relay.client_sendto, allocation.relay.client_addr = udp_target(addr)
        if self.config.bandwidth:
            allocation.budget = self.config.bandwidth * self.config.sweep_interval
        self.table.add(allocation)
        tid = message.transaction_id
        response = self._reply(message, stun.SUCCESS, [
            (stun.XOR_RELAYED_ADDRESS,
             stun.encode_xor_address(self.advertised_host, allocation.relay_address[1], tid)),
            (stun.LIFETIME, stun.encode_u32(lifetime)),
            (stun.XOR_MAPPED_ADDRESS, stun.encode_xor_address(addr[0], addr[1], tid)),
        ], result)
        allocation.allocate_tid = tid
        allocation.allocate_response = response
        _log.info("turn: allocated {relay} for {user} at {client} ({lifetime} s)",
                  relay=allocation.relay_address, user=result.username, client=_show(key),
                  lifetime=lifetime)
        return response

    def _lifetime(self, raw: bytes | None, allocate: bool) -> int:
        config = self.config
        if raw is None:
            return config.default_lifetime
        requested = stun.decode_u32(raw)
        if allocate:
            requested = max(requested, config.default_lifetime)
        return min(requested, config.max_lifetime)

    def _refresh(self, message, result, allocation, addr, key, link, now) -> bytes:
        if allocation is None:
            return self._fail(message, 437, "no allocation to refresh", result, addr)
        family = message.attributes.get(stun.REQUESTED_ADDRESS_FAMILY)
        if family is not None and stun.decode_family(family) != (
                stun.FAMILY_IPV6 if self.relay_family == socket.AF_INET6 else stun.FAMILY_IPV4):
            return self._fail(message, 443, "address family mismatch", result, addr)
        lifetime = self._lifetime(message.attributes.get(stun.LIFETIME), allocate=False)
        if lifetime == 0:
            self.delete(allocation, "refreshed with lifetime 0")
        else:
            allocation.refresh(lifetime, now)
        return self._reply(message, stun.SUCCESS, [(stun.LIFETIME, stun.encode_u32(lifetime))],
                           result)

    def _peer_refusal(self, host: str) -> tuple[int, str] | None:
        if (":" in host) != (self.relay_family == socket.AF_INET6):
            return 443, "peer address family mismatch"
        reason = self.policy.refusal(host)
        if reason is not None:
            return 403, reason
        return None

    def _create_permission(self, message, result, allocation, addr, key, link, now) -> bytes:
        if allocation is None:
            return self._fail(message, 437, "no allocation", result, addr)
        hosts = []
        # Every XOR-PEER-ADDRESS counts, not only the first: walk the raw attributes.
        for value in _all_attributes(message, stun.XOR_PEER_ADDRESS):
            host, _ = stun.decode_xor_address(value, message.transaction_id)
            refusal = self._peer_refusal(host)
            if refusal is not None:
                return self._fail(message, refusal[0], refusal[1], result, addr, host)
            hosts.append(host)
        if not hosts:
            return self._fail(message, 400, "no XOR-PEER-ADDRESS", result, addr)
        for host in hosts:
            self.table.add_permission(allocation, host, now)
        return self._reply(message, stun.SUCCESS, [], result)

    def _channel_bind(self, message, result, allocation, addr, key, link, now) -> bytes:
        if allocation is None:
            return self._fail(message, 437, "no allocation", result, addr)
        attrs = message.attributes
        raw_number = attrs.get(stun.CHANNEL_NUMBER)
        raw_peer = attrs.get(stun.XOR_PEER_ADDRESS)
        if raw_number is None or raw_peer is None:
            return self._fail(message, 400, "CHANNEL-NUMBER and XOR-PEER-ADDRESS needed",
                              result, addr)
        number = stun.decode_channel_number(raw_number)
        peer = stun.decode_xor_address(raw_peer, message.transaction_id)
        refusal = self._peer_refusal(peer[0])
        if refusal is not None:
            return self._fail(message, refusal[0], refusal[1], result, addr, peer[0])
        why = allocation.bind_check(number, peer)
        if why is not None:
            return self._fail(message, 400, why, result, addr)
        self.table.bind_channel(allocation, number, peer, now)
        return self._reply(message, stun.SUCCESS, [], result)

    _handlers = {
        stun.ALLOCATE: _allocate,
        stun.REFRESH: _refresh,
        stun.CREATE_PERMISSION: _create_permission,
        stun.CHANNEL_BIND: _channel_bind,
    }

    def _send_indication(self, message: stun.Message, key: Hashable) -> None:
        allocation = self.table.get(key)
        if allocation is None:
            self.stats.dropped_packets += 1
            return
        raw_peer = message.attributes.get(stun.XOR_PEER_ADDRESS)
        payload = message.attributes.get(stun.DATA_ATTR)
        if raw_peer is None or payload is None:
            self.drop_once(allocation, "Send indication without peer or data")
            return
        peer = stun.decode_xor_address(raw_peer, message.transaction_id)
        if peer[0] not in allocation.permissions:
            self.drop_once(allocation, "no permission for peer", peer[0])
            return
        self.relay_to_peer(allocation, payload, peer)

    # ------------------------------------------------------------ data paths

    def relay_to_peer(self, allocation: Allocation, payload: bytes, peer) -> None:
        size = len(payload)
        allocation.budget -= size
        if allocation.budget < 0:
            self.drop_once(allocation, "bandwidth limit")
            return
        allocation.peer_send(payload, peer)
        stats = self.stats
        stats.packets_to_peer += 1
        stats.bytes_to_peer += size

    def _open_relay(self, allocation: Allocation, stream: bool, even: bool,
                    dont_fragment: bool):
        """Bind a relay UDP socket on a free port of the range; None if none is free."""
        low, high = self.config.relay_ports
        span = high - low + 1
        tries = 0
        for _ in range(span):
            port_number = self._next_port
            self._next_port = low if port_number >= high else port_number + 1
            if port_number in self._ports_in_use or (even and port_number & 1):
                continue
            tries += 1
            if tries > 64:
                break
            try:
                sock = self.bind_relay_socket(self.config.relay_host, port_number)
            except OSError:
                continue
            self._ports_in_use.add(port_number)
            if dont_fragment and hasattr(socket, "IP_MTU_DISCOVER"):
                try:
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MTU_DISCOVER, 2)
                except OSError:
                    pass
            relay = RelaySocket(self, allocation, stream, sock, port_number)
            allocation.relay = relay
            allocation.relay_address = (self.config.relay_host, port_number)
            allocation.peer_send = _peer_sender(sock, self.stats)
            return relay
        return None

    def bind_relay_socket(self, host: str, port: int) -> socket.socket:
        """A non-blocking UDP socket bound to ``(host, port)``; OSError if taken."""
        sock = socket.socket(self.relay_family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        if self.config.relay_socket_buffer:
            set_socket_buffers(sock, self.config.relay_socket_buffer, send=False)
        return sock


def _peer_sender(sock: socket.socket, stats: TurnStats) -> Callable:
    sendto = sock.sendto

    def send(payload: bytes, peer: tuple[str, int]) -> None:
        try:
            sendto(payload, peer)
        except OSError:
            stats.dropped_packets += 1

    return send


def _all_attributes(message: stun.Message, attr_type: int) -> list[bytes]:
    """Every value of ``attr_type`` before MESSAGE-INTEGRITY (parse keeps only the first)."""
    data = message.raw
    end = message.integrity_at if message.integrity_at >= 0 else len(data)
    if message.integrity256_at >= 0:
        end = min(end, message.integrity256_at)
    if message.fingerprint_at >= 0:
        end = min(end, message.fingerprint_at)
    values = []
    pos = stun.HEADER_LENGTH
    while pos + 4 <= end:
        kind, length = _CHANNEL_HEADER.unpack_from(data, pos)
        if kind == attr_type:
            values.append(data[pos + 4:pos + 4 + length])
        pos += 4 + stun.padded(length)
    return values


def _show(key: Any) -> str:
    if isinstance(key, tuple):
        return f"udp:{key[0]}:{key[1]}"
    return str(key)


_READ_IGNORE = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)


@implementer(IReadDescriptor)
class SocketPoller:
    """The relay's UDP sockets behind one reactor reader: an epoll set of their own.

    The reactor sees a single descriptor (the inner epoll); one wake-up serves every
    socket that is ready, which saves the reactor's per-descriptor dispatch cost.
    Registered with the reactor only while it watches some socket.

    With a ``hold`` (seconds), a busy relay serves in batches: when a wake-up found little
    to do (fewer than ``thin`` ready sockets) less than ``hold`` after the previous one,
    the poller leaves the reactor for ``hold`` and then serves everything that arrived
    meanwhile in one round. Under a steady stream of small packets (audio) this trades at
    most ``hold`` of latency for far fewer wake-ups, each of which costs more than relaying
    a datagram; a quiet relay, and a saturated one whose wake-ups are full, serve every
    datagram on arrival.
    """

    rounds = 64
    thin = 16

    def __init__(self, reactor, hold: float = 0.0):
        self.reactor = reactor
        self.hold = hold
        self.epoll = select.epoll()
        self.readers: dict[int, Any] = {}
        self.handlers: dict[int, Callable] = {}  # fd -> what serves one readiness
        self.registered = False  # watching some socket
        self.timer = None  # holding: the DelayedCall of the next round
        self.last_wake = float("-inf")
        self.holds = 0  # times it switched to serving on a timer

    def add(self, reader, batch: int | None = 1) -> None:
        if batch is not None:
            reader.batch = batch
        fd = reader.fileno()
        self.epoll.register(fd, select.EPOLLIN)
        self.readers[fd] = reader
        one = getattr(reader, "read_one", None) if reader.batch == 1 else None
        self.handlers[fd] = one if one is not None else reader.doRead
        if not self.registered:
            self.registered = True
            if self.timer is None:
                self.reactor.addReader(self)

    def remove(self, reader) -> None:
        fd = reader.fileno()
        if self.readers.pop(fd, None) is not None:
            del self.handlers[fd]
            self.epoll.unregister(fd)
        if not self.readers and self.registered:
            self.registered = False
            if self.timer is not None:
                timer, self.timer = self.timer, None
                if timer.active():
                    timer.cancel()
            else:
                self.reactor.removeReader(self)

    def fileno(self) -> int:
        return self.epoll.fileno()

    def logPrefix(self) -> str:
        return "turn-sockets"

    def connectionLost(self, reason) -> None:
        self.registered = False

    def doRead(self) -> None:
        served = self.serve()
        hold = self.hold
        if hold and self.registered:
            now = self.reactor.seconds()
            if served < self.thin and now - self.last_wake < hold:
                self.holds += 1
                self.reactor.removeReader(self)
                self.timer = self.reactor.callLater(hold, self._round)
            self.last_wake = now

    def _round(self) -> None:
        """The timed round that ends a hold; then back to waiting for readiness."""
        self.timer = None
        try:
            self.serve()
        except Exception:
            _log.failure("turn: error serving sockets")
        if self.registered:
            self.last_wake = self.reactor.seconds()
            self.reactor.addReader(self)

    def serve(self) -> int:
        """Serve ready sockets one datagram at a time, re-polling until none is ready.

        Quiet readers watched here read a single datagram per call (``batch`` 1, their
        ``read_one`` when they have one): asking the inner epoll again is cheaper than the
        failing read that ends a batch. Returns how many readiness events were served.
        """
        handlers = self.handlers
        poll = self.epoll.poll
        served = 0
        for _ in range(self.rounds):
            events = poll(0, 512)
            if not events:
                break
            served += len(events)
            for fd, _ in events:
                handler = handlers.get(fd)
                if handler is None:
                    continue
                try:
                    handler()
                except Exception:
                    _log.failure("turn: error reading {reader}", reader=self.readers.get(fd))
        return served


# One receive buffer for every relay socket: the reactor reads one socket at a time and
# each datagram leaves (copied by sendto) before the next is read.
_RELAY_BUFFER = bytearray(4 + MAX_DATAGRAM + 4)
_RELAY_VIEW = memoryview(_RELAY_BUFFER)
_RELAY_PAYLOAD = _RELAY_VIEW[4:4 + MAX_DATAGRAM]


@implementer(IReadDescriptor)
class _WatchedSocket:
    """A non-blocking socket read through the server's poller (relay and listener alike)."""

    __slots__ = ()
    log_prefix = "turn"

    def fileno(self) -> int:
        return -1 if self.closed else self._fileno

    def logPrefix(self) -> str:
        return self.log_prefix

    def close(self) -> None:
        if not self.closed:
            self.server.unwatch(self)
            self.closed = True
            self._forget()
            self.sock.close()

    def _forget(self) -> None:
        """Hook: drop references when closing."""

    def connectionLost(self, reason) -> None:
        self.close()


class RelaySocket(_WatchedSocket):
    """The relay socket of one allocation, read by the reactor: peer data goes to the client.

    A bare ``IReadDescriptor`` rather than a ``udp.Port``: less memory per allocation and
    no per-socket log lines.
    """

    __slots__ = ("server", "stats", "allocation", "stream", "sock", "port", "closed",
                 "_fileno", "_recvfrom", "batch", "peer_sendto", "client_sendto", "client_addr",
                 "__weakref__")

    def __init__(self, server: TurnServer, allocation: Allocation, stream: bool,
                 sock: socket.socket, port: int):
        self.server = server
        self.stats = server.stats
        self.allocation: Allocation | None = allocation
        self.stream = stream
        self.sock = sock
        self.port = port
        self.closed = False
        self.batch = 64
        self._fileno = sock.fileno()
        self._recvfrom = sock.recvfrom_into
        self.peer_sendto = sock.sendto
        # A UDP client's socket and address, for sending without the sink's extra call.
        self.client_sendto: Callable | None = None
        self.client_addr: tuple[str, int] | None = None
        server.watch(self)

    log_prefix = "turn-relay"

    def _forget(self) -> None:
        self.allocation = None

    def doRead(self) -> None:
        """Relay up to ``batch`` waiting datagrams."""
        read_one = self.read_one
        for _ in range(self.batch):
            if not read_one():
                return

    def read_one(self) -> bool:
        """Relay one waiting datagram (ChannelData built in place, without copies).

        False when nothing is waiting or the socket is done with.
        """
        try:
            size, addr = self._recvfrom(_RELAY_PAYLOAD)
        except OSError as e:
            if e.errno == errno.ECONNREFUSED:
                return True
            if e.errno in _READ_IGNORE:
                return False
            raise
        allocation = self.allocation
        if allocation is None:
            return False
        if len(addr) > 2:
            addr = addr[:2]
        channel = allocation.peer_channels.get(addr)
        if (self.stream or channel is None or addr[0] not in allocation.permissions
                or allocation.budget < size):
            self.datagramReceived(bytes(_RELAY_PAYLOAD[:size]), addr)
        else:
            allocation.budget -= size
            buffer = _RELAY_BUFFER
            buffer[0] = channel >> 8
            buffer[1] = channel & 0xFF
            buffer[2] = size >> 8
            buffer[3] = size & 0xFF
            stats = self.stats
            sendto = self.client_sendto
            if sendto is None:
                allocation.sink(_RELAY_VIEW[:4 + size])
            else:
                try:
                    sendto(_RELAY_VIEW[:4 + size], self.client_addr)
                except OSError:
                    stats.dropped_packets += 1
            stats.packets_to_client += 1
            stats.bytes_to_client += size
        return not self.closed

    def datagramReceived(self, data: bytes, addr: tuple) -> None:
        allocation = self.allocation
        if allocation is None:
            return
        if len(addr) > 2:
            addr = addr[:2]
        if addr[0] not in allocation.permissions:
            self.server.drop_once(allocation, "data from a peer without permission", addr[0])
            return
        size = len(data)
        allocation.budget -= size
        if allocation.budget < 0:
            self.server.drop_once(allocation, "bandwidth limit")
            return
        channel = allocation.peer_channels.get(addr)
        if channel is not None:
            if self.stream:
                message = _pack_channel(channel, size) + data + _PADS[size & 3]
            else:
                message = _pack_channel(channel, size) + data
        else:
            message = stun.encode_message(
                stun.DATA, stun.INDICATION, os.urandom(12),
                [(stun.XOR_PEER_ADDRESS, stun.encode_xor_address(addr[0], addr[1], b"")),
                 (stun.DATA_ATTR, data)], add_fingerprint=False)
        allocation.sink(message)
        stats = self.stats
        stats.packets_to_client += 1
        stats.bytes_to_client += size


class UdpListener(DatagramProtocol):
    """The server's UDP port: STUN requests and ChannelData from clients."""

    stream = False

    def __init__(self, server: TurnServer):
        self.server = server
        self.allocations = server.table.by_key
        self.stats = server.stats
        self._sendto: Callable | None = None

    def startProtocol(self) -> None:
        sock = self.transport.socket
        wanted = self.server.config.socket_buffer
        got = set_socket_buffers(sock, wanted)
        if got < wanted:
            _log.warn("turn: the UDP listener got a receive buffer of {got} bytes, not the "
                      "{wanted} of CT_TURN_SOCKET_BUFFER: raise net.core.rmem_max (sysctl) "
                      "so bursts and short stalls do not drop datagrams", got=got,
                      wanted=wanted)
        self._sendto = sock.sendto

    def sink_for(self, addr: tuple[str, int]) -> Callable:
        return _udp_sender(self.transport.socket, addr, self.stats)

    def udp_target(self, addr: tuple[str, int]) -> tuple[Callable, tuple[str, int]]:
        """What the relay fast path sends with: the socket's ``sendto`` and ``addr``."""
        return self.transport.socket.sendto, addr

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 4:
            return
        first = data[0]
        if 0x40 <= first <= 0x4F:
            allocation = self.allocations.get(addr)
            if allocation is None:
                self.stats.dropped_packets += 1
                return
            channel, length = _unpack_channel(data)
            peer = allocation.channels.get(channel)
            if peer is None or length + 4 > len(data):
                self.server.drop_once(allocation, "ChannelData on an unbound channel")
                return
            if peer[0] not in allocation.permissions:
                self.server.drop_once(allocation, "no permission for peer", peer[0])
                return
            allocation.budget -= length
            if allocation.budget < 0:
                self.server.drop_once(allocation, "bandwidth limit")
                return
            allocation.peer_send(data[4:4 + length], peer)
            stats = self.stats
            stats.packets_to_peer += 1
            stats.bytes_to_peer += length
            return
        if first >= 0x40:
            self.stats.dropped_packets += 1
            return
        try:
            reply = self.server.handle_stun(data, addr, addr, self)
        except Exception:
            _log.failure("turn: error handling a UDP message from {addr}", addr=addr)
            return
        if reply is not None:
            try:
                self._sendto(reply, addr)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNREFUSED):
                    _log.warn("turn: cannot answer {addr}: {e}", addr=addr, e=e)


class _SocketHolder:
    """What :class:`UdpListener` expects of its transport: the socket."""

    def __init__(self, sock: socket.socket):
        self.socket = sock


@implementer(IReadDescriptor)
class UdpServerSocket(_WatchedSocket):
    """The server's UDP socket, read by the reactor; ChannelData relayed without copies.

    Everything that is not ChannelData goes to a :class:`UdpListener`.
    """

    batch = 256

    def __init__(self, reactor, server: TurnServer, host: str, port: int, sock=None):
        if sock is None:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                sock.bind((host, port))
            except OSError:
                sock.close()
                raise
        self.reactor = reactor
        self.server = server
        self.stats = server.stats
        self.allocations = server.table.by_key
        self.sock = sock
        self.port = sock.getsockname()[1]
        self.closed = False
        self._fileno = sock.fileno()
        self.listener = UdpListener(server)
        self.listener.transport = _SocketHolder(sock)
        self.listener.startProtocol()
        self._buffer = bytearray(MAX_DATAGRAM + 4)
        self._view = memoryview(self._buffer)
        server.watch(self, busy=True)

    log_prefix = "turn-udp"

    def doRead(self) -> None:
        recv_into = self.sock.recvfrom_into
        buffer, view = self._buffer, self._view
        allocations = self.allocations
        stats = self.stats
        listener = self.listener
        for _ in range(self.batch):
            try:
                size, addr = recv_into(buffer)
            except OSError as e:
                if e.errno in _READ_IGNORE:
                    return
                if e.errno == errno.ECONNREFUSED:
                    continue
                raise
            if len(addr) > 2:
                addr = addr[:2]
            if size >= 4 and 0x40 <= buffer[0] <= 0x4F:
                allocation = allocations.get(addr)
                if allocation is not None:
                    length = (buffer[2] << 8) | buffer[3]
                    peer = allocation.channels.get((buffer[0] << 8) | buffer[1])
                    if (peer is not None and length + 4 <= size
                            and peer[0] in allocation.permissions
                            and allocation.budget >= length):
                        allocation.budget -= length
                        try:
                            allocation.relay.peer_sendto(view[4:4 + length], peer)
                        except OSError:
                            stats.dropped_packets += 1
                        stats.packets_to_peer += 1
                        stats.bytes_to_peer += length
                        continue
            listener.datagramReceived(bytes(view[:size]), addr)
            if self.closed:
                return


class TurnStreamProtocol(Protocol):
    """One TCP or TLS client: STUN messages and padded ChannelData on a stream."""

    stream = True

    def __init__(self, server: TurnServer):
        self.server = server
        self.stats = server.stats
        self._buffer = b""
        self.peer: tuple[str, int] | None = None
        self.active = False  # received something since the last idle check
        self.idle_since = 0.0

    def __repr__(self) -> str:
        return f"tcp:{self.peer[0]}:{self.peer[1]}" if self.peer else "tcp:?"

    def connectionMade(self) -> None:
        address = self.transport.getPeer()
        self.peer = (address.host, address.port)
        self.idle_since = self.server.reactor.seconds()
        if not self.server.stream_opened(self):
            self.abort()
            return
        try:
            self.transport.setTcpNoDelay(True)
        except Exception:
            pass

    def abort(self) -> None:
        """Close at once (an idle or refused connection has nothing worth flushing)."""
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            self.transport.loseConnection()

    def sink_for(self, addr) -> Callable:
        return self.transport.write

    def connectionLost(self, reason=None) -> None:
        self.server.client_gone(self)

    def dataReceived(self, data: bytes) -> None:
        self.active = True
        buffer = self._buffer + data if self._buffer else data
        size = len(buffer)
        pos = 0
        server = self.server
        while size - pos >= 4:
            first = buffer[pos]
            length = (buffer[pos + 2] << 8) | buffer[pos + 3]
            if first < 0x40:
                end = pos + stun.HEADER_LENGTH + length
                if end > size:
                    break
                try:
                    reply = server.handle_stun(buffer[pos:end], self.peer, self, self)
                except Exception:
                    _log.failure("turn: error handling a message from {client}", client=self)
                    reply = None
                if reply is not None:
                    self.transport.write(reply)
            elif first <= 0x4F:
                end = pos + 4 + ((length + 3) & ~3)
                if end > size:
                    break
                self._channel_data(buffer, pos, length)
            else:
                _log.info("turn: closing {client}: bytes that are neither STUN nor "
                          "ChannelData", client=self)
                self.stats.refused("unframeable stream data")
                self._buffer = b""
                self.transport.loseConnection()
                return
            pos = end
            if getattr(self.transport, "disconnecting", False):
                break
        self._buffer = buffer[pos:] if pos < size else b""

    def _channel_data(self, buffer: bytes, pos: int, length: int) -> None:
        allocation = self.server.table.by_key.get(self)
        if allocation is None:
            self.stats.dropped_packets += 1
            return
        channel = (buffer[pos] << 8) | buffer[pos + 1]
        peer = allocation.channels.get(channel)
        if peer is None:
            self.server.drop_once(allocation, "ChannelData on an unbound channel")
            return
        if peer[0] not in allocation.permissions:
            self.server.drop_once(allocation, "no permission for peer", peer[0])
            return
        self.server.relay_to_peer(allocation, buffer[pos + 4:pos + 4 + length], peer)


class TurnStreamFactory(Factory):
    def __init__(self, server: TurnServer):
        self.server = server

    def buildProtocol(self, addr):
        protocol = TurnStreamProtocol(self.server)
        protocol.factory = self
        return protocol
