"""STUN/TURN request handling and the allocations of one relay, without sockets.

:class:`TurnServer` answers STUN/TURN requests, owns the allocations and reads time from an
injected clock; it opens relay sockets through a :class:`RelaySockets` (``sockets.py`` on a
host, a fake in tests). Bytes move in ``sockets.py`` (UDP) and ``stream.py`` (TCP/TLS);
the client -> peer data rule they share is in ``datapath.py``.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from typing import Any, Hashable, Protocol

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ct.turn import auth, stun
from ct.turn.allocation import DEFAULT_LIFETIME, MAX_LIFETIME, Allocation, AllocationTable
from ct.turn.datapath import DataPath, show_client
from ct.common.logthrottle import LogThrottle
from ct.turn.limits import SourceLimiter
from ct.turn.policy import PeerPolicy

_log = Logger()

_ATTRIBUTE_HEADER = struct.Struct("!HH")


@dataclass(frozen=True, slots=True)
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
    fast_path: bool = True  # the compiled UDP data path when it is built
    # UDP requests answered per second per source IP without an allocation (0: no limit);
    # bursts of twice that; at most ``rate_sources`` sources tracked one by one.
    unauthenticated_rate: float = 20.0
    rate_sources: int = 10000
    max_connections: int = 2000  # TCP/TLS client connections at once (0: no cap)
    idle_timeout: float = 60.0  # close a TCP/TLS connection without allocation this idle


class RelaySockets(Protocol):
    """How the request logic opens relay sockets (``sockets.UdpSockets`` on a host)."""

    def open_relay(self, allocation: Allocation, port: int, link: Any,
                   client: tuple[str, int], dont_fragment: bool) -> Any:
        """A relay socket bound on ``port``, relaying peer data to ``client`` over ``link``;
        OSError when the port is taken. It has ``port``, ``close()`` and
        ``send_to_peer(payload, peer)`` (which raises OSError when it cannot send)."""


class TurnServer:
    """STUN/TURN request handling and the allocations of one relay."""

    def __init__(self, config: TurnConfig, credentials: auth.Credentials, policy: PeerPolicy,
                 clock: Any, sockets: RelaySockets, datapath: DataPath,
                 nonces: auth.NonceMinter | None = None):
        self.config = config
        self.credentials = credentials
        self.policy = policy
        self.clock = clock
        self.sockets = sockets
        self.datapath = datapath
        self.stats = datapath.stats
        self.nonces = nonces or auth.NonceMinter(config.nonce_lifetime)
        self.table = AllocationTable(self.stats, config.max_allocations, config.user_quota)
        self.advertised_host = config.external_host or config.relay_host
        self.ipv6 = ":" in config.relay_host
        self._family = stun.FAMILY_IPV6 if self.ipv6 else stun.FAMILY_IPV4
        self._software = config.software.encode("utf-8")
        self._ports_in_use: set[int] = set()
        low, high = config.relay_ports
        self._next_port = random.randint(low, high)
        self._sweeper = LoopingCall(self.sweep)
        self._sweeper.clock = clock
        rate = config.unauthenticated_rate
        self.limiter = (SourceLimiter(rate, max(1, int(2 * rate)), config.rate_sources,
                                      clock.seconds) if rate > 0 else None)
        self._rate_log = LogThrottle(_log, self.clock, 1, 60.0, "unanswered requests")
        self._connection_log = LogThrottle(_log, self.clock, 1, 60.0, "closed connections")
        self.streams: set = set()  # open TCP/TLS client connections

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
        self.credentials.forget_revoked(self.clock.seconds())
        if self.streams:
            self.close_idle_streams(self.clock.seconds())
        for allocation in self.table.expire(self.clock.seconds()):
            self._release(allocation)
            _log.info("turn: allocation of {user} for {client} expired",
                      user=allocation.username, client=show_client(allocation.key))
        bandwidth = self.config.bandwidth
        if bandwidth:
            budget = bandwidth * self.config.sweep_interval
            for allocation in self.table.by_key.values():
                allocation.budget = budget

    def delete(self, allocation: Allocation, why: str) -> None:
        if self.table.remove(allocation):
            self._release(allocation)
            _log.info("turn: allocation of {user} for {client} deleted ({why})",
                      user=allocation.username, client=show_client(allocation.key), why=why)

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
        self._connection_log.warn("turn: closing {client}: {reason} ({detail}; logged once a "
                                  "minute at most)", client=stream, reason=reason,
                                  detail=detail)

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
                  method=stun.METHOD_NAMES.get(method, hex(method)), client=show_client(client),
                  user=username, code=code, reason=reason,
                  detail=f" ({detail})" if detail else "")

    def _rate_limited(self, addr) -> None:
        """Count an unanswered request; one warning line per minute at most."""
        self.stats.refused("unauthenticated rate limit")
        self._rate_log.warn("turn: not answering UDP requests from {client} beyond {rate}/s per "
                            "source without an allocation (CT_TURN_UNAUTHENTICATED_RATE; "
                            "logged once a minute at most)", client=addr[0],
                            rate=self.config.unauthenticated_rate)


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
        now = self.clock.seconds()
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
            if stun.decode_family(family) != self._family:
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
        relay = self._open_relay(allocation, link, addr, stun.EVEN_PORT in attrs,
                                 stun.DONT_FRAGMENT in attrs)
        if relay is None:
            return self._fail(message, 508, "no relay port free", result, addr)
        allocation.sink = link.sink_for(addr)
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
                  relay=allocation.relay_address, user=result.username, client=show_client(key),
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
        if family is not None and stun.decode_family(family) != self._family:
            return self._fail(message, 443, "address family mismatch", result, addr)
        lifetime = self._lifetime(message.attributes.get(stun.LIFETIME), allocate=False)
        if lifetime == 0:
            self.delete(allocation, "refreshed with lifetime 0")
        else:
            allocation.refresh(lifetime, now)
        return self._reply(message, stun.SUCCESS, [(stun.LIFETIME, stun.encode_u32(lifetime))],
                           result)

    def _peer_refusal(self, host: str) -> tuple[int, str] | None:
        if (":" in host) != self.ipv6:
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
            self.datapath.drop_once(allocation, "Send indication without peer or data")
            return
        self.datapath.to_peer(allocation, payload,
                              stun.decode_xor_address(raw_peer, message.transaction_id))


    def _open_relay(self, allocation: Allocation, link: Any, client: tuple[str, int],
                    even: bool, dont_fragment: bool):
        """Open a relay socket on a free port of the range; None if none is free."""
        low, high = self.config.relay_ports
        tries = 0
        for _ in range(high - low + 1):
            port = self._next_port
            self._next_port = low if port >= high else port + 1
            if port in self._ports_in_use or (even and port & 1):
                continue
            tries += 1
            if tries > 64:
                break
            try:
                relay = self.sockets.open_relay(allocation, port, link, client, dont_fragment)
            except OSError:
                continue
            self._ports_in_use.add(port)
            allocation.relay = relay
            allocation.relay_address = (self.config.relay_host, port)
            allocation.peer_send = relay.send_to_peer
            return relay
        return None


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
        kind, length = _ATTRIBUTE_HEADER.unpack_from(data, pos)
        if kind == attr_type:
            values.append(data[pos + 4:pos + 4 + length])
        pos += 4 + stun.padded(length)
    return values
