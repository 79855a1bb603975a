"""IP addresses, CIDR lists and the client's address behind trusted reverse proxies (pure).

* :func:`parse_ip`: an address from ``1.2.3.4``, ``1.2.3.4:5678``, ``[2001:db8::1]:443``.
* :func:`parse_networks`: a CIDR list, checked; :func:`in_networks` tests membership.
* :func:`client_ip`: ``X-Forwarded-For`` honoured only from trusted proxies.
* :func:`request_client_ip`: the same for a ``twisted.web`` request.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressError(ValueError):
    """A CIDR list entry that is not a network; the message names it."""


def parse_ip(text: str | IPAddress) -> IPAddress | None:
    """An address from text such as ``1.2.3.4``, ``1.2.3.4:5678``, ``[2001:db8::1]:443``;
    IPv4-mapped IPv6 addresses become IPv4. None when it is not an address."""
    if isinstance(text, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        address = text
    else:
        value = text.strip()
        if value.startswith("["):
            value = value[1:].split("]", 1)[0]
        elif value.count(":") == 1:  # IPv4 with a port
            value = value.split(":", 1)[0]
        value = value.split("%", 1)[0]  # zone index
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_networks(items: Iterable[str | IPNetwork], what: str = "network") -> tuple[IPNetwork, ...]:
    """CIDR strings (host bits allowed and cleared; a bare address is a /32 or /128)."""
    out = []
    for item in items:
        if isinstance(item, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            out.append(item)
            continue
        if not isinstance(item, str):
            raise AddressError(f"{what}: expected a CIDR string such as 10.0.0.0/8, got {item!r}")
        try:
            out.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise AddressError(f"{what}: not a CIDR such as 10.0.0.0/8 or 2001:db8::/32: "
                               f"{item!r}") from None
    return tuple(out)


def in_networks(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


def client_ip(peer_ip: str, x_forwarded_for: str | Sequence[str] | None,
              trusted_proxies: Sequence[str | IPNetwork]) -> str:
    """The client's address: ``X-Forwarded-For`` is honoured only from trusted proxies.

    Starting from the TCP peer, walk the header from the right while each hop is a
    trusted proxy; the first untrusted address is the client. A malformed entry stops
    the walk at the last trusted hop (nothing left of it can be believed). Several
    header lines may be given as a list, in the order received.
    """
    trusted = parse_networks(trusted_proxies, "trusted proxy")
    current = parse_ip(peer_ip)
    if current is None:
        return peer_ip
    if not trusted or not in_networks(current, trusted) or not x_forwarded_for:
        return str(current)
    lines = [x_forwarded_for] if isinstance(x_forwarded_for, str) else list(x_forwarded_for)
    hops = [hop.strip() for line in lines for hop in line.split(",")]
    for hop in reversed(hops):
        if not hop:
            continue
        address = parse_ip(hop)
        if address is None:
            return str(current)
        current = address
        if not in_networks(address, trusted):
            return str(address)
    return str(current)


def request_client_ip(request, trusted_proxies: Sequence[str | IPNetwork]) -> str:
    """The client's address of a ``twisted.web`` request (every ``X-Forwarded-For`` line)."""
    host = getattr(request.getClientAddress(), "host", "") or ""
    forwarded = [h.decode("latin-1") for h in
                 request.requestHeaders.getRawHeaders(b"x-forwarded-for", [])]
    return client_ip(host, forwarded or None, trusted_proxies)
