"""The dashboard's Klein resources in memory: ``treq.testing.StubTreq`` over the root the
daemons build (``/dashboard`` and ``/logs`` mounted on it), time on a ``Clock``, no ports.
The real-socket and Chromium tests beside it cover the same pages over the network."""

from __future__ import annotations

import ast
import base64
import inspect
import re
from pathlib import Path
from urllib.parse import urlencode

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial import unittest
from twisted.web import resource

from ct.common.credentials import Credentials
from ct.dashboard.app import Dashboard
from ct.dashboard.backend import Backend, EdgeBackend, LocatorBackend
from ct.dashboard.guard import DashboardConfig
from ct.dashboard.logs import LogRing, ServerLog
from ct.dashboard.memory import AuditRing, MetricHistory
from ct.edge.integrations import Integrations
from ct.edge.server import Edge

BASE = "http://dash.example"
PASSWORD = "in-memory-password"
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')
FORM = {b"content-type": [b"application/x-www-form-urlencoded"]}


class DashboardInMemoryTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.edge = Edge(self.clock)
        self.audit = AuditRing()
        self.edge.audit_sinks.append(self.audit)
        self.history = MetricHistory(10.0)
        backend = EdgeBackend(self.edge, None, self.audit, self.history,
                              Integrations(True, "statsd.example", 8125, "UDP"))
        ring = LogRing()
        self.dashboard = Dashboard(backend, Credentials("ctuser", PASSWORD), self.clock,
                                   ServerLog(ring), DashboardConfig.for_server(BASE))
        root = resource.Resource()
        self.dashboard.mount(root)
        self.http = StubTreq(root)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict | None = None,
                headers: dict | None = None):
        """The response and its body; cookies kept like a browser."""
        hdrs = {k.encode(): [v.encode()] for k, v in (headers or {}).items()}
        if self.cookies:
            hdrs[b"cookie"] = ["; ".join(f"{k}={v}" for k, v in self.cookies.items())
                               .encode()]
        data = None
        if form is not None:
            hdrs.update(FORM)
            data = urlencode(form).encode()
        pending = self.http.request(method, BASE + path, headers=hdrs, data=data,
                                    allow_redirects=False)
        self.http.flush()
        response = self.successResultOf(pending)
        content = response.content()
        self.http.flush()
        body = self.successResultOf(content)
        for raw in response.headers.getRawHeaders(b"set-cookie", []):
            name, _, rest = raw.decode().partition("=")
            value = rest.split(";", 1)[0]
            if "max-age=0" in raw.decode().lower() or not value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return response, body.decode("utf-8")

    def post(self, path: str, form: dict, origin: str = BASE):
        return self.request("POST", path, form, {"origin": origin})

    def location(self, response) -> str:
        return response.headers.getRawHeaders(b"location")[0].decode()

    def log_in(self):
        _, form = self.request("GET", "/dashboard/login")
        response, _ = self.post("/dashboard/login", {"csrf": CSRF_RE.search(form).group(1),
                                                     "user": "ctuser", "password": PASSWORD,
                                                     "next": "/dashboard/advanced"})
        return response

    def test_pages_need_a_log_in(self):
        for path in ("/dashboard", "/dashboard/", "/dashboard/sessions", "/dashboard/logs",
                     "/logs"):
            response, _ = self.request("GET", path)
            self.assertEqual(response.code, 303, path)
            self.assertTrue(self.location(response).startswith("/dashboard/login?next="))

    def test_log_in_then_pages_and_the_older_logs(self):
        response = self.log_in()
        self.assertEqual((response.code, self.location(response)),
                         (303, "/dashboard/advanced"))
        self.assertIn("ct_dashboard", self.cookies)
        self.assertEqual([e.kind for e in self.audit.entries], ["dashboard_login"])
        for path, marker in (("/dashboard", 'id="stat-users-online"'),
                             ("/dashboard/", 'id="stat-users-online"'),
                             ("/dashboard/edges", 'id="edges"'),
                             ("/dashboard/sessions", 'id="no-sessions"'),
                             ("/dashboard/regions", 'id="needs-locator"'),
                             ("/dashboard/integrations", 'value="statsd.example"'),
                             ("/dashboard/audit", "dashboard_login"),
                             ("/dashboard/logs", 'id="log"')):
            response, body = self.request("GET", path)
            self.assertEqual(response.code, 200, path)
            self.assertIn(marker, body, path)
            self.assertEqual(response.headers.getRawHeaders(b"x-frame-options"), [b"DENY"])
        response, _ = self.request("GET", "/logs")
        self.assertEqual((response.code, self.location(response)), (303, "/dashboard/logs"))

    def test_usage_page_of_a_lone_edge_from_its_memory(self):
        now = self.clock.seconds()
        for n, (kind, session, user, client) in enumerate([
                ("session_started", "s1", "alice", "VSCode/1.9"),
                ("participant_joined", "s1", "bob", "browser"),
                ("participant_joined", "s1", "carol", None),
                ("participant_left", "s1", "bob", None),
                ("session_started", "s2", "dave", "intellij")]):
            self.audit({"id": f"u{n}", "time": now - 100 + n, "kind": kind, "edge": "e",
                        "session": session, "user": user,
                        "details": {"client": client} if client else {}})
        self.history.add(now - 50, {"users_online": 3, "sessions": 2, "av_participants": 3,
                                    "av_calls": 1, "av_relayed": 1, "av_direct": 3})
        self.history.add(now - 40, {"users_online": 1, "sessions": 1})
        self.log_in()
        response, body = self.request("GET", "/dashboard/usage?days=7")
        self.assertEqual(response.code, 200)
        for marker in ('id="memory-only"', 'id="av-use"', 'id="stat-av-peak-in-calls">3<',
                       'id="stat-av-peak-calls">1<', 'id="stat-av-relayed-share">25 %<',
                       'id="stat-unique-users">4<', 'id="stat-sessions-started">2<',
                       'id="stat-session-size">2.00<', "<td>vscode</td>", "<td>intellij</td>",
                       "<td>browser</td>", "<td>unknown</td>", "Peak concurrent users"):
            self.assertIn(marker, body)
        self.assertEqual(body.count("<tr><td>20"), 7)  # one row per day
        # Today: 2 sessions, 4 people, at peak 3 users and 2 sessions at once.
        # Today: 2 sessions, 4 people, at peak 3 users and 2 sessions at once, 3 people
        # in 1 call.
        self.assertRegex(body, r'id="usage-days".*?<tbody><tr><td>[\d-]+</td><td>2</td>'
                               r'<td>4</td><td>3</td><td>2</td><td>3</td><td>1</td></tr>')
        self.assertIn("<td>–</td><td>–</td></tr></tbody>", body)  # an earlier day: no data
        self.assertNotIn('id="no-calls"', body)
        response, body = self.request("GET", "/dashboard/usage?days=abc")
        self.assertIn("Unique users, 30 days", body)

    def test_usage_page_says_when_no_call_was_recorded(self):
        self.history.add(self.clock.seconds() - 50, {"users_online": 2, "sessions": 1})
        self.log_in()
        response, body = self.request("GET", "/dashboard/usage?days=7")
        self.assertEqual(response.code, 200)
        self.assertIn('id="no-calls">No calls recorded in this period.<', body)
        self.assertNotIn('id="stat-av-peak-in-calls"', body)
        # The lone edge's own snapshot carries the call counts (zero: A/V is off here).
        snap = self.edge.snapshot()
        self.assertEqual([snap[k] for k in ("av_participants", "av_calls", "av_relayed",
                                            "av_direct")], [0, 0, 0, 0])

    def test_post_with_csrf_changes_a_setting_and_is_audited(self):
        self.log_in()
        _, page = self.request("GET", "/dashboard/advanced")
        token = CSRF_RE.search(page).group(1)
        response, _ = self.post("/dashboard/advanced", {"min_client_version": "2024.2.0"})
        self.assertEqual(response.code, 403)  # no token
        response, _ = self.post("/dashboard/advanced", {"csrf": token,
                                                        "min_client_version": "2024.2.0"},
                                origin="http://evil.example")
        self.assertEqual(response.code, 403)  # another site
        self.assertIsNone(self.edge.config.min_client_version)
        response, _ = self.post("/dashboard/advanced", {"csrf": token,
                                                        "min_client_version": "2024.2.0"})
        self.assertEqual((response.code, self.location(response)),
                         (303, "/dashboard/advanced"))
        self.assertEqual(self.edge.config.min_client_version, "2024.2.0")
        _, page = self.request("GET", "/dashboard/advanced")
        self.assertIn("Minimum client version: 2024.2.0.", page)
        self.assertIn("config_changed", [e.kind for e in self.audit.entries])

    def test_sessions_expire_on_the_clock(self):
        self.log_in()
        self.clock.advance(3601)  # idle for longer than an hour
        response, _ = self.request("GET", "/dashboard/sessions")
        self.assertEqual(response.code, 303)

    def test_older_logs_take_http_basic(self):
        good = base64.b64encode(f"ctuser:{PASSWORD}".encode()).decode()
        response, body = self.request("GET", "/logs", headers={"authorization": "Basic " + good})
        self.assertEqual(response.code, 200)
        bad = base64.b64encode(b"ctuser:wrong").decode()
        response, _ = self.request("GET", "/logs/", headers={"authorization": "Basic " + bad})
        self.assertEqual(response.code, 401)


