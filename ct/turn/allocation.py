"""TURN allocation state (RFC 8656): allocations, permissions and channels with lifetimes.

Pure state: times are numbers passed in by the caller (``now``), nothing here
schedules. The server calls :meth:`AllocationTable.expire` periodically; between two
sweeps an expired permission or channel may live up to one sweep interval longer.
"""

from __future__ import annotations

from typing import Any, Hashable

from ct.turn import stun
from ct.turn.auth import rest_user
from ct.turn.metrics import TurnStats

PERMISSION_LIFETIME = 300.0
CHANNEL_LIFETIME = 600.0
DEFAULT_LIFETIME = 600
MAX_LIFETIME = 3600


class Allocation:
    """One client's allocation (identified by its 5-tuple ``key``).

    ``permissions`` maps a peer IP to its expiry; ``channels`` maps a channel number to the
    peer ``(host, port)``; ``peer_channels`` is the reverse map. ``relay``, ``sink`` (bytes to
    the client) and ``peer_send`` (bytes to a peer) are left to the server, ``relay_fd`` (the
    relay socket's descriptor, -1 without one) to the sockets; ``budget`` is the bytes it may
    still relay in the current bandwidth window.
    """

    __slots__ = ("key", "username", "realm", "integrity_key", "expires", "permissions",
                 "channels", "channel_expiry", "peer_channels", "relay", "relay_address",
                 "sink", "peer_send", "relay_fd", "allocate_tid", "allocate_response", "budget",
                 "logged")

    def __init__(self, key: Hashable, username: str, realm: str, integrity_key: bytes,
                 expires: float):
        self.key = key
        self.username = username
        self.realm = realm
        self.integrity_key = integrity_key
        self.expires = expires
        self.permissions: dict[str, float] = {}
        self.channels: dict[int, tuple[str, int]] = {}
        self.channel_expiry: dict[int, float] = {}
        self.peer_channels: dict[tuple[str, int], int] = {}
        self.relay: Any = None
        self.relay_address: tuple[str, int] | None = None
        self.sink: Any = None
        self.peer_send: Any = None
        self.relay_fd = -1
        self.allocate_tid = b""
        self.allocate_response = b""
        self.budget = float("inf")
        self.logged: set | None = None

    def refresh(self, lifetime: float, now: float) -> None:
        self.expires = now + lifetime

    def add_permission(self, host: str, now: float) -> bool:
        """Install or refresh the permission for ``host``; True when it is new."""
        new = host not in self.permissions
        self.permissions[host] = now + PERMISSION_LIFETIME
        return new

    def bind_check(self, number: int, peer: tuple[str, int]) -> str | None:
        """Why this binding is not allowed (RFC 8656 section 11.2), or None."""
        if not stun.CHANNEL_MIN <= number <= stun.CHANNEL_MAX:
            return "channel number out of range"
        bound = self.channels.get(number)
        if bound is not None and bound != peer:
            return "channel bound to another peer"
        other = self.peer_channels.get(peer)
        if other is not None and other != number:
            return "peer bound to another channel"
        return None

    def bind_channel(self, number: int, peer: tuple[str, int], now: float) -> bool:
        """Bind or refresh (after :meth:`bind_check`); True when the channel is new."""
        new = number not in self.channels
        self.channels[number] = peer
        self.peer_channels[peer] = number
        self.channel_expiry[number] = now + CHANNEL_LIFETIME
        return new

    def expire(self, now: float) -> tuple[int, int]:
        """Drop expired permissions and channels; return how many of each."""
        gone_permissions = [h for h, t in self.permissions.items() if t <= now]
        for host in gone_permissions:
            del self.permissions[host]
        gone_channels = [n for n, t in self.channel_expiry.items() if t <= now]
        for number in gone_channels:
            del self.channel_expiry[number]
            peer = self.channels.pop(number)
            self.peer_channels.pop(peer, None)
        return len(gone_permissions), len(gone_channels)


def quota_name(username: str) -> str:
    """Whom a user name's allocations count against: the user of REST API credentials
    (every credential handed to one participant), else the name itself."""
    return rest_user(username) or username


class AllocationTable:
    """Every allocation of a server, by 5-tuple key and by user, with quotas.

    ``max_allocations`` and ``user_quota`` of 0 mean unlimited. ``per_user`` counts by
    :func:`quota_name`, so fresh REST credentials of one participant share its quota.
    """

    def __init__(self, stats: TurnStats, max_allocations: int = 0, user_quota: int = 0):
        self.stats = stats
        self.max_allocations = max_allocations
        self.user_quota = user_quota
        self.by_key: dict[Hashable, Allocation] = {}
        self.per_user: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.by_key)

    def get(self, key: Hashable) -> Allocation | None:
        return self.by_key.get(key)

    def quota_refusal(self, username: str) -> str | None:
        """Why a new allocation for ``username`` would exceed a quota (486), or None."""
        if self.max_allocations and len(self.by_key) >= self.max_allocations:
            return "total allocation cap reached"
        if self.user_quota and self.per_user.get(quota_name(username), 0) >= self.user_quota:
            return "user allocation quota reached"
        return None

    def add(self, allocation: Allocation) -> None:
        assert allocation.key not in self.by_key
        self.by_key[allocation.key] = allocation
        user = quota_name(allocation.username)
        self.per_user[user] = self.per_user.get(user, 0) + 1
        self.stats.allocations_active += 1
        self.stats.allocations_total += 1

    def remove(self, allocation: Allocation) -> bool:
        """Forget ``allocation`` and its permissions and channels; False if already gone."""
        if self.by_key.get(allocation.key) is not allocation:
            return False
        del self.by_key[allocation.key]
        user = quota_name(allocation.username)
        left = self.per_user[user] - 1
        if left:
            self.per_user[user] = left
        else:
            del self.per_user[user]
        stats = self.stats
        stats.allocations_active -= 1
        stats.permissions_active -= len(allocation.permissions)
        stats.channels_active -= len(allocation.channels)
        allocation.permissions.clear()
        allocation.channels.clear()
        allocation.channel_expiry.clear()
        allocation.peer_channels.clear()
        return True

    def add_permission(self, allocation: Allocation, host: str, now: float) -> None:
        if allocation.add_permission(host, now):
            self.stats.permissions_active += 1

    def bind_channel(self, allocation: Allocation, number: int, peer: tuple[str, int],
                     now: float) -> None:
        """Bind (or refresh) a channel; also installs or refreshes the peer's permission."""
        if allocation.bind_channel(number, peer, now):
            self.stats.channels_active += 1
        self.add_permission(allocation, peer[0], now)

    def expire(self, now: float) -> list[Allocation]:
        """Expire permissions and channels; remove and return the expired allocations."""
        stats = self.stats
        gone = []
        for allocation in list(self.by_key.values()):
            if allocation.expires <= now:
                self.remove(allocation)
                gone.append(allocation)
                continue
            if allocation.permissions or allocation.channels:
                permissions, channels = allocation.expire(now)
                stats.permissions_active -= permissions
                stats.channels_active -= channels
        return gone
