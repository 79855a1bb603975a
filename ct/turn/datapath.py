"""The client -> peer data rule every transport shares, and drops counted once.

ChannelData (UDP and TCP/TLS) and Send indications reach a peer through
:meth:`DataPath.channel_to_peer` and :meth:`DataPath.to_peer`: bound channel, permission,
bandwidth budget, send, count. Pure: sending is the allocation's ``peer_send`` (a relay
socket's ``sendto``).
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from ct.turn.allocation import Allocation
from ct.turn.metrics import TurnStats

_log = Logger()


def show_client(key: Any) -> str:
    """A client's key for the log: ``udp:host:port`` or the stream connection."""
    if isinstance(key, tuple):
        return f"udp:{key[0]}:{key[1]}"
    return str(key)


class DataPath:
    """Relays client data to peers and accounts for what it drops."""

    __slots__ = ("stats",)

    def __init__(self, stats: TurnStats):
        self.stats = stats

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
                      user=allocation.username, client=show_client(allocation.key),
                      reason=reason, detail=f" ({detail})" if detail else "")

    def channel_to_peer(self, allocation: Allocation | None, channel: int, payload: Any,
                        length: int) -> None:
        """ChannelData from a client: ``payload`` (``length`` bytes announced, fewer when
        truncated) to the peer bound to ``channel``."""
        if allocation is None:
            self.stats.dropped_packets += 1
            return
        peer = allocation.channels.get(channel)
        if peer is None:
            self.drop_once(allocation, "ChannelData on an unbound channel")
            return
        if len(payload) < length:
            self.drop_once(allocation, "truncated ChannelData")
            return
        self.to_peer(allocation, payload, peer)

    def to_peer(self, allocation: Allocation, payload: Any, peer: tuple[str, int]) -> None:
        """Send ``payload`` to ``peer`` if permitted and within the bandwidth budget."""
        if peer[0] not in allocation.permissions:
            self.drop_once(allocation, "no permission for peer", peer[0])
            return
        size = len(payload)
        allocation.budget -= size
        if allocation.budget < 0:
            self.drop_once(allocation, "bandwidth limit")
            return
        stats = self.stats
        try:
            allocation.peer_send(payload, peer)
        except OSError:  # a full socket buffer
            stats.dropped_packets += 1
        stats.packets_to_peer += 1
        stats.bytes_to_peer += size
