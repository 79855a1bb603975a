"""The dashboard of a lone edge (single-server), over real HTTP on loopback."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from twisted.internet import defer, reactor
from twisted.trial import unittest

from ct.client.session import SessionClient, SessionEnded
from tests.dashboard.util import DashboardClient
from tests.edge.util import close_all, start_edge, wait_for
from tests.metrics.util import fetch

PASSWORD = "dashboard-test-password"
GET_PAGES = ["/dashboard", "/dashboard/", "/dashboard/edges", "/dashboard/sessions",
             "/dashboard/regions", "/dashboard/advanced", "/dashboard/audit",
             "/dashboard/integrations", "/dashboard/logs", "/logs"]
EXPORTS = ["/dashboard/audit.csv", "/dashboard/audit.json"]
ACTIONS = ["/dashboard/logout", "/dashboard/edges/e1/suspend", "/dashboard/edges/e1/resume",
           "/dashboard/sessions/abc/end", "/dashboard/sessions/abc/participants/2/remove",
           "/dashboard/regions", "/dashboard/advanced", "/dashboard/integrations"]


def stat(page, key: str) -> str:
    match = re.search(rf'id="{re.escape(key)}">([^<]*)<', page.text)
    assert match, f"no {key} on the page"
    return match.group(1)


class SingleServerDashboardTests(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.clients_dir = self.make_clients_dir()
        self.service, self.url = start_edge(self, CT_DASHBOARD_PASSWORD=PASSWORD,
                                            CT_CLIENTS_DIR=self.clients_dir,
                                            CT_METRICS_INTERVAL="1")
        self.dash = self.service.dashboard
        self.sessions = []
        self.addCleanup(lambda: close_all(self.sessions))

    def make_clients_dir(self) -> str:
        root = Path(self.mktemp()) / "clients"
        for rel, size in (("intellij/codetogether-intellij.zip", 5000),
                          ("vscode/codetogether.vsix", 3000),
                          ("eclipse/codetogether.jar", 100)):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(b"x" * size)
        return str(root)

    def audit_kinds(self):
        return [e.kind for e in self.dash.backend.audit_ring.entries]

    @defer.inlineCallbacks
    def logged_in(self):
        client = DashboardClient(self.url)
        yield client.login("ctuser", PASSWORD)
        return client

    @defer.inlineCallbacks
    def test_unauthenticated_requests_are_refused_everywhere(self):
        anonymous = DashboardClient(self.url)
        for path in GET_PAGES:
            page = yield anonymous.get(path)
            self.assertEqual(page.code, 303, path)
            self.assertTrue(page.location.startswith("/dashboard/login?next="), path)
            self.assertNotIn(b"<table", page.body)
        for path in EXPORTS:
            page = yield anonymous.get(path)
            self.assertEqual(page.code, 403, path)
            self.assertNotIn(b"kind", page.body)
        form = yield anonymous.get("/dashboard/login")  # a real token does not help
        for path in ACTIONS:
            page = yield anonymous.post(path, {"csrf": form.csrf, "min_client_version": "9"})
            self.assertEqual(page.code, 403, path)
        # A made-up session cookie is no better.
        anonymous.cookies["ct_dashboard"] = "made-up-session-id"
        page = yield anonymous.get("/dashboard/audit")
        self.assertEqual(page.code, 303)
        page = yield anonymous.post("/dashboard/advanced", {"csrf": form.csrf,
                                                            "min_client_version": "9"})
        self.assertEqual(page.code, 403)
        self.assertIsNone(self.service.edge.config.min_client_version)
        # /logs with wrong HTTP Basic credentials
        code, headers, _ = yield fetch(self.url + "/logs", headers={
            "Authorization": "Basic Y3R1c2VyOndyb25n"})  # ctuser:wrong
        self.assertEqual(code, 401)

    @defer.inlineCallbacks
    def test_log_in_sets_a_strict_http_only_cookie_and_audits(self):
        client = DashboardClient(self.url)
        page = yield client.login("ctuser", PASSWORD)
        self.assertEqual(page.location, "/dashboard")
        session_cookie = [c for c in client.set_cookie_headers if c.startswith("ct_dashboard=")]
        self.assertEqual(len(session_cookie), 1)
        flags = session_cookie[0].lower()
        self.assertIn("httponly", flags)
        self.assertIn("samesite=strict", flags)
        self.assertIn("path=/", flags)
        self.assertNotIn("secure", flags)  # plain HTTP here; see the TLS test
        overview = yield client.get("/dashboard")
        self.assertEqual(overview.code, 200)
        self.assertIn("content-security-policy", {k.decode().lower() for k, _ in
                                                  overview.headers.getAllRawHeaders()})
        self.assertIn("dashboard_login", self.audit_kinds())
        # Log out: the cookie no longer opens anything.
        old = dict(client.cookies)
        page = yield client.action("/dashboard/logout")
        self.assertEqual(page.code, 303)
        client.cookies = old
        page = yield client.get("/dashboard")
        self.assertEqual(page.code, 303)
        self.assertIn("dashboard_logout", self.audit_kinds())

    @defer.inlineCallbacks
    def test_forged_cross_site_posts_are_refused(self):
        client = yield self.logged_in()
        page = yield client.get("/dashboard/advanced")
        token = page.csrf
        form = {"csrf": token, "min_client_version": "99.0"}
        forged = yield client.post("/dashboard/advanced", form, origin="http://evil.example")
        self.assertEqual(forged.code, 403)
        no_origin = yield client.post("/dashboard/advanced", form, origin=None)
        self.assertEqual(no_origin.code, 403)
        evil_referer = yield client.post("/dashboard/advanced", form, origin=None,
                                         headers={"Referer": "http://evil.example/x"})
        self.assertEqual(evil_referer.code, 403)
        wrong_token = yield client.post("/dashboard/advanced", {**form, "csrf": "x" * 43})
        self.assertEqual(wrong_token.code, 403)
        missing_token = yield client.post("/dashboard/advanced", {"min_client_version": "99"})
        self.assertEqual(missing_token.code, 403)
        self.assertIsNone(self.service.edge.config.min_client_version)
        # A log-in form posted from elsewhere is refused too.
        other = DashboardClient(self.url)
        login_form = yield other.get("/dashboard/login")
        page = yield other.post("/dashboard/login", {"csrf": login_form.csrf, "user": "ctuser",
                                                     "password": PASSWORD},
                                origin="http://evil.example")
        self.assertEqual(page.code, 403)
        self.assertNotIn("ct_dashboard", other.cookies)
        # The genuine form works, and the edge enforces the new minimum at once.
        ok = yield client.post("/dashboard/advanced", form)
        self.assertEqual(ok.code, 303)
        self.assertEqual(self.service.edge.config.min_client_version, "99.0")
        host = SessionClient(reactor, self.url, "old-plugin")
        self.sessions.append(host)
        with self.assertRaises(SessionEnded) as caught:
            yield host.host(client_version="98.5")
        self.assertEqual(caught.exception.code, "client-too-old")
        page = yield client.get("/dashboard/advanced")
        self.assertIn('value="99.0"', page.text)
        self.assertIn("config_changed", self.audit_kinds())

    @defer.inlineCallbacks
    def test_failed_log_ins_are_throttled_and_audited(self):
        client = DashboardClient(self.url)
        for _ in range(4):
            page = yield client.login("ctuser", "wrong", expect=401)
            self.assertIn("Wrong user or password", page.text)
        page = yield client.login("ctuser", "wrong", expect=401)
        self.assertIn("try again in 30 s", page.text)
        # Locked: even the right password is not checked now.
        page = yield client.login("ctuser", PASSWORD, expect=429)
        self.assertNotIn("ct_dashboard", client.cookies)
        failed = [e for e in self.dash.backend.audit_ring.entries
                  if e.kind == "dashboard_login_failed"]
        self.assertEqual(len(failed), 6)
        self.assertEqual(failed[-1].details["reason"], "locked")
        self.assertEqual(failed[0].details["ip"], "127.0.0.1")

    @defer.inlineCallbacks
    def test_downloads_per_client_on_the_overview(self):
        for path in ("intellij/codetogether-intellij.zip", "intellij/codetogether-intellij.zip",
                     "vscode/codetogether.vsix"):
            code, _, body = yield fetch(f"{self.url}/clients/{path}")
            self.assertEqual(code, 200)
        client = yield self.logged_in()
        page = yield client.get("/dashboard")
        self.assertEqual(stat(page, "dl-intellij"), "2")
        self.assertEqual(stat(page, "dl-vscode"), "1")
        self.assertEqual(stat(page, "dl-eclipse"), "0")
        self.assertEqual(stat(page, "stat-downloads"), "3")
        self.assertIn('class="chart"', page.text)

    @defer.inlineCallbacks
    def test_sessions_listed_participant_removed_session_ended(self):
        host = SessionClient(reactor, self.url, "alice")
        self.sessions.append(host)
        yield host.host(title="secret title")
        guests = []
        for name in ("bob", "carol"):
            guest = SessionClient(reactor, self.url, name)
            guest.auto_resume = False
            self.sessions.append(guest)
            yield guest.join(host.session, host.join_token)
            guests.append(guest)
        client = yield self.logged_in()
        page = yield client.get("/dashboard/sessions")
        for name in ("alice", "bob", "carol"):
            self.assertIn(f"<strong>{name}</strong>", page.text)
        self.assertNotIn(f"remove-{host.session}-1", page.text)  # the host: end instead
        bob_id = guests[0].participant
        removed = yield client.post(f"/dashboard/sessions/{host.session}/participants/"
                                    f"{bob_id}/remove", {"csrf": page.csrf})
        self.assertEqual(removed.code, 303)
        yield wait_for(lambda: guests[0]._proto is None, timeout=5)
        page = yield client.get("/dashboard/sessions")
        self.assertIn("removed from", page.text)  # the flash message
        self.assertNotIn("<strong>bob</strong>", page.text)
        ended = yield client.post(f"/dashboard/sessions/{host.session}/end",
                                  {"csrf": page.csrf})
        self.assertEqual(ended.code, 303)
        yield wait_for(lambda: not self.service.edge.relay.sessions, timeout=5)
        page = yield client.get("/dashboard/sessions")
        self.assertIn('id="no-sessions"', page.text)
        kinds = self.audit_kinds()
        for kind in ("participant_removed", "session_ended_by_admin", "participant_left",
                     "session_ended"):
            self.assertIn(kind, kinds)
        # Audit export: CSV and JSON, filtered by kind.
        csv_page = yield client.get("/dashboard/audit.csv?kind=participant_removed")
        self.assertEqual(csv_page.code, 200)
        self.assertIn("attachment", csv_page.header("content-disposition"))
        rows = list(csv.DictReader(io.StringIO(csv_page.text)))
        self.assertEqual([r["kind"] for r in rows], ["participant_removed"])
        self.assertEqual(rows[0]["user"], "ctuser")
        self.assertEqual(json.loads(rows[0]["details"])["name"], "bob")
        js = yield client.get("/dashboard/audit.json?user=ctuser")
        entries = json.loads(js.body)["entries"]
        self.assertEqual({e["kind"] for e in entries},
                         {"dashboard_login", "participant_removed", "session_ended_by_admin"})
        audit_page = yield client.get("/dashboard/audit?kind=session_ended_by_admin")
        self.assertIn(host.session, audit_page.text)
        self.assertNotIn("participant_removed</span>", audit_page.text)

    @defer.inlineCallbacks
    def test_locator_pages_say_they_need_the_locator(self):
        client = yield self.logged_in()
        for path in ("/dashboard/edges", "/dashboard/regions"):
            page = yield client.get(path)
            self.assertEqual(page.code, 200)
            self.assertIn('id="needs-locator"', page.text)
        page = yield client.get("/dashboard/edges")
        self.assertIn(self.service.edge.edge_id, page.text)  # this edge's own row
        page = yield client.action("/dashboard/regions", {"region:eu": "10.0.0.0/8"})
        self.assertEqual(page.code, 303)
        page = yield client.get("/dashboard/integrations")
        self.assertIn("from the environment", page.text)

    @defer.inlineCallbacks
    def test_logs_page_and_older_logs_endpoint(self):
        client = yield self.logged_in()
        page = yield client.get("/dashboard/logs")
        self.assertIn("ct edge", page.text)
        self.assertIn("dashboard: ctuser logged in", page.text)
        import base64

        auth = base64.b64encode(f"ctuser:{PASSWORD}".encode()).decode()
        code, headers, body = yield fetch(self.url + "/logs",
                                          headers={"Authorization": f"Basic {auth}"})
        self.assertEqual(code, 200)
        self.assertEqual(headers.getRawHeaders("content-type"), ["text/plain; charset=utf-8"])
        self.assertIn(b"ct edge", body)


class TLSCookieTests(unittest.TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def test_cookie_is_secure_over_tls(self):
        from tests.tlsutil import write_self_signed

        directory = Path(self.mktemp())
        directory.mkdir(parents=True)
        cert, key = write_self_signed(directory)
        service, _ = start_edge(self, CT_DASHBOARD_PASSWORD=PASSWORD, CT_TLS_CERT=str(cert),
                                CT_TLS_KEY=str(key),
                                CT_HTTPS_LISTEN="ssl:0:interface=127.0.0.1")
        port = service.listening.ports["SSL"].getHost().port
        from twisted.web.client import Agent, HTTPConnectionPool

        from ct.common.http import TrustAllPolicy

        client = DashboardClient(f"https://localhost:{port}")
        client.agent = Agent(reactor, contextFactory=TrustAllPolicy(),
                             pool=HTTPConnectionPool(reactor, persistent=False))
        yield client.login("ctuser", PASSWORD)
        cookie = [c for c in client.set_cookie_headers if c.startswith("ct_dashboard=")][0]
        self.assertIn("secure", cookie.lower())
        self.assertIn("httponly", cookie.lower())