class BackendProtocolTests(unittest.TestCase):
    def test_both_backends_satisfy_the_protocol(self):
        """Every call the pages may make binds to both backends' methods."""
        for name, member in vars(Backend).items():
            if name.startswith("_") or not callable(member):
                continue
            wanted = inspect.signature(member)
            args = [None] * len([p for p in wanted.parameters.values()
                                 if p.kind is p.POSITIONAL_OR_KEYWORD])
            kwargs = {"extra": 1} if any(p.kind is p.VAR_KEYWORD
                                         for p in wanted.parameters.values()) else {}
            for backend in (LocatorBackend, EdgeBackend):
                method = getattr(backend, name, None)
                self.assertTrue(callable(method), f"{backend.__name__} lacks {name}")
                inspect.signature(method).bind(*args, **kwargs)  # TypeError if it does not fit
        for backend in (LocatorBackend, EdgeBackend):
            self.assertIn(backend.mode, ("multi-server", "single-server"))


class NoSettingsTests(unittest.TestCase):
    def test_nothing_under_the_dashboard_reads_settings(self):
        """Only the taps read settings: the dashboard gets config objects and values."""
        import ct.dashboard

        for path in Path(ct.dashboard.__file__).parent.rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom):
                    self.assertNotIn(node.module, ("ct.common.catalog", "ct.common.settings"),
                                     path)
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    params = {a.arg for a in node.args.args + node.args.kwonlyargs}
                    self.assertFalse(params & {"values", "options"}, f"{path}: {node.name}")


def test_after_login_only_dashboard_pages_are_targets():
    from ct.dashboard.pages.login import safe_next

    assert safe_next("/dashboard/audit?kind=x") == "/dashboard/audit?kind=x"
    assert safe_next("/logs") == "/logs"
    for bad in ("https://evil.example/", "//evil.example", "/dashboard//evil", "/\\evil",
                "/dashboard\r\nSet-Cookie: a=b", "/dashboard\x00", "/other", None, ""):
        assert safe_next(bad) == "/dashboard", bad
