"""Guests' sign-in on the edge object (pure: a Clock and fake connections):
``CT_GUEST_AUTH=sso`` and a host's ``guestSignIn`` make ``join`` need a valid host token;
the name shown is the identity's; ``resume`` needs none."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial import unittest

from ct.common import hosttoken
from ct.common.hosttoken import HostIdentity, HostTokenConfig
from ct.edge.server import Edge, EdgeConfig
from ct.protocol import errors
from ct.protocol.errors import ProtocolError
from tests.edge.test_relay import FakeConnection

SECRET = "guest-sign-in-secret-0123456789abcdef"
NOW = 1_700_000_000
WHO = HostIdentity("cy@example.com", "Cy Blue", "cy@example.com")


class GuestSignInTests(unittest.TestCase):
    def edge(self, guest_auth=False, secret=SECRET):
        clock = Clock()
        clock.advance(NOW)
        tokens = HostTokenConfig(secret) if secret else None
        return Edge(clock, EdgeConfig(guest_tokens=tokens, guest_auth=guest_auth))

    def host(self, edge, **extra):
        conn = FakeConnection()
        p = edge.relay.host(conn, {"type": "host", "name": "alice", **extra})
        return p

    def join(self, edge, host, token=None, name="mallory"):
        message = {"type": "join", "session": host.session.id,
                   "token": host.session.join_token, "name": name}
        if token is not None:
            message["hostToken"] = token
        return edge.relay.join(FakeConnection(), message)

    def refused(self, edge, host, token=None) -> str:
        with self.assertRaises(ProtocolError) as caught:
            self.join(edge, host, token)
        self.assertEqual(caught.exception.code, errors.SIGN_IN_REQUIRED)
        self.assertEqual(caught.exception.code.close_code, 4018)
        return caught.exception.message

    def test_open_edge_open_session_lets_guests_in_with_the_link(self):
        edge = self.edge()
        host = self.host(edge)
        self.assertEqual(self.join(edge, host).name, "mallory")

    def test_policy_needs_a_valid_token_and_shows_the_identity(self):
        edge = self.edge(guest_auth=True)
        host = self.host(edge)
        self.assertIn("sign in", self.refused(edge, host))
        good = hosttoken.issue(WHO, HostTokenConfig(SECRET), NOW)
        expired = hosttoken.issue(WHO, HostTokenConfig(SECRET, lifetime=30), NOW - 600)
        other = hosttoken.issue(WHO, HostTokenConfig(SECRET, audience="other"), NOW)
        forged = hosttoken.issue(WHO, HostTokenConfig("f" * 40), NOW)
        self.assertIn("expired", self.refused(edge, host, expired))
        self.assertIn("not valid", self.refused(edge, host, other))
        self.assertIn("not valid", self.refused(edge, host, forged))
        self.assertIn("not valid", self.refused(edge, host, good[:-3] + "abc"))
        guest = self.join(edge, host, good)
        self.assertEqual(guest.name, "Cy Blue")  # not "mallory"
        # Resuming needs only the resume token, even after the sign-in token expired.
        edge.clock.advance(3600)
        conn = FakeConnection()
        edge.relay.resume(conn, {"type": "resume", "session": host.session.id,
                                 "participant": guest.id, "token": guest.token, "lastSeq": 0})
        self.assertEqual(conn.controls[0]["type"], "resumed")

    def test_host_asks_guests_to_sign_in_on_an_open_edge(self):
        edge = self.edge()
        strict = self.host(edge, guestSignIn=True)
        relaxed = self.host(edge, guestSignIn=False)
        self.assertIn("sign in", self.refused(edge, strict))
        self.assertEqual(self.join(edge, relaxed).name, "mallory")
        token = hosttoken.issue(WHO, HostTokenConfig(SECRET), NOW)
        self.assertEqual(self.join(edge, strict, token).name, "Cy Blue")

    def test_wrong_join_token_is_forbidden_before_sign_in_is_asked(self):
        edge = self.edge(guest_auth=True)
        host = self.host(edge)
        with self.assertRaises(ProtocolError) as caught:
            edge.relay.join(FakeConnection(), {"type": "join", "session": host.session.id,
                                               "token": "wrong", "name": "x"})
        self.assertEqual(caught.exception.code, errors.FORBIDDEN)

    def test_host_cannot_ask_for_sign_in_where_the_edge_cannot_check_it(self):
        edge = self.edge(secret=None)
        with self.assertRaises(ProtocolError) as caught:
            self.host(edge, guestSignIn=True)
        self.assertEqual(caught.exception.code, errors.SIGN_IN_REQUIRED)
        self.assertIn("CT_HOST_TOKEN_SECRET", caught.exception.message)
        with self.assertRaises(ProtocolError) as caught:
            self.host(edge, guestSignIn="yes")
        self.assertEqual(caught.exception.code, errors.BAD_MESSAGE)


class SettingsAndPageTests(unittest.TestCase):
    """The edge's settings for guests' sign-in, and the sign-in address the page gets."""

    def values(self, **overrides):
        from ct.edge.tap import SETTINGS

        values = {s.key: s.default for s in SETTINGS}
        values.update(overrides)
        return values

    def test_guest_auth_needs_the_token_secret(self):
        from twisted.python import usage

        from ct.edge.tap import edge_config

        with self.assertRaises(usage.UsageError) as caught:
            edge_config(self.values(guest_auth="sso"))
        self.assertIn("CT_GUEST_AUTH=sso needs CT_HOST_TOKEN_SECRET", str(caught.exception))
        config = edge_config(self.values(guest_auth="sso", host_token_secret=SECRET))
        self.assertTrue(config.guest_auth)
        self.assertIsNone(config.host_tokens)  # hosting stays open
        self.assertEqual(config.guest_tokens.secret, SECRET)
        config = edge_config(self.values(host_token_secret=SECRET))
        self.assertFalse(config.guest_auth)  # open, but a host may ask (guestSignIn)
        self.assertIsNotNone(config.guest_tokens)

    def test_sign_in_address(self):
        from types import SimpleNamespace

        from ct.edge.tap import guest_sign_in_address

        sso = SimpleNamespace(sso=object(), host_tokens=object())
        none = SimpleNamespace(sso=None, host_tokens=None)
        cases = [
            ({"guest_sign_in_url": "https://sso.example.com/ct/"}, none,
             "https://sso.example.com/ct/dashboard/sso/host"),
            ({"locator": "wss://loc.example.com,https://loc2.example.com"}, none,
             "https://loc.example.com/dashboard/sso/host"),
            ({}, sso, "../dashboard/sso/host"),
            ({}, none, None),
        ]
        for overrides, server, expected in cases:
            values = {"guest_sign_in_url": None, "locator": None, **overrides}
            self.assertEqual(guest_sign_in_address(values, server), expected, overrides)

    def test_the_shell_carries_the_address_escaped(self):
        from ct.webclient import pages
        from ct.webclient.assets import Assets

        body = pages.shell(Assets(), "n0nce", 'https://x.example/"><script>').body.decode()
        self.assertIn('<meta name="ct-sign-in" content="https://x.example/&quot;&gt;&lt;script&gt;">',
                      body)
        self.assertNotIn("ct-sign-in", pages.shell(Assets(), "n0nce").body.decode())
