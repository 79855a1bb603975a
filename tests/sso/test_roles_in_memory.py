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
from ct.dashboard.pages.logs import OlderLogs
from ct.common.tokens import team_token
from ct.edge.server import Edge, EdgeConfig
from tests.dashboard import test_in_memory as base
from tests.dashboard.test_in_memory import BASE, CSRF_RE, PASSWORD
from tests.edge.test_relay import FakeConnection

SSO = SsoConfig(issuer="https://id.example.com", client_id="ct")


class _InMemory(unittest.TestCase):
    # The browser-like helpers of the dashboard's in-memory tests (not their tests).
    request = base.DashboardInMemoryTests.request
    post = base.DashboardInMemoryTests.post
    location = base.DashboardInMemoryTests.location

    def make(self, config: DashboardConfig, oidc=None, edge_config: EdgeConfig | None = None):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.edge = Edge(self.clock, edge_config or EdgeConfig())
        self.audit = AuditRing()
        self.edge.audit_sinks.append(self.audit)
        self.history = MetricHistory(10.0)
        backend = EdgeBackend(self.edge, None, self.audit, self.history)
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


TEAM_SECRET = "roles-team-secret"
# Every route of the dashboard, as a team viewer of team red meets it: ``public`` (no
# log-in needed), ``team`` (allowed, and shows red's sessions, never blue's), ``self``
# (allowed: the viewer's own log-out) or 403 (administrators only). A route missing here
# fails the test, so a new route must say who may use it.
VIEWER_ROUTES = {
    "static": ("GET", "/dashboard/static/", "public"),
    "static_branch": ("GET", "/dashboard/static/none.css", "public"),  # no file producer
    "login_form": ("GET", "/dashboard/login", "public"),
    "log_in": ("POST", "/dashboard/login", "public"),
    "sso_start": ("GET", "/dashboard/sso/start", "public"),
    "sso_host": ("GET", "/dashboard/sso/host", "public"),
    "sso_callback": ("GET", "/dashboard/sso/callback", "public"),
    "log_out": ("POST", "/dashboard/logout", "self"),
    "overview_page": ("GET", "/dashboard", "team"),
    "usage_page": ("GET", "/dashboard/usage", "team"),
    "sessions_page": ("GET", "/dashboard/sessions", "team"),
    "audit_page": ("GET", "/dashboard/audit", "team"),
    "audit_csv": ("GET", "/dashboard/audit.csv", "team"),
    "audit_json": ("GET", "/dashboard/audit.json", "team"),
    "end_session": ("POST", "/dashboard/sessions/{red}/end", 403),
    "remove_participant": ("POST", "/dashboard/sessions/{red}/participants/2/remove", 403),
    "edges_page": ("GET", "/dashboard/edges", 403),
    "edge_log_page": ("GET", "/dashboard/edges/e1/log", 403),
    "suspend": ("POST", "/dashboard/edges/e1/suspend", 403),
    "resume": ("POST", "/dashboard/edges/e1/resume", 403),
    "regions_page": ("GET", "/dashboard/regions", 403),
    "save_regions": ("POST", "/dashboard/regions", 403),
    "advanced_page": ("GET", "/dashboard/advanced", 403),
    "save_advanced": ("POST", "/dashboard/advanced", 403),
    "integrations_page": ("GET", "/dashboard/integrations", 403),
    "save_integrations": ("POST", "/dashboard/integrations", 403),
    "logs_page": ("GET", "/dashboard/logs", 403),
    "tokens_page": ("GET", "/dashboard/tokens", 403),
    "create_token": ("POST", "/dashboard/tokens", 403),
    "revoke_token": ("POST", "/dashboard/tokens/0123456789abcdef/revoke", 403),
}


