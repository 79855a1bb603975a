"""Regions: CIDR table, MaxMind lookups (on a tiny database written here), client_ip."""

from __future__ import annotations

import ipaddress
import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from ct.common.addresses import client_ip
from ct.locator.regions import (
    GeoLookup,
    RegionError,
    RegionTable,
    open_maxmind,
    resolver_from_config,
)

# ------------------------------------------------------------------ a tiny .mmdb writer
# Enough of the MaxMind DB format (v2.0) for tests: an IPv6 tree with 32-bit records,
# IPv4 networks under ::/96, maps/strings/unsigned integers/arrays in the data section.


def _control(type_number: int, size: int) -> bytes:
    assert size < 29
    if type_number <= 7:
        return bytes([(type_number << 5) | size])
    return bytes([size, type_number - 7])


class U32(int):
    """An unsigned integer stored as uint32 whatever its size (metadata wants exact types)."""


class U64(int):
    pass


def _encode(value) -> bytes:
    if isinstance(value, (U32, U64)):
        raw = int(value).to_bytes((int(value).bit_length() + 7) // 8, "big") if value else b""
        return _control(6 if isinstance(value, U32) else 9, len(raw)) + raw
    if isinstance(value, str):
        raw = value.encode()
        return _control(2, len(raw)) + raw
    if isinstance(value, bool):
        return _control(14, int(value))
    if isinstance(value, int):
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
        if value < 1 << 16:
            return _control(5, len(raw)) + raw
        if value < 1 << 32:
            return _control(6, len(raw)) + raw
        return _control(9, len(raw)) + raw
    if isinstance(value, dict):
        return _control(7, len(value)) + b"".join(_encode(k) + _encode(v)
                                                  for k, v in value.items())
    if isinstance(value, list):
        return _control(11, len(value)) + b"".join(_encode(v) for v in value)
    raise TypeError(value)


def write_mmdb(path: str, records: dict[str, dict]) -> None:
    """``records`` maps non-overlapping CIDRs (IPv4 or IPv6) to data maps."""
    data = b""
    leaves = []
    for cidr, record in records.items():
        net = ipaddress.ip_network(cidr)
        if net.version == 4:
            bits, length = int(net.network_address), 96 + net.prefixlen
        else:
            bits, length = int(net.network_address), net.prefixlen
        leaves.append((bits, length, len(data)))
        data += _encode(record)
    nodes: list[list] = [[None, None]]  # child: ("node", i) | ("data", offset) | None
    for bits, length, offset in leaves:
        node = 0
        for depth in range(length):
            bit = (bits >> (127 - depth)) & 1
            if depth == length - 1:
                nodes[node][bit] = ("data", offset)
                break
            child = nodes[node][bit]
            if child is None:
                nodes.append([None, None])
                child = nodes[node][bit] = ("node", len(nodes) - 1)
            node = child[1]
    count = len(nodes)

    def record(child) -> int:
        if child is None:
            return count
        kind, value = child
        return value if kind == "node" else count + 16 + value

    tree = b"".join(struct.pack(">II", record(a), record(b)) for a, b in nodes)
    metadata = {
        "node_count": U32(count), "record_size": 32, "ip_version": 6,
        "database_type": "CT-Test-Country", "languages": ["en"],
        "binary_format_major_version": 2, "binary_format_minor_version": 0,
        "build_epoch": U64(1700000000), "description": {"en": "test"},
    }
    with open(path, "wb") as f:
        f.write(tree + b"\x00" * 16 + data + b"\xab\xcd\xefMaxMind.com" + _encode(metadata))


def country(iso: str, continent: str) -> dict:
    return {"country": {"iso_code": iso, "names": {"en": iso}},
            "continent": {"code": continent}}


class MaxMindTests(unittest.SynchronousTestCase):
    def setUp(self):
        path = self.mktemp()
        write_mmdb(path, {
            "81.0.0.0/8": country("DE", "EU"),
            "82.1.0.0/16": country("FR", "EU"),
            "3.0.0.0/8": country("US", "NA"),
            "2a00::/12": country("NL", "EU"),
            "100.0.0.0/8": {"registered_country": {"iso_code": "JP"},
                            "continent": {"code": "AS"}},
        })
        self.reader = open_maxmind(path)
        self.addCleanup(self.reader.close)

    def test_reader_reads_the_test_database(self):
        self.assertEqual(self.reader.get("81.2.3.4")["country"]["iso_code"], "DE")
        self.assertIsNone(self.reader.get("9.9.9.9"))

    def test_codes_and_mapping(self):
        geo = GeoLookup(self.reader, countries={"fr": "paris", "JP": "apac"},
                        continents={"EU": "eu", "NA": "us"})
        self.assertEqual(geo.codes("81.2.3.4"), ("DE", "EU"))
        self.assertEqual(geo.lookup("81.2.3.4"), "eu")
        self.assertEqual(geo.lookup("82.1.200.1"), "paris")  # country beats continent
        self.assertEqual(geo.lookup("3.4.5.6"), "us")
        self.assertEqual(geo.lookup("2a01:db8::1"), "eu")
        self.assertEqual(geo.lookup("::ffff:3.4.5.6"), "us")
        self.assertEqual(geo.lookup("100.1.1.1"), "apac")  # registered country
        self.assertIsNone(geo.lookup("9.9.9.9"))
        self.assertIsNone(geo.lookup("not an ip"))

    def test_resolver_prefers_cidrs_then_geo_then_default(self):
        resolver = resolver_from_config(
            {"office": ["81.1.0.0/16"], "eu": {"continents": ["EU"]},
             "us": {"countries": ["us"]}},
            reader=self.reader, default="default")
        self.assertEqual(resolver.region_for("81.1.2.3"), "office")
        self.assertEqual(resolver.region_for("81.9.2.3"), "eu")
        self.assertEqual(resolver.region_for("3.3.3.3"), "us")
        self.assertEqual(resolver.region_for("9.9.9.9"), "default")


class RegionTableTests(unittest.SynchronousTestCase):
    def test_longest_prefix_wins(self):
        table = RegionTable({"corp": ["10.0.0.0/8", "2001:db8::/32"],
                             "lab": ["10.20.0.0/16"], "desk": ["10.20.30.40"],
                             "v6lab": ["2001:db8:1::/48"], "all": ["0.0.0.0/0"]})
        self.assertEqual(table.lookup("10.1.2.3"), "corp")
        self.assertEqual(table.lookup("10.20.1.1"), "lab")
        self.assertEqual(table.lookup("10.20.30.40"), "desk")
        self.assertEqual(table.lookup("::ffff:10.20.1.1"), "lab")
        self.assertEqual(table.lookup("8.8.8.8"), "all")
        self.assertEqual(table.lookup("2001:db8:1::5"), "v6lab")
        self.assertEqual(table.lookup("2001:db8:2::5"), "corp")
        self.assertIsNone(table.lookup("2002::1"))
        self.assertIsNone(table.lookup("bogus"))

    def test_errors_name_the_entry(self):
        e = self.assertRaises(RegionError, RegionTable, {"eu": ["10.0.0.0/33"]})
        self.assertIn("region 'eu'", str(e))
        e = self.assertRaises(RegionError, RegionTable, {"a": ["10.0.0.0/8"],
                                                         "b": ["10.1.2.3/8"]})
        self.assertIn("10.0.0.0/8 is listed in both region 'a' and region 'b'", str(e))
        self.assertRaises(RegionError, resolver_from_config, {"a": {"cidr": []}})
        self.assertRaises(RegionError, resolver_from_config, ["10.0.0.0/8"])
        self.assertRaises(RegionError, resolver_from_config,
                          {"a": {"countries": ["DE"]}, "b": {"countries": ["de"]}})

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)), max_size=20),
           st.integers(0, 2**32 - 1))
    def test_matches_brute_force(self, nets, probe):
        regions: dict[str, list] = {}
        seen = {}
        for i, (addr, length) in enumerate(nets):
            net = ipaddress.ip_network((addr, length), strict=False)
            if net in seen:
                continue
            seen[net] = f"r{i}"
            regions.setdefault(f"r{i}", []).append(str(net))
        table = RegionTable(regions)
        address = ipaddress.ip_address(probe)
        matches = [n for n in seen if address in n]
        expected = seen[max(matches, key=lambda n: n.prefixlen)] if matches else None
        self.assertEqual(table.lookup(str(address)), expected)


