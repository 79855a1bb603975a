"""Expired and tampered ID tokens refused end to end: headless Chromium signs in through a
real OpenID provider (Node ``oidc-provider``) whose token endpoint, by its test options,
answers too late for a short-lived ID token or alters the ID token; a real locator
(``CT_SSO_CLOCK_SKEW=0``) must show a clear refusal, set no session cookie, and audit it.
A control run with the same settings and an untouched token signs in, so the refusals
come from the token and nothing else.

Screenshots go to ``test-artifacts/dashboard/``.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial import unittest

from tests.dashboard.browser import Browser, missing, run
from tests.deployment.util import Deployment
from tests.edge.util import wait_for
from tests.sso.provider import Provider, sign_in


class IdTokenRefusedTests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def sign_in_with(self, shot: str, login: str = "ada@example.com", **provider_options):
        """Start a provider with ``provider_options`` and a locator signing in through
        it; ``login`` signs in; fires with (user shown on the dashboard, error, cookie)."""
        reason = missing()
        if reason:
            raise unittest.SkipTest(reason)
        provider = Provider(self, **provider_options)
        yield provider.start()
        self.d = Deployment(self, locator_env=provider.locator_env(CT_SSO_CLOCK_SKEW="0"))
        self.d.start_locator()
        base = self.d.locator_url
        b = yield run(Browser, self)

        def through_provider():
            sign_in(b, base, login)
            # The refusal, or the dashboard the signed-in page continues to.
            b.wait(lambda: b.driver.find_elements("css selector", "#login-error, #who"),
                   what="the refusal or the dashboard")
            b.screenshot(shot)
            errors = b.driver.find_elements("css selector", "#login-error")
            who = b.driver.find_elements("css selector", "#who")
            return (who[0].text if who else None, errors[0].text if errors else None,
                    b.driver.get_cookie("ct_dashboard"))

        result = yield run(through_provider)
        return result

    def failed_logins(self):
        return self.d.audit_rows("SELECT user_name, details FROM audit_entries WHERE kind = "
                                 "'dashboard_login_failed'")

    @defer.inlineCallbacks
    def refused(self, shot: str, login: str = "ada@example.com", **provider_options) -> str:
        """The sign-in is refused: the log-in page says why, no session cookie, one
        audit entry with the reason; returns the error text."""
        _, error, cookie = yield self.sign_in_with(shot, login, **provider_options)
        self.assertIsNotNone(error, "no refusal shown")
        self.assertIn("Sign-in refused: the ID token is not valid", error)
        self.assertFalse(cookie and cookie.get("value"), cookie)
        yield wait_for(lambda: self.failed_logins(), timeout=10)
        rows = self.failed_logins()
        self.assertEqual(len(rows), 1, rows)
        self.assertIn("the ID token is not valid", rows[0][1])
        self.assertIn('"method":"sso"', rows[0][1])
        logins = self.d.audit_rows("SELECT user_name FROM audit_entries WHERE kind = "
                                   "'dashboard_login'")
        self.assertEqual(logins, [])
        return error

    @defer.inlineCallbacks
    def test_an_untouched_token_signs_in(self):
        """The control: the same provider and settings, nothing altered or delayed."""
        who, error, cookie = yield self.sign_in_with("idtoken-00-control")
        self.assertIsNone(error)
        self.assertEqual(who, "ada@example.com")
        self.assertTrue(cookie and cookie.get("value"))

    @defer.inlineCallbacks
    def test_an_expired_id_token_is_refused(self):
        # Valid for 1 s, handed over 2.5 s after it was minted, no clock skew allowed.
        error = yield self.refused("idtoken-01-expired", id_token_ttl=1, token_delay=2.5)
        self.assertIn("expired_token: it has expired", error)

    @defer.inlineCallbacks
    def test_a_token_with_a_broken_signature_is_refused(self):
        error = yield self.refused("idtoken-02-bad-signature", tamper="signature")
        self.assertIn("bad_signature", error)

    @defer.inlineCallbacks
    def test_a_token_with_altered_claims_is_refused(self):
        # Bob (a team viewer) rewritten into the admin group: the signature no longer
        # matches.
        error = yield self.refused("idtoken-03-altered-claims", "bob@example.com",
                                   tamper="claims")
        self.assertIn("bad_signature", error)

    @defer.inlineCallbacks
    def test_an_unsigned_token_is_refused(self):
        error = yield self.refused("idtoken-04-alg-none", tamper="none")
        self.assertIn("is not valid", error)
