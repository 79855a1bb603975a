"""Host tokens (pure) and the loopback addresses host sign-in may return to."""

from __future__ import annotations

from twisted.trial import unittest

from ct.common import hosttoken
from ct.common.hosttoken import HostIdentity, HostTokenConfig, HostTokenRefused
from ct.dashboard.pages.sso import loopback_redirect, page_redirect

SECRET = "s" * 40
NOW = 1_700_000_000
WHO = HostIdentity("sub-1", "Ada Admin", "ada@example.com")


class HostTokenTests(unittest.TestCase):
    def test_round_trip(self):
        config = HostTokenConfig(SECRET, "acme", 600)
        token = hosttoken.issue(WHO, config, NOW)
        self.assertEqual(hosttoken.verify(token, config, NOW + 599), WHO)
        self.assertNotEqual(token, hosttoken.issue(WHO, config, NOW))  # a fresh jti

    def test_refusals(self):
        config = HostTokenConfig(SECRET, "acme", 600, clock_skew=60)
        token = hosttoken.issue(WHO, config, NOW)
        cases = [
            (token, config, NOW + 661, "expired"),
            (token, config, NOW - 120, "not valid"),  # not yet valid (nbf, iat)
            (token, HostTokenConfig(SECRET, "other"), NOW, "not valid"),
            (token, HostTokenConfig("t" * 40, "acme"), NOW, "not valid"),
            (None, config, NOW, "sign in"),
            ("", config, NOW, "sign in"),
            ("x" * 5000, config, NOW, "too long"),
            ("not.a.token", config, NOW, "not valid"),
        ]
        for raw, cfg, now, why in cases:
            with self.assertRaises(HostTokenRefused) as caught:
                hosttoken.verify(raw, cfg, now)
            self.assertIn(why, str(caught.exception))
        self.assertNotIn(token, str(caught.exception))

    def test_none_algorithm_and_short_secret(self):
        import base64
        import json

        def part(obj):
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

        unsigned = part({"alg": "none"}) + "." + part(
            {"iss": hosttoken.ISSUER, "aud": "codetogether", "sub": "x", "name": "x",
             "iat": NOW, "exp": NOW + 60}) + "."
        with self.assertRaises(HostTokenRefused):
            hosttoken.verify(unsigned, HostTokenConfig(SECRET), NOW)
        with self.assertRaises(ValueError):
            HostTokenConfig("short")


class LoopbackTests(unittest.TestCase):
    def test_only_loopback_with_a_port(self):
        for ok in ("http://127.0.0.1:5000/callback", "http://[::1]:80/cb",
                   "http://localhost:1234/"):
            self.assertEqual(loopback_redirect(ok), ok)
        for bad in (None, "", "https://127.0.0.1:5000/", "http://127.0.0.1/cb",
                    "http://evil.example:5000/", "http://127.0.0.1.evil.example:80/",
                    "http://user:pw@127.0.0.1:80/", "http://127.0.0.1:80/#x",
                    "http://127.0.0.1:99999/", "javascript:alert(1)", "//127.0.0.1:80/"):
            self.assertIsNone(loopback_redirect(bad), bad)

    def test_pages_of_this_server(self):
        for ok in ("/", "/app/", "/app/?x=1"):
            self.assertEqual(page_redirect(ok), ok)
        for bad in (None, "", "//evil.example/", "/\\evil.example", "https://x/", "app/",
                    "/a#b", "/a\nb", "/" + "a" * 600):
            self.assertIsNone(page_redirect(bad), bad)