class ClientIPTests(unittest.SynchronousTestCase):
    trusted = ["10.0.0.0/8", "fd00::/8"]

    def test_untrusted_peer_header_ignored(self):
        self.assertEqual(client_ip("203.0.113.9", "1.2.3.4", self.trusted), "203.0.113.9")
        self.assertEqual(client_ip("10.0.0.1", "1.2.3.4", []), "10.0.0.1")

    def test_walks_from_the_right_skipping_trusted_hops(self):
        header = "6.6.6.6, 198.51.100.7, 10.1.1.1"
        self.assertEqual(client_ip("10.0.0.1", header, self.trusted), "198.51.100.7")
        # Several header lines, in order received.
        self.assertEqual(client_ip("10.0.0.1", ["6.6.6.6", "198.51.100.7, 10.9.9.9"],
                                   self.trusted), "198.51.100.7")

    def test_all_hops_trusted_gives_the_leftmost(self):
        self.assertEqual(client_ip("10.0.0.1", "10.5.5.5, 10.6.6.6", self.trusted), "10.5.5.5")

    def test_forms(self):
        self.assertEqual(client_ip("::ffff:10.0.0.1", "[2001:db8::7]:443", self.trusted),
                         "2001:db8::7")
        self.assertEqual(client_ip("fd00::1", "198.51.100.7:5555", self.trusted),
                         "198.51.100.7")
        self.assertEqual(client_ip("10.0.0.1", None, self.trusted), "10.0.0.1")
        self.assertEqual(client_ip("10.0.0.1", "", self.trusted), "10.0.0.1")

    def test_garbage_stops_at_the_last_trusted_hop(self):
        self.assertEqual(client_ip("10.0.0.1", "6.6.6.6, nonsense, 10.2.2.2", self.trusted),
                         "10.2.2.2")
        self.assertEqual(client_ip("10.0.0.1", "unknown", self.trusted), "10.0.0.1")


