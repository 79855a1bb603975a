"""Roles on the dashboard's Klein resources in memory (StubTreq, a Clock): what a team
viewer may see and do, and the password form turned off beside single sign-on."""

from __future__ import annotations

import base64
import json

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial import unittest
from twisted.web import resource

from ct.common.credentials import Credentials
from ct.common.oidc import OidcClient, SsoConfig
from ct.dashboard.app import Dashboard
from ct.dashboard.backend import EdgeBackend
from ct.dashboard.guard import DashboardConfig
from ct.dashboard.logs import LogRing, ServerLog
from ct.dashboard.memory import AuditRing, MetricHistory
from ct.edge.server import Edge
from tests.dashboard import test_in_memory as base
from tests.dashboard.test_in_memory import BASE, CSRF_RE, PASSWORD

SSO = SsoConfig(issuer="https://id.example.com", client_id="ct")


class _InMemory(unittest.TestCase):
    # The browser-like helpers of the dashboard's in-memory tests (not their tests).
    request = base.DashboardInMemoryTests.request
    post = base.DashboardInMemoryTests.post
    location = base.DashboardInMemoryTests.location

    def make(self, config: DashboardConfig, oidc=None):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.edge = Edge(self.clock)
        self.audit = AuditRing()
        self.edge.audit_sinks.append(self.audit)
        backend = EdgeBackend(self.edge, None, self.audit, MetricHistory(10.0))
        self.dashboard = Dashboard(backend, Credentials("ctuser", PASSWORD), self.clock,
                                   ServerLog(LogRing()), config, oidc=oidc)
        root = resource.Resource()
        self.dashboard.mount(root)
        self.http = StubTreq(root)
        self.cookies = {}

    def sign_in_as(self, user: str, role: str, teams=()):
        """A session as the SSO callback makes it."""
        session = self.dashboard.guard.sessions.create(user, role, teams, "sso")
        self.cookies["ct_dashboard"] = session.sid
        return session

    def entry(self, kind: str, session: str, team: str | None = None):
        self.edge.audit_sinks[0]({"id": f"{kind}-{session}", "time": self.clock.seconds(),
                                  "kind": kind, "edge": "e", "session": session,
                                  "user": "host", "details": {"team": team}})


class TeamViewerTests(_InMemory):
    def setUp(self):
        self.make(DashboardConfig.for_server(BASE))
        self.entry("session_started", "s-red", "red")
        self.entry("participant_joined", "s-red")
        self.entry("session_started", "s-blue", "blue")
        self.entry("participant_joined", "s-blue")
        self.entry("config_changed", None)
        self.session = self.sign_in_as("bob@example.com", "team-viewer", ("red",))

    def test_sees_its_teams_audit_only(self):
        for path in ("/dashboard/audit", "/dashboard/audit.csv", "/dashboard/audit.json"):
            response, body = self.request("GET", path)
            self.assertEqual(response.code, 200, path)
            self.assertIn("s-red", body, path)
            self.assertNotIn("s-blue", body, path)
            self.assertNotIn("config_changed</span>", body, path)
        kinds = [(e["kind"], e["session"]) for e in json.loads(body)["entries"]]
        self.assertEqual(sorted(kinds), [("participant_joined", "s-red"),
                                         ("session_started", "s-red")])

    def test_admin_pages_and_actions_are_403(self):
        for path in ("/dashboard/edges", "/dashboard/regions", "/dashboard/advanced",
                     "/dashboard/integrations", "/dashboard/logs", "/dashboard/tokens"):
            response, body = self.request("GET", path)
            self.assertEqual(response.code, 403, path)
            self.assertIn("needs the admin role", body)
        for path in ("/dashboard/advanced", "/dashboard/sessions/s-red/end",
                     "/dashboard/sessions/s-red/participants/2/remove", "/dashboard/tokens"):
            response, body = self.post(path, {"csrf": self.session.csrf,
                                              "minClientVersion": "9.9"})
            self.assertEqual(response.code, 403, path)
        self.assertIsNone(self.edge.config.min_client_version)  # nothing changed

    def test_pages_it_may_see(self):
        response, body = self.request("GET", "/dashboard")
        self.assertEqual(response.code, 200)
        self.assertIn('id="team-scope"', body)
        self.assertNotIn('id="stat-users-online"', body)  # not the deployment's numbers
        self.assertNotIn("Edge servers", body)
        self.assertIn("team viewer: red", body)
        response, body = self.request("GET", "/dashboard/sessions")
        self.assertEqual(response.code, 200)
        response, _ = self.post("/dashboard/logout", {"csrf": self.session.csrf})
        self.assertEqual((response.code, self.location(response)), (303, "/dashboard/login"))


class PasswordLoginOffTests(_InMemory):
    def setUp(self):
        config = DashboardConfig.for_server(BASE, sso=SSO, password_login=False)
        self.make(config, oidc=OidcClient(SSO, agent=None, clock=Clock()))

    def test_only_single_sign_on_is_offered(self):
        response, body = self.request("GET", "/dashboard/login")
        self.assertEqual(response.code, 200)
        self.assertIn('id="sso-login"', body)
        self.assertNotIn('id="password"', body)
        response, body = self.post("/dashboard/login", {"csrf": "x", "user": "ctuser",
                                                        "password": PASSWORD})
        self.assertEqual(response.code, 403)
        self.assertIn("password log-in is turned off", body)
        basic = base64.b64encode(f"ctuser:{PASSWORD}".encode()).decode()
        response, _ = self.request("GET", "/logs", headers={"authorization": f"Basic {basic}"})
        self.assertEqual(response.code, 403)

    def test_without_sso_the_password_form_stays(self):
        config = DashboardConfig.for_server(BASE, password_login=False)
        self.make(config)
        response, body = self.request("GET", "/dashboard/login")
        self.assertIn('id="password"', body)
        self.assertNotIn('id="sso-login"', body)
        self.assertTrue(CSRF_RE.search(body))
