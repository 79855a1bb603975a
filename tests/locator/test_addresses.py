"""``ct.common.addresses``: CIDR lists and the client's address of a web request."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.trial import unittest
from twisted.web.test.requesthelper import DummyRequest

from ct.common.addresses import AddressError, parse_networks, request_client_ip


class AddressTests(unittest.SynchronousTestCase):
    def request(self, peer, *forwarded):
        request = DummyRequest([b""])
        request.client = IPv4Address("TCP", peer, 4321)
        for line in forwarded:
            request.requestHeaders.addRawHeader(b"x-forwarded-for", line)
        return request

    def test_every_forwarded_line_of_a_trusted_proxy_counts(self):
        request = self.request("10.0.0.1", b"6.6.6.6", b"198.51.100.7, 10.9.9.9")
        self.assertEqual(request_client_ip(request, ["10.0.0.0/8"]), "198.51.100.7")
        self.assertEqual(request_client_ip(request, []), "10.0.0.1")

    def test_an_untrusted_peer_is_the_client(self):
        request = self.request("203.0.113.5", b"198.51.100.7")
        self.assertEqual(request_client_ip(request, ["10.0.0.0/8"]), "203.0.113.5")

    def test_bad_cidrs_are_named(self):
        self.assertEqual([str(n) for n in parse_networks(["10.1.2.3/8", " fd00::1 "])],
                         ["10.0.0.0/8", "fd00::1/128"])
        for item in ["10.0.0.0/33", "nonsense", 5]:
            with self.subTest(item=item):
                with self.assertRaises(AddressError) as caught:
                    parse_networks([item], "trusted proxy")
                self.assertIn("trusted proxy", str(caught.exception))