class LocatorSettingsTests(unittest.SynchronousTestCase):
    """The locator's rows through the shared option parser (command line > env > default)."""

    def parse(self, argv, environ):
        from ct.common.settings import make_options
        from ct.locator.settings import LOCATOR_SETTINGS

        options = make_options(LOCATOR_SETTINGS, "ctlocator")(environ=environ)
        options.parseOptions(argv)
        return {k: v for k, v in options.items() if k in
                {s.key for s in LOCATOR_SETTINGS}}

    def test_defaults(self):
        from ct.locator.settings import DEFAULT_DATA_DIR

        self.assertEqual(self.parse([], {}), {
            "locator_config": None, "data_dir": DEFAULT_DATA_DIR, "edge_secret": None,
            "trusted_proxies": (), "maxmind_db": None, "edge_dead_after": 15.0,
            "link_grace": 120.0, "audit_retention_days": 365.0,
            "metrics_retention_days": 90.0, "edge_link_timeout": 6.0,
            "edge_register_timeout": 5.0, "placement_rate": 1.0, "placement_burst": 30,
            "locator_relay_url": None})

    def test_values(self):
        values = self.parse(["--link-grace", "30"], {
            "CT_TRUSTED_PROXIES": "10.1.2.3/8; fd00::1", "CT_EDGE_SECRET": "x" * 16,
            "CT_EDGE_DEAD_AFTER": "45", "CT_LINK_GRACE": "5"})
        self.assertEqual(values["trusted_proxies"], ("10.0.0.0/8", "fd00::1/128"))
        self.assertEqual((values["edge_secret"], values["edge_dead_after"],
                          values["link_grace"]), ("x" * 16, 45.0, 30.0))
        self.assertEqual(client_ip("10.9.9.9", "198.51.100.1", values["trusted_proxies"]),
                         "198.51.100.1")

    def test_bad_values_name_the_setting(self):
        from twisted.python.usage import UsageError

        cases = [({"CT_TRUSTED_PROXIES": "10.0.0.0/8, office"}, "CT_TRUSTED_PROXIES"),
                 ({"CT_EDGE_SECRET": "short"}, "CT_EDGE_SECRET"),
                 ({"CT_EDGE_DEAD_AFTER": "0"}, "CT_EDGE_DEAD_AFTER"),
                 ({"CT_LOCATOR_CONFIG": "/nonexistent.json"}, "CT_LOCATOR_CONFIG"),
                 ({"CT_DATA_DIR": __file__}, "CT_DATA_DIR")]
        for environ, name in cases:
            e = self.assertRaises(UsageError, self.parse, [], environ)
            self.assertIn(name, str(e))
        e = self.assertRaises(UsageError, self.parse, [], {"CT_EDGE_SECRET": "short"})
        self.assertNotIn("short", str(e).split(":", 1)[0])
        self.assertIn("(hidden)", str(e))
