"""Log-in hardening: throttling per address and user, the operator API's throttle and
audit, and Secure cookies behind a TLS-terminating proxy. Real HTTP on loopback."""

from __future__ import annotations

import base64
import re

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial import unittest

from ct.common.credentials import Credentials
from ct.dashboard.auth import LoginGuard, LoginThrottle
from tests.dashboard.util import DashboardClient
from tests.deployment.util import OPERATOR, Deployment
from tests.edge.util import sleep, start_edge

PASSWORD = "dashboard-test-password"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class GuardTests(unittest.TestCase):
    def test_finding_3_failure_reports_are_rate_limited(self):
        clock = Clock()
        recorded = []

        def record(user, ip, reason, unreported):
            recorded.append((user, ip, reason, unreported))
            return defer.succeed(None)

        guard = LoginGuard(Credentials("ctuser", "right"), clock, record, "operator API",
                           throttle=LoginThrottle(clock), rate=0.1, burst=3)
        with capturedLogs() as events:
            for _ in range(40):
                verdict = guard.check("10.0.0.1", "ctuser", "wrong")
                self.assertFalse(verdict.ok)
        warnings = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(recorded), 3)
        self.assertEqual(len(warnings), 3)
        self.assertEqual([r[2] for r in recorded],
                         ["wrong credentials", "wrong credentials", "wrong credentials"])
        clock.advance(10)  # one more report allowed, carrying the count of those not logged
        self.assertTrue(guard.check("10.0.0.1", "ctuser", "wrong").locked)
        self.assertEqual(recorded[-1], ("ctuser", "10.0.0.1", "locked", 37))
        clock.advance(10)
        self.assertTrue(guard.check("10.0.0.2", "ctuser", "right").ok)


class LoneEdgeLoginTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_finding_12_attacker_addresses_do_not_lock_out_the_admin(self):
        _, url = start_edge(self, CT_DASHBOARD_PASSWORD=PASSWORD)
        refusals = []
        for attacker in ("127.0.0.2", "127.0.0.4"):
            client = DashboardClient(url, source=attacker)
            codes = []
            for _ in range(6):
                page = yield client.login("ctuser", "guess", expect=None)
                codes.append(page.code)
            self.assertEqual(codes, [401] * 5 + [429], attacker)
            refusals.append(page)
        admin = DashboardClient(url, source="127.0.0.3")
        page = yield admin.login("ctuser", PASSWORD)
        self.assertEqual(page.location, "/dashboard")
        self.assertTrue(all(int(p.header("retry-after")) >= 1 for p in refusals))
        home = yield admin.get("/dashboard")
        self.assertEqual(home.code, 200)
        attacker = DashboardClient(url, source="127.0.0.2")  # still locked out
        yield attacker.login("ctuser", PASSWORD, expect=429)

    @defer.inlineCallbacks
    def test_finding_15_cookies_are_secure_when_server_url_is_https(self):
        _, url = start_edge(self, CT_DASHBOARD_PASSWORD=PASSWORD,
                            CT_SERVER_URL="https://ct.example.test")
        client = DashboardClient(url)
        yield client.login("ctuser", PASSWORD)
        cookies = {h.split("=", 1)[0]: h for h in client.set_cookie_headers}
        for name in ("ct_login", "ct_dashboard"):
            self.assertRegex(cookies[name], re.compile(r";\s*Secure", re.I), name)
        page = yield client.get("/dashboard")
        self.assertEqual(page.code, 200)

    @defer.inlineCallbacks
    def test_cookies_over_plain_http_without_https_url_are_not_secure(self):
        _, url = start_edge(self, CT_DASHBOARD_PASSWORD=PASSWORD)
        client = DashboardClient(url)
        yield client.login("ctuser", PASSWORD)
        self.assertTrue(client.set_cookie_headers)
        for header in client.set_cookie_headers:
            self.assertNotRegex(header, re.compile(r";\s*Secure", re.I))


class OperatorAPITests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def test_finding_3_operator_api_throttles_and_audits_failed_logins(self):
        deployment = Deployment(self)
        deployment.start_locator()
        attacker = DashboardClient(deployment.locator_url, source="127.0.0.2")
        codes, retry_after = [], None
        for i in range(40):
            page = yield attacker.get("/api/v1/edges",
                                      headers={"Authorization": basic("ctuser", f"guess{i}")})
            codes.append(page.code)
            if page.code == 429:
                retry_after = page.header("retry-after")
                self.assertIn(b"too-many-failures", page.body)
        self.assertEqual(codes[:5], [401] * 5)
        self.assertEqual(codes[5:], [429] * 35)
        self.assertGreaterEqual(int(retry_after), 1)
        # The right password from the locked address is refused too, unchecked ...
        page = yield attacker.get("/api/v1/edges", headers={"Authorization": basic(*OPERATOR)})
        self.assertEqual(page.code, 429)
        # ... while the operator elsewhere gets in.
        operator = DashboardClient(deployment.locator_url, source="127.0.0.3")
        page = yield operator.get("/api/v1/edges", headers={"Authorization": basic(*OPERATOR)})
        self.assertEqual(page.code, 200)
        # Failures are audited in the database and logged, both rate-limited.
        query = ("SELECT user_name, details FROM audit_entries "
                 "WHERE kind = 'dashboard_login_failed'")
        rows = []
        for _ in range(100):
            rows = deployment.audit_rows(query)
            if len(rows) >= 10:
                break
            yield sleep(0.1)
        self.assertEqual(len(rows), 10, rows)  # the burst; 31 more not stored
        self.assertTrue(all(r[0] == "ctuser" and "127.0.0.2" in r[1] and "operator API" in r[1]
                            for r in rows), rows)
        warnings = re.findall(r"operator API: failed log-in for 'ctuser' from 127\.0\.0\.2",
                              deployment.locator.log())
        self.assertEqual(len(warnings), 10)
        self.assertNotIn("Traceback", deployment.locator.log())
