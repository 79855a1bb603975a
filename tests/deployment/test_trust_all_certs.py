"""``CT_TRUST_ALL_CERTS`` against a locator with a self-signed certificate (issue 15, item 7):
an edge that trusts it registers over ``wss://``; one that does not is refused, says why in
its log, and never registers."""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial import unittest

from tests.deployment.util import OPERATOR, Deployment, self_signed_https


class TrustAllCertsTests(unittest.TestCase):
    timeout = 90

    @defer.inlineCallbacks
    def test_self_signed_locator_needs_trust_all_certs(self):
        d = Deployment(self, locator_env=self_signed_https(self))
        d.start_locator()
        https = f"https://127.0.0.1:{d.locator.port('SSL')}"
        d.start_edge("trusting", CT_LOCATOR=https, CT_TRUST_ALL_CERTS="true")
        d.start_edge("careful", CT_LOCATOR=https)
        yield d.wait_online(["trusting"])
        # The careful edge tries, fails the certificate check and says so; it never registers.
        d.edges["careful"].wait_for_log(r"the locator's TLS certificate is not trusted "
                                        r"\(.*certificate verify failed.*\): install its CA on "
                                        r"this host, or set CT_TRUST_ALL_CERTS=true", timeout=30)
        answer = yield d.client().edges(OPERATOR)
        self.assertEqual({e["edge"] for e in answer["edges"]}, {"trusting"})
