"""Which region a client is in, from its IP address (pure logic, no sockets).

* :class:`RegionTable`: CIDR lists per region (the dashboard's regions editor), IPv4
  and IPv6; the longest matching prefix wins.
* :class:`GeoLookup`: optional MaxMind (GeoIP2/GeoLite2 Country or City) database,
  mapping the country or continent code of an address to a region.
* :class:`RegionResolver`: the table first, then GeoIP, then a default.

The regions configuration (stored under the ``regions`` config key) maps a region
name to a CIDR list, or to ``{"cidrs": [...], "countries": [...], "continents": [...]}``.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from ct.common.addresses import (
    AddressError,
    IPAddress,
    IPNetwork,
    parse_ip,
    parse_networks,
)

__all__ = ["RegionError", "RegionTable", "GeoLookup", "RegionResolver", "open_maxmind",
           "resolver_from_config"]


class RegionError(ValueError):
    """A regions configuration that cannot be used; the message names the entry."""


class RegionTable:
    """Longest-prefix match of an address against each region's CIDR list."""

    def __init__(self, regions: Mapping[str, Iterable[str | IPNetwork]]):
        # per IP version: prefix length -> {network address as int: region}
        self._by_length: dict[int, dict[int, dict[int, str]]] = {4: {}, 6: {}}
        for region, cidrs in regions.items():
            if not isinstance(region, str) or not region.strip():
                raise RegionError(f"region names must be non-empty strings, got {region!r}")
            try:
                networks = parse_networks(cidrs, f"region {region!r}")
            except AddressError as e:
                raise RegionError(str(e)) from None
            for network in networks:
                table = self._by_length[network.version].setdefault(network.prefixlen, {})
                key = int(network.network_address)
                other = table.get(key)
                if other is not None and other != region:
                    raise RegionError(f"{network} is listed in both region {other!r} "
                                      f"and region {region!r}")
                table[key] = region
        self._lengths = {v: sorted(t, reverse=True) for v, t in self._by_length.items()}

    def lookup(self, ip: str | IPAddress) -> str | None:
        address = parse_ip(ip)
        if address is None:
            return None
        bits = address.max_prefixlen
        value = int(address)
        tables = self._by_length[address.version]
        for length in self._lengths[address.version]:
            mask = ((1 << length) - 1) << (bits - length) if length else 0
            region = tables[length].get(value & mask)
            if region is not None:
                return region
        return None


class GeoLookup:
    """Region of an address from a MaxMind database's country/continent codes.

    ``reader`` is anything with ``get(ip) -> dict | None`` (``maxminddb.Reader``).
    A country mapping wins over a continent mapping.
    """

    def __init__(self, reader, countries: Mapping[str, str] | None = None,
                 continents: Mapping[str, str] | None = None):
        self._reader = reader
        self._countries = {k.upper(): v for k, v in (countries or {}).items()}
        self._continents = {k.upper(): v for k, v in (continents or {}).items()}

    def codes(self, ip: str | IPAddress) -> tuple[str | None, str | None]:
        """(country ISO code, continent code) of an address, when the database knows."""
        address = parse_ip(ip)
        if address is None:
            return None, None
        try:
            record = self._reader.get(str(address))
        except ValueError:  # e.g. an IPv6 address in an IPv4-only database
            return None, None
        if not isinstance(record, dict):
            return None, None
        country = _code(record.get("country"), "iso_code") or \
            _code(record.get("registered_country"), "iso_code")
        continent = _code(record.get("continent"), "code")
        return country, continent

    def lookup(self, ip: str | IPAddress) -> str | None:
        if not self._countries and not self._continents:
            return None
        country, continent = self.codes(ip)
        if country and country.upper() in self._countries:
            return self._countries[country.upper()]
        if continent and continent.upper() in self._continents:
            return self._continents[continent.upper()]
        return None


def _code(section: Any, name: str) -> str | None:
    if isinstance(section, dict):
        value = section.get(name)
        if isinstance(value, str):
            return value
    return None


def open_maxmind(path: str):
    """Open a ``.mmdb`` file (memory-mapped: lookups are quick enough for the reactor)."""
    import maxminddb

    return maxminddb.open_database(path)


class RegionResolver:
    """The region of a client address: CIDR table, then GeoIP, then ``default``."""

    def __init__(self, table: RegionTable, geo: GeoLookup | None = None,
                 default: str | None = None):
        self.table = table
        self.geo = geo
        self.default = default

    def region_for(self, ip: str | IPAddress) -> str | None:
        region = self.table.lookup(ip)
        if region is None and self.geo is not None:
            region = self.geo.lookup(ip)
        return region if region is not None else self.default


def resolver_from_config(value: Any, reader=None, default: str | None = None) -> RegionResolver:
    """Build a resolver from the stored ``regions`` configuration (see module doc)."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise RegionError("the regions configuration must be an object of region -> CIDRs")
    cidrs: dict[str, list] = {}
    countries: dict[str, str] = {}
    continents: dict[str, str] = {}
    for region, spec in value.items():
        if isinstance(spec, (list, tuple)):
            spec = {"cidrs": spec}
        if not isinstance(spec, Mapping):
            raise RegionError(f"region {region!r}: expected a CIDR list or an object")
        unknown = set(spec) - {"cidrs", "countries", "continents"}
        if unknown:
            raise RegionError(f"region {region!r}: unknown field(s) {', '.join(sorted(unknown))}")
        cidrs[region] = _list_field(spec, "cidrs", region)
        for field, target in (("countries", countries), ("continents", continents)):
            for code in _list_field(spec, field, region):
                if not isinstance(code, str) or not code.strip():
                    raise RegionError(f"region {region!r}: bad {field} code {code!r}")
                code = code.strip().upper()
                if code in target and target[code] != region:
                    raise RegionError(f"{field} code {code} is listed in both region "
                                      f"{target[code]!r} and region {region!r}")
                target[code] = region
    table = RegionTable(cidrs)
    geo = GeoLookup(reader, countries, continents) if reader is not None else None
    return RegionResolver(table, geo, default)


def _list_field(spec: Mapping[str, Any], field: str, region: str) -> list:
    value = spec.get(field, [])
    if not isinstance(value, (list, tuple)):
        raise RegionError(f"region {region!r}: {field} must be a list, got "
                          f"{type(value).__name__}")
    return list(value)
