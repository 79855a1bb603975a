"""Which peers a TURN allocation may reach.

By default the relay refuses peers in loopback, private, shared (CGNAT), link-local
(including cloud metadata at 169.254.169.254), multicast, reserved and unspecified
ranges, for IPv4 and IPv6; an allow-list of CIDRs re-opens chosen networks.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable

DEFAULT_DENIED = (
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared address space"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("fc00::/7", "private"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
)

_CACHE_LIMIT = 4096


class PeerPolicy:
    """Refuses peers in ``denied`` networks unless they fall in ``allowed`` ones."""

    def __init__(self, allowed: Iterable[str] = (),
                 denied: Iterable[tuple[str, str]] = DEFAULT_DENIED):
        self.allowed = [ipaddress.ip_network(c, strict=False) for c in allowed]
        self.denied = [(ipaddress.ip_network(c), why) for c, why in denied]
        self._cache: dict[str, str | None] = {}

    def refusal(self, host: str) -> str | None:
        """Why ``host`` may not be a peer (a category such as ``"loopback peer"``), or None."""
        cached = self._cache.get(host, False)
        if cached is not False:
            return cached
        reason = self._judge(host)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[host] = reason
        return reason

    def _judge(self, host: str) -> str | None:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return "not an IP address"
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        for network in self.allowed:
            if address.version == network.version and address in network:
                return None
        for network, why in self.denied:
            if address.version == network.version and address in network:
                return f"{why} peer"
        return None


def parse_cidrs(items: Iterable[str]) -> list[str]:
    """Validate CIDRs (``10.0.0.0/8``, a bare address means one host); ValueError if bad."""
    return [str(ipaddress.ip_network(item.strip(), strict=False)) for item in items if item.strip()]
