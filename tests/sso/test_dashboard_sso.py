"""Dashboard single sign-on against a real OpenID provider (Node ``oidc-provider``) and
a real 1-locator/2-edge deployment, driven in headless Chromium.

Screenshots go to ``test-artifacts/dashboard/``.
"""

from __future__ import annotations

import treq
from twisted.internet import defer, reactor
from twisted.trial import unittest
from twisted.web.client import HTTPConnectionPool

from ct.client.session import SessionClient
from ct.common.tokens import team_token
from tests.dashboard.browser import Browser, missing, run
from tests.deployment.util import Deployment
from tests.edge.util import close_all
from tests.sso.provider import Provider, sign_in

TEAM_SECRET = "deployment-team-secret"  # tests.deployment.util's edges


class DashboardSsoTests(unittest.TestCase):
    timeout = 300

    @defer.inlineCallbacks
    def setUp(self):
        reason = missing()
        if reason:
            raise unittest.SkipTest(reason)
        self.provider = Provider(self)
        yield self.provider.start()
        self.d = Deployment(self, locator_env=self.provider.locator_env())
        self.d.start_locator()
        for name in ("e1", "e2"):
            self.d.start_edge(name)
        self.clients = []
        self.addCleanup(lambda: close_all(self.clients))
        yield self.d.wait_online(["e1", "e2"])

    @defer.inlineCallbacks
    def host(self, name: str, team: str):
        answer = yield self.d.client().start_session()
        host = SessionClient(reactor, answer["server"], name)
        yield host.host(team=team, team_token=team_token(TEAM_SECRET, team))
        self.clients.append(host)
        return host

    @defer.inlineCallbacks
    def post_as(self, b, path: str):
        """POST ``path`` with the browser's session cookie and CSRF token (same origin)."""
        cookie = b.driver.get_cookie("ct_dashboard")["value"]
        csrf = b.find("form.logout input[name=csrf]").get_attribute("value")
        response = yield treq.post(self.d.locator_url + path, data={"csrf": csrf},
                                   headers={"Origin": self.d.locator_url},
                                   cookies={"ct_dashboard": cookie}, allow_redirects=False,
                                   pool=HTTPConnectionPool(reactor, persistent=False))
        body = yield response.text()
        return response.code, body

    @defer.inlineCallbacks
    def test_admin_and_team_viewers_sign_in_through_the_provider(self):
        base = self.d.locator_url
        red = yield self.host("alice", "red")
        blue = yield self.host("carol", "blue")

        # The administrator signs in through the provider and suspends an edge.
        admin = yield run(Browser, self)

        def admin_suspends():
            sign_in(admin, base, "ada@example.com", start="/dashboard/edges")
            admin.wait(lambda: admin.driver.current_url.endswith("/dashboard/edges"),
                       what="back on the edges page")
            admin.screenshot("sso-01-admin-edges")
            admin.click_and_confirm("#suspend-e1")
            admin.wait(lambda: admin.text("#state-e1") == "suspended", what="e1 suspended")
            who, role = admin.text("#who"), admin.text("#role")
            admin.driver.get(base + "/dashboard/sessions")
            listed = admin.text("#sessions")
            admin.find("form.logout button").click()
            admin.wait(lambda: "/dashboard/login" in admin.driver.current_url,
                       what="signed out")
            admin.driver.get(base + "/dashboard")
            return who, role, listed, admin.driver.current_url

        who, role, listed, after = yield run(admin_suspends)
        self.assertEqual((who, role), ("ada@example.com", "admin"))
        self.assertIn(red.session, listed)
        self.assertIn(blue.session, listed)
        self.assertIn("/dashboard/login", after)  # signed out: the session is gone
        states = yield self.d.wait_edges(lambda s: s.get("e1") == "suspended")
        self.assertEqual(states["e1"], "suspended")

        # A team viewer sees only its team's sessions and audit entries.
        viewer = yield run(Browser, self)

        def viewer_looks():
            sign_in(viewer, base, "bob@example.com", start="/dashboard/sessions")
            viewer.wait(lambda: viewer.driver.current_url.endswith("/dashboard/sessions"),
                        what="back on the sessions page")
            viewer.screenshot("sso-02-viewer-sessions")
            seen = viewer.text("#sessions")
            buttons = viewer.driver.find_elements("css selector", "#sessions button")
            nav = viewer.text("nav.nav")
            viewer.driver.get(base + "/dashboard/audit")
            viewer.wait(lambda: "session_started" in viewer.text("#audit"),
                        what="the team's audit entries")
            viewer.screenshot("sso-03-viewer-audit")
            audit = viewer.text("#audit")
            viewer.driver.get(base + "/dashboard/usage")
            viewer.wait(lambda: viewer.find("#team-scope").is_displayed(),
                        what="the team's usage")
            viewer.screenshot("sso-03b-viewer-usage")
            usage = {key: viewer.text(f"#stat-{key}") for key in (
                "unique-users", "sessions-started")}
            usage["av"] = bool(viewer.driver.find_elements("css selector", "#av-use"))
            usage["hosts"] = viewer.text("#host-clients")
            return seen, len(buttons), nav, audit, viewer.text("#role"), usage

        seen, buttons, nav, audit, role, usage = yield run(viewer_looks)
        self.assertIn(red.session, seen)
        self.assertNotIn(blue.session, seen)
        self.assertEqual(buttons, 0)  # no admin actions offered
        self.assertNotIn("Edge servers", nav)
        self.assertIn(red.session, audit)
        self.assertNotIn(blue.session, audit)
        self.assertNotIn("edge_suspended", audit)
        self.assertEqual(role, "team viewer: red")
        self.assertIn("Usage", nav)
        # Its team's usage only: alice's one red session (carol's blue one not counted),
        # without the server-wide A/V use.
        self.assertEqual((usage["unique-users"], usage["sessions-started"], usage["av"]),
                         ("1", "1", False))

        # Admin actions and pages answer 403 to a team viewer.
        code, body = yield self.post_as(viewer, "/dashboard/edges/e1/resume")
        self.assertEqual(code, 403, body)
        self.assertIn("needs the admin role", body)
        code, _ = yield self.post_as(viewer, f"/dashboard/sessions/{red.session}/end")
        self.assertEqual(code, 403)
        page = yield run(lambda: (viewer.driver.get(base + "/dashboard/edges"),
                                  viewer.driver.page_source)[1])
        self.assertIn("needs the admin role", page)
        states = yield self.d.wait_edges(lambda s: "e1" in s)
        self.assertEqual(states["e1"], "suspended")  # still: the refused resume did nothing

        # A user outside the allowed domain is refused with a clear page.
        outsider = yield run(Browser, self)

        def outsider_refused():
            sign_in(outsider, base, "eve@elsewhere.test")
            outsider.wait(lambda: outsider.find("#login-error").is_displayed(),
                          what="the refusal")
            outsider.screenshot("sso-04-outside-domain")
            return outsider.text("#login-error"), outsider.driver.get_cookie("ct_dashboard")

        message, cookie = yield run(outsider_refused)
        self.assertIn("not in an allowed domain", message)
        self.assertIn("eve@elsewhere.test", message)
        self.assertFalse(cookie and cookie.get("value"))

        # A callback this browser did not start (no state cookie) is refused.
        response = yield treq.get(base + "/dashboard/sso/callback?state=forged&code=x",
                                  pool=HTTPConnectionPool(reactor, persistent=False))
        body = yield response.text()
        self.assertEqual(response.code, 403)
        self.assertIn("was not started here", body)

        # The audit log says who did what, and how they signed in.
        rows = self.d.audit_rows("SELECT kind, user_name, details FROM audit_entries "
                                 "WHERE kind IN ('dashboard_login', 'edge_suspended', "
                                 "'dashboard_login_failed', 'dashboard_logout') ORDER BY seq")
        kinds = [(k, u) for k, u, _ in rows]
        self.assertIn(("dashboard_login", "ada@example.com"), kinds)
        self.assertIn(("edge_suspended", "ada@example.com"), kinds)
        self.assertIn(("dashboard_logout", "ada@example.com"), kinds)
        self.assertIn(("dashboard_login", "bob@example.com"), kinds)
        self.assertIn("dashboard_login_failed", [k for k, _ in kinds])
        bob_login = [d for k, u, d in rows if k == "dashboard_login" and u == "bob@example.com"]
        self.assertIn('"role":"team-viewer"', bob_login[0])
        self.assertIn('"method":"sso"', bob_login[0])
