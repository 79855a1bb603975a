"""ID tokens from a real OpenID provider (Node ``oidc-provider``) through
:class:`ct.common.oidc.OidcClient`: a good one signs in; tampered, expired, for another
client or with another nonce are refused; a used code is refused; a rotated signing key
is fetched again. The provider's sign-in pages are driven in headless Chromium."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs, urlsplit

from twisted.internet import defer, reactor
from twisted.trial import unittest

from ct.common.http import make_agent
from ct.common.oidc import OidcClient, SignInRefused, SsoConfig, verify_id_token
from tests.dashboard.browser import Browser, missing, run
from tests.sso.provider import CLIENT_ID, CLIENT_SECRET, Provider, pass_provider

REDIRECT = "http://127.0.0.1:9/cb"  # nothing listens: the browser stops there, code in hand


def _payload(raw: str) -> dict:
    part = raw.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _tamper(raw: str) -> str:
    """The same token with one claim changed (signature kept)."""
    head, _, sig = raw.split(".")
    claims = _payload(raw)
    claims["groups"] = ["ct-admin", "ct-team:everyone"]
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{body}.{sig}"


class IdTokenTests(unittest.TestCase):
    timeout = 180

    @defer.inlineCallbacks
    def setUp(self):
        reason = missing()
        if reason:
            raise unittest.SkipTest(reason)
        self.provider = Provider(self, redirect_uris=["http://127.0.0.1/cb"])
        yield self.provider.start()
        self.config = SsoConfig(issuer=self.provider.issuer, client_id=CLIENT_ID,
                                client_secret=CLIENT_SECRET,
                                scopes=("openid", "email", "profile", "groups"),
                                allowed_domains=("example.com",), clock_skew=60)
        self.agent = make_agent(reactor)
        self.oidc = OidcClient(self.config, self.agent, reactor, jwks_min_refresh=0)
        self.browser = yield run(Browser, self)

    @defer.inlineCallbacks
    def code_for(self, login: str):
        """Start a sign-in, pass the provider's pages as ``login``; ``(code, nonce, verifier)``."""
        url, state, nonce, verifier = yield self.oidc.start(REDIRECT)
        b = self.browser

        def through_provider():
            b.driver.get(url)
            pass_provider(b, login, lambda: b.driver.current_url.startswith(REDIRECT))
            return b.driver.current_url

        back = yield run(through_provider)
        query = parse_qs(urlsplit(back).query)
        self.assertEqual(query["state"], [state])
        return query["code"][0], nonce, verifier

    @defer.inlineCallbacks
    def test_tokens_checked_and_keys_rotated(self):
        code, nonce, verifier = yield self.code_for("bob@example.com")
        identity, raw = yield self.oidc.finish(code, REDIRECT, verifier, nonce)
        self.assertEqual((identity.name, identity.role, identity.teams),
                         ("bob@example.com", "team-viewer", ("red",)))

        # The code is used up.
        with self.assertRaises(SignInRefused):
            yield self.oidc.finish(code, REDIRECT, verifier, nonce)

        keys = yield self.oidc.keys()
        claims = _payload(raw)
        # Tampered: the signature no longer matches.
        with self.assertRaises(SignInRefused) as caught:
            verify_id_token(_tamper(raw), keys, self.config, nonce, claims["iat"])
        self.assertIn("bad_signature", str(caught.exception))
        # Expired: refused once past exp by more than the tolerated skew, not before.
        verify_id_token(raw, keys, self.config, nonce, claims["exp"] + 59)
        with self.assertRaises(SignInRefused) as caught:
            verify_id_token(raw, keys, self.config, nonce, claims["exp"] + 61)
        self.assertIn("expired", str(caught.exception))
        # Issued in the future beyond the skew (a clock far behind): refused.
        with self.assertRaises(SignInRefused):
            verify_id_token(raw, keys, self.config, nonce, claims["iat"] - 3600)
        # Another nonce (a replayed token), another client, another issuer.
        with self.assertRaises(SignInRefused):
            verify_id_token(raw, keys, self.config, "other-nonce", claims["iat"])
        other = SsoConfig(issuer=self.config.issuer, client_id="another-client")
        with self.assertRaises(SignInRefused) as caught:
            verify_id_token(raw, keys, other, nonce, claims["iat"])
        self.assertIn("another client", str(caught.exception))
        with self.assertRaises(SignInRefused):
            verify_id_token(raw, keys, SsoConfig(issuer="http://127.0.0.1:1",
                                                 client_id=CLIENT_ID), nonce, claims["iat"])

        # Key rotation: the provider restarts with a new signing key; the next token names
        # a key id the client does not hold, so it fetches the JWKS again.
        old_kids = {k.kid for k in keys.keys}
        yield self.provider.stop()
        yield self.provider.start()
        code, nonce, verifier = yield self.code_for("ada@example.com")
        identity, raw = yield self.oidc.finish(code, REDIRECT, verifier, nonce)
        self.assertEqual(identity.role, "admin")
        new_keys = yield self.oidc.keys()
        self.assertNotIn(_payload_kid(raw), old_kids)
        self.assertIn(_payload_kid(raw), {k.kid for k in new_keys.keys})

    @defer.inlineCallbacks
    def test_a_user_outside_the_allowed_domains_is_refused(self):
        code, nonce, verifier = yield self.code_for("eve@elsewhere.test")
        with self.assertRaises(SignInRefused) as caught:
            yield self.oidc.finish(code, REDIRECT, verifier, nonce)
        self.assertIn("not in an allowed domain", str(caught.exception))


def _payload_kid(raw: str) -> str:
    head = raw.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"]