class ViewerRouteTableTests(_InMemory):
    """Every dashboard route against a team viewer of team red, on a lone edge hosting
    one red and one blue session (real relay, audit entries as the edge writes them)."""

    def setUp(self):
        self.make(DashboardConfig.for_server(BASE),
                  edge_config=EdgeConfig(team_secret=TEAM_SECRET))
        self.red = self.host("alice", "red", "vscode/1.90")
        self.blue = self.host("carol", "blue", "eclipse")
        self.edge.relay.join(FakeConnection(), {
            "type": "join", "session": self.red.session.id,
            "token": self.red.session.join_token, "name": "bob", "client": "Browser"})
        self.history.add(self.clock.seconds(), {"users_online": 3, "sessions": 2})
        self.clock.advance(1)  # the report's period ends now, exclusive
        self.session = self.sign_in_as("bob@example.com", "team-viewer", ("red",))

    def host(self, name: str, team: str, client: str):
        return self.edge.relay.host(FakeConnection(), {
            "type": "host", "name": name, "team": team, "client": client,
            "teamToken": team_token(TEAM_SECRET, team)})

    def test_every_route_is_allowed_and_filtered_or_refused(self):
        rules = {rule.endpoint for rule in Dashboard.app.url_map.iter_rules()}
        self.assertEqual(rules, set(VIEWER_ROUTES))  # no route without a verdict
        red, blue = self.red.session.id, self.blue.session.id
        for endpoint, (method, path, verdict) in sorted(VIEWER_ROUTES.items()):
            if endpoint == "log_out":
                continue  # last: it ends the session
            path = path.format(red=red)
            if method == "POST":
                response, body = self.post(path, {"csrf": self.session.csrf,
                                                  "minClientVersion": "9.9",
                                                  "name": "x", "role": "admin"})
            else:
                response, body = self.request("GET", path)
            if verdict == 403:
                self.assertEqual(response.code, 403, endpoint)
                self.assertIn("needs the admin role", body, endpoint)
            elif verdict == "team":
                self.assertEqual(response.code, 200, endpoint)
                self.assertNotIn(blue, body, endpoint)
                self.assertNotIn("carol", body, endpoint)
                if endpoint != "overview_page":  # the overview has counts, no ids
                    self.assertIn(red if endpoint != "usage_page" else "team red", body,
                                  endpoint)
            else:  # answered by its own rules (a log-in form, SSO not configured here)
                self.assertLess(response.code, 500, endpoint)
                self.assertNotIn("needs the admin role", body, endpoint)
        # The older /logs: a logged-in browser is sent to the Logs page, which is 403.
        self.assertEqual({r.endpoint for r in OlderLogs.app.url_map.iter_rules()}, {"logs"})
        response, _ = self.request("GET", "/logs")
        self.assertEqual(self.location(response), "/dashboard/logs")
        self.assertIsNone(self.edge.config.min_client_version)  # nothing changed
        self.assertEqual(len(self.edge.relay.sessions), 2)  # nothing ended
        response, _ = self.post("/dashboard/logout", {"csrf": self.session.csrf})
        self.assertEqual((response.code, self.location(response)), (303, "/dashboard/login"))
        response, _ = self.request("GET", "/dashboard/usage")  # the session is gone
        self.assertIn("/dashboard/login", self.location(response))

    def test_usage_of_its_teams_without_the_server_wide_figures(self):
        response, body = self.request("GET", "/dashboard/usage?days=7")
        self.assertEqual(response.code, 200)
        self.assertIn('id="team-scope"', body)
        self.assertIn("left out", body)
        # red: alice hosted, bob joined; one session of two people.
        self.assertRegex(body, r'id="stat-unique-users">2<')
        self.assertRegex(body, r'id="stat-sessions-started">1<')
        self.assertRegex(body, r'id="stat-session-size">2.00<')
        self.assertNotIn('aria-label="Peak concurrent users per day"', body)
        self.assertNotIn("<th>Peak concurrent users</th>", body)
        self.assertNotIn('id="av-use"', body)
        self.assertNotIn("Connections relayed", body)  # nor explained in the footnote
        self.assertIn("Days are UTC", body)
        self.assertIn("vscode", body)
        self.assertNotIn("eclipse", body)  # blue's host client
        nav = body.split('class="nav"', 1)[1].split("</nav>", 1)[0]
        self.assertIn("Usage", nav)
        self.assertNotIn("Edge servers", nav)
        # The administrator sees the whole server, peaks and A/V included.
        self.sign_in_as("ada@example.com", "admin")
        response, body = self.request("GET", "/dashboard/usage?days=7")
        self.assertRegex(body, r'id="stat-unique-users">3<')
        self.assertRegex(body, r'id="stat-sessions-started">2<')
        self.assertIn('aria-label="Peak concurrent users per day"', body)
        self.assertIn("<th>Peak concurrent users</th>", body)
        self.assertIn('id="av-use"', body)
        self.assertIn("Connections relayed: the share", body)
        self.assertNotIn('id="team-scope"', body)


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
