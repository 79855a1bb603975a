"""Counters of the TURN relay, read by the metrics exporters (no Prometheus here)."""

from __future__ import annotations


class TurnStats:
    """Plain counters; gauges are kept current by the server, totals only grow.

    Directions: ``to_peer`` is client -> relay -> peer, ``to_client`` peer -> relay -> client.
    """

    __slots__ = (
        "allocations_active", "allocations_total", "permissions_active", "channels_active",
        "bytes_to_peer", "packets_to_peer", "bytes_to_client", "packets_to_client",
        "auth_failures", "binding_requests", "dropped_packets", "refusals",
    )

    def __init__(self):
        for name in self.__slots__:
            setattr(self, name, 0)
        self.refusals: dict[str, int] = {}

    def refused(self, reason: str) -> None:
        self.refusals[reason] = self.refusals.get(reason, 0) + 1

    def snapshot(self) -> dict:
        """All counters as a dict (``refusals`` copied)."""
        out = {name: getattr(self, name) for name in self.__slots__}
        out["refusals"] = dict(self.refusals)
        return out
