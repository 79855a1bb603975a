"""Which peers a TURN allocation may reach.

By default the relay refuses peers in loopback, private, shared (CGNAT), link-local
(including cloud metadata at 169.254.169.254), multicast, reserved and unspecified
ranges, for IPv4 and IPv6; IPv6 forms that carry an IPv4 address (IPv4-mapped and
-compatible, NAT64, 6to4, Teredo); deprecated site-local IPv6; and the relay's own
addresses. An allow-list of CIDRs re-opens chosen networks, but an IPv4 address embedded
in an IPv6 peer is always judged as well: ``64:ff9b::a9fe:a9fe`` is the metadata address.
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
    ("::/96", "IPv4-compatible"),
    ("64:ff9b::/96", "NAT64"),
    ("64:ff9b:1::/48", "local-use NAT64"),
    ("2001::/32", "Teredo"),
    ("2002::/16", "6to4"),
    ("fc00::/7", "private"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
)

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4, Teredo)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _NAT64 or address in _IPV4_COMPATIBLE:
        return low32
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client's address (the server's is judged below)
    return None

_CACHE_LIMIT = 4096


class PeerPolicy:
    """Refuses peers in ``denied`` networks unless they fall in ``allowed`` ones."""

    def __init__(self, allowed: Iterable[str] = (),
                 denied: Iterable[tuple[str, str]] = DEFAULT_DENIED, own: Iterable[str] = ()):
        self.allowed = [ipaddress.ip_network(c, strict=False) for c in allowed]
        self.denied = [(ipaddress.ip_network(c), why) for c, why in denied]
        self.denied += [(ipaddress.ip_network(host), "relay's own address")
                        for host in own if host and host not in ("0.0.0.0", "::")]
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
        if address.version == 4:
            return self._judge_address(address)
        if address.ipv4_mapped is not None:
            return self._judge_address(address.ipv4_mapped)
        reason = self._judge_address(address)
        if reason is not None:
            return reason
        # Allowed, or not denied: the IPv4 address inside must pass too.
        inner = [embedded_ipv4(address)]
        if address.teredo is not None:
            inner.append(address.teredo[0])
        for v4 in inner:
            if v4 is not None:
                reason = self._judge_address(v4)
                if reason is not None:
                    return f"{reason} (embedded IPv4)"
        return None

    def _judge_address(self, address) -> str | None:
        for network in self.allowed:
            if address.version == network.version and address in network:
                return None
        for network, why in self.denied:
            if address.version == network.version and address in network:
                return f"{why} peer"
        return None
