"""When OidcClient fetches the provider's JWKS again: for an unknown key id (at most every
``jwks_min_refresh`` s) and when the cached set is ``jwks_max_age`` old. A small JWKS
server on loopback; the client's clock is a Clock."""

from __future__ import annotations

import json

from joserfc.jwk import RSAKey
from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.trial import unittest
from twisted.web import resource, server

from ct.common.http import make_agent
from ct.common.oidc import OidcClient, SignInRefused, SsoConfig


class _Provider(resource.Resource):
    isLeaf = True

    def __init__(self):
        super().__init__()
        self.issuer = None
        self.keys = []
        self.jwks_fetches = 0

    def render_GET(self, request):
        request.setHeader(b"content-type", b"application/json")
        if request.path.endswith(b"/openid-configuration"):
            return json.dumps({"issuer": self.issuer, "jwks_uri": self.issuer + "/jwks",
                               "authorization_endpoint": self.issuer + "/auth",
                               "token_endpoint": self.issuer + "/token"}).encode()
        self.jwks_fetches += 1
        return json.dumps({"keys": [k.as_dict(private=False) for k in self.keys]}).encode()


def key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})


class JwksCacheTests(unittest.TestCase):
    def setUp(self):
        self.provider = _Provider()
        port = reactor.listenTCP(0, server.Site(self.provider), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.provider.issuer = f"http://127.0.0.1:{port.getHost().port}"
        self.clock = Clock()
        self.oidc = OidcClient(SsoConfig(issuer=self.provider.issuer, client_id="ct"),
                               make_agent(reactor), self.clock, jwks_min_refresh=10,
                               jwks_max_age=3600)

    @defer.inlineCallbacks
    def kids(self, kid=None):
        keys = yield self.oidc.keys(kid)
        return sorted(k.kid for k in keys.keys)

    @defer.inlineCallbacks
    def test_refetch_rules(self):
        self.provider.keys = [key("a")]
        self.assertEqual((yield self.kids()), ["a"])
        self.provider.keys = [key("b")]  # rotated at the provider
        self.assertEqual((yield self.kids("a")), ["a"])  # known: no fetch
        self.assertEqual((yield self.kids("b")), ["a"])  # unknown, but fetched just now
        self.clock.advance(10)
        self.assertEqual((yield self.kids("b")), ["b"])
        self.assertEqual(self.provider.jwks_fetches, 2)
        self.provider.keys = [key("c")]
        self.clock.advance(3599)
        self.assertEqual((yield self.kids()), ["b"])
        self.clock.advance(1)  # an hour old: fetched again, "b" no longer accepted
        self.assertEqual((yield self.kids()), ["c"])
        self.assertEqual(self.provider.jwks_fetches, 3)

    @defer.inlineCallbacks
    def test_a_discovery_document_for_another_issuer_is_refused(self):
        real = self.provider.issuer
        self.provider.issuer = "https://elsewhere.example"
        self.oidc.config = SsoConfig(issuer=real, client_id="ct")
        with self.assertRaises(SignInRefused) as caught:
            yield self.oidc.discovery()
        self.assertIn("not CT_SSO_ISSUER", str(caught.exception))
