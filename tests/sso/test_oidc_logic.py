"""The pure parts of ct.common.oidc: roles from claims, allowed domains, PKCE, the
authorization request."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

from twisted.trial import unittest

from ct.common.oidc import (
    SignInRefused,
    SsoConfig,
    authorization_url,
    identity_from_claims,
    pkce_pair,
)

CONFIG = SsoConfig(issuer="https://id.example.com", client_id="ct",
                   allowed_domains=("example.com",))


class ClaimsTests(unittest.TestCase):
    def test_admin_group_makes_an_admin(self):
        who = identity_from_claims({"sub": "1", "email": "a@example.com",
                                    "groups": ["x", "ct-admin", "ct-team:red"]}, CONFIG)
        self.assertEqual((who.name, who.role, who.teams), ("a@example.com", "admin", ()))

    def test_team_groups_make_a_team_viewer_of_those_teams(self):
        who = identity_from_claims({"sub": "1", "email": "b@EXAMPLE.com",
                                    "groups": ["ct-team:red", "ct-team:blue", "ct-team:",
                                               "other"]}, CONFIG)
        self.assertEqual((who.role, who.teams), ("team-viewer", ("blue", "red")))

    def test_a_single_string_claim_and_another_claim_name(self):
        config = SsoConfig(issuer="https://i", client_id="c", groups_claim="roles",
                           admin_group="CT.Admin")
        who = identity_from_claims({"sub": "9", "roles": "CT.Admin"}, config)
        self.assertEqual((who.name, who.role), ("9", "admin"))  # no e-mail: the subject

    def test_no_role_is_refused(self):
        with self.assertRaises(SignInRefused) as caught:
            identity_from_claims({"sub": "1", "email": "c@example.com", "groups": ["staff"]},
                                 CONFIG)
        self.assertIn("no role", str(caught.exception))

    def test_domains(self):
        for claims in ({"sub": "1", "email": "e@example.org", "groups": ["ct-admin"]},
                       {"sub": "1", "email": "e@sub.example.com", "groups": ["ct-admin"]},
                       {"sub": "1", "groups": ["ct-admin"]},
                       {"sub": "1", "email": "e@example.com", "email_verified": False,
                        "groups": ["ct-admin"]}):
            with self.assertRaises(SignInRefused):
                identity_from_claims(claims, CONFIG)


class RequestTests(unittest.TestCase):
    def test_pkce_s256(self):
        verifier, challenge = pkce_pair()
        self.assertGreaterEqual(len(verifier), 43)
        expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        self.assertEqual(challenge, expected.rstrip(b"=").decode())
        self.assertNotEqual(pkce_pair()[0], verifier)

    def test_authorization_url(self):
        url = authorization_url("https://id.example.com/auth?tenant=x", CONFIG,
                                "https://ct.example.com/dashboard/sso/callback", "st", "no",
                                "ch")
        query = parse_qs(urlsplit(url).query)
        self.assertEqual(query["tenant"], ["x"])
        self.assertEqual(query["response_type"], ["code"])
        self.assertEqual(query["scope"], ["openid email profile"])
        self.assertEqual((query["state"], query["nonce"]), (["st"], ["no"]))
        self.assertEqual((query["code_challenge"], query["code_challenge_method"]),
                         (["ch"], ["S256"]))
