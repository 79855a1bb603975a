"""The locator's dashboard over HTTP against real processes: settings pushed to edges,
regions, downloads summed over edges, and the generated password."""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

from twisted.internet import defer, reactor
from twisted.trial import unittest

from ct.client.session import SessionClient, SessionEnded
from tests.dashboard.util import DashboardClient
from tests.deployment.util import OPERATOR, Deployment
from tests.edge.util import close_all, sleep
from tests.metrics.util import fetch
from tests.procutil import Daemon


def stat(page, key: str) -> str:
    match = re.search(rf'id="{re.escape(key)}">([^<]*)<', page.text)
    assert match, f"no {key} on the page"
    return match.group(1)


@defer.inlineCallbacks
def eventually(check, timeout: float = 20.0, step: float = 0.25):
    """Retry the Deferred-returning ``check`` until it returns true (bounded)."""
    waited = 0.0
    while True:
        ok = yield check()
        if ok:
            return ok
        if waited >= timeout:
            raise AssertionError(f"not true within {timeout} s")
        yield sleep(step)
        waited += step


class LocatorDashboardTests(unittest.TestCase):
    timeout = 180

    def setUp(self):
        root = Path(self.mktemp()) / "clients"
        for rel in ("intellij/ct-intellij.zip", "vscode/ct.vsix", "eclipse/ct.jar"):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(b"p" * 2000)
        self.d = Deployment(self, edge_env={"CT_CLIENTS_DIR": str(root.resolve())})
        self.d.start_locator()
        for name in ("e1", "e2"):
            self.d.start_edge(name)
        self.sessions = []
        self.addCleanup(lambda: close_all(self.sessions))
        return self.d.wait_online(["e1", "e2"])

    @defer.inlineCallbacks
    def hosting_refused(self, url: str, version: str) -> bool:
        host = SessionClient(reactor, url, "old")
        self.sessions.append(host)
        try:
            yield host.host(client_version=version)
        except SessionEnded as e:
            return e.code == "client-too-old"
        return False

    @defer.inlineCallbacks
    def metrics_code(self, name: str) -> int:
        code, _, _ = yield fetch(self.d.edge_urls[name] + "/metrics")
        return code

    @defer.inlineCallbacks
    def test_settings_are_pushed_to_every_edge_and_on_registration(self):
        client = DashboardClient(self.d.locator_url)
        yield client.login(*OPERATOR)
        page = yield client.action("/dashboard/advanced", {"min_client_version": "5.0"},
                                   page="/dashboard/advanced")
        self.assertEqual(page.code, 303)
        for name in ("e1", "e2"):
            yield eventually(lambda n=name: self.hosting_refused(self.d.edge_urls[n], "4.9"))
        ok = SessionClient(reactor, self.d.edge_urls["e1"], "new")
        self.sessions.append(ok)
        yield ok.host(client_version="5.0.1")

        self.assertEqual((yield self.metrics_code("e1")), 404)
        page = yield client.action("/dashboard/integrations", {
            "prometheus": "on", "statsd_host": "", "statsd_port": "8125",
            "statsd_protocol": "UDP"}, page="/dashboard/integrations")
        self.assertEqual(page.code, 303)
        for name in ("e1", "e2"):
            yield eventually(lambda n=name: self.metrics_code(n).addCallback(
                lambda code: code == 200))
        page = yield client.get("/dashboard/integrations")
        self.assertIn('checked="checked"', page.text)

        # A restarted edge gets the settings when it registers again.
        self.d.edges["e1"].stop()
        self.d.start_edge("e1")
        yield self.d.wait_online(["e1"])
        yield eventually(lambda: self.hosting_refused(self.d.edge_urls["e1"], "4.0"))
        yield eventually(lambda: self.metrics_code("e1").addCallback(lambda c: c == 200))

        page = yield client.action("/dashboard/integrations", {"reset": "1"},
                                   page="/dashboard/integrations")
        for name in ("e1", "e2"):
            yield eventually(lambda n=name: self.metrics_code(n).addCallback(
                lambda code: code == 404))
        audit = yield client.get("/dashboard/audit.json?kind=config_changed")
        keys = [e["details"]["key"] for e in json.loads(audit.body)["entries"]]
        self.assertEqual(keys, ["integrations", "integrations", "advanced"])

    @defer.inlineCallbacks
    def test_regions_editor_and_downloads_over_edges(self):
        client = DashboardClient(self.d.locator_url)
        yield client.login(*OPERATOR)
        page = yield client.action("/dashboard/regions", {
            "region:default": "", "new_region": "eu", "new_cidrs": "198.51.100.0/24\n"
                                                                    "2001:db8:e::/48"},
            page="/dashboard/regions")
        self.assertEqual(page.code, 303)
        auth = base64.b64encode(":".join(OPERATOR).encode()).decode()
        _, _, body = yield fetch(self.d.locator_url + "/api/v1/regions",
                                 headers={"Authorization": f"Basic {auth}"})
        self.assertEqual(json.loads(body)["regions"],
                         {"eu": ["198.51.100.0/24", "2001:db8:e::/48"]})
        bad = yield client.action("/dashboard/regions", {"region:eu": "not-a-cidr"},
                                  page="/dashboard/regions")
        self.assertEqual(bad.code, 303)
        page = yield client.get("/dashboard/regions")
        self.assertIn("not a CIDR", page.text)  # the error, shown once
        self.assertIn("198.51.100.0/24", page.text)  # nothing changed
        self.assertIn("e1, e2", page.text)  # the edges reporting the default region

        for edge, path in (("e1", "intellij/ct-intellij.zip"), ("e2", "intellij/ct-intellij.zip"),
                           ("e2", "vscode/ct.vsix")):
            code, _, _ = yield fetch(f"{self.d.edge_urls[edge]}/clients/{path}")
            self.assertEqual(code, 200)

        @defer.inlineCallbacks
        def counted():
            page = yield client.get("/dashboard")
            return (stat(page, "dl-intellij"), stat(page, "dl-vscode")) == ("2", "1")

        yield eventually(counted)
        page = yield client.get("/dashboard")
        self.assertEqual(stat(page, "dl-eclipse"), "0")
        self.assertIn("2 edges online", page.text)


    @defer.inlineCallbacks
    def test_usage_page_from_the_locators_database(self):
        for edge, host_name, guests in (("e1", "alice", ("bob", "carol")),
                                        ("e2", "dave", ("bob",))):
            host = SessionClient(reactor, self.d.edge_urls[edge], host_name,
                                 client="vscode/1.90")
            yield host.host()
            self.sessions.append(host)
            for name in guests:
                guest = SessionClient.from_link(reactor, str(host.link), name)
                yield guest.join_link()
                self.sessions.append(guest)
        client = DashboardClient(self.d.locator_url)
        yield client.login(*OPERATOR)

        @defer.inlineCallbacks
        def counted():  # audit entries and snapshots travel through the edges' outboxes
            page = yield client.get("/dashboard/usage")
            today = re.search(r'id="usage-days".*?<tbody><tr><td>[\d-]+</td><td>(\d+)</td>'
                              r'<td>(\d+)</td><td>(\d+|–)</td><td>(\d+|–)</td>', page.text,
                              re.S)
            # Today: 2 sessions, 4 people, and at peak 5 users online (bob on both edges)
            # in 2 sessions at once.
            return (stat(page, "stat-unique-users") == "4" and today is not None
                    and today.groups() == ("2", "4", "5", "2"))

        yield eventually(counted, timeout=30)
        page = yield client.get("/dashboard/usage?days=7")
        self.assertEqual((stat(page, "stat-sessions-started"), stat(page, "stat-session-size")),
                         ("2", "2.50"))
        self.assertIn("<td>vscode</td><td>2</td><td>100 %</td>", page.text)
        self.assertIn("<td>ct-python-client</td><td>3</td><td>100 %</td>", page.text)
        self.assertIn('id="av-use"', page.text)
        self.assertNotIn('id="memory-only"', page.text)
        self.assertIn('href="/dashboard/usage"', page.text)  # in the navigation


class GeneratedPasswordTests(unittest.TestCase):
    """Finding 16: a generated password is stored once in a 0600 file, never logged."""

    timeout = 120

    @defer.inlineCallbacks
    def check_generated(self, plugin: str, env: dict[str, str]):
        path = Path(env["CT_DATA_DIR"]) / "dashboard-password"
        passwords = []
        for what in ("generated and stored", "stored earlier"):  # a restart reuses it
            daemon = Daemon(plugin, {**env, "CT_HTTP_LISTEN": "tcp:0:interface=127.0.0.1"})
            self.addCleanup(daemon.stop)
            port = daemon.port("HTTP")
            daemon.wait_for_log(r"no dashboard password configured \(CT_DASHBOARD_PASSWORD\): "
                                rf"user ctuser, password {what} in " + re.escape(str(path)))
            self.assertEqual(path.stat().st_mode & 0o777, 0o600)
            password = path.read_text().strip()
            self.assertGreaterEqual(len(password), 20)
            passwords.append(password)
            client = DashboardClient(f"http://127.0.0.1:{port}")
            yield client.login("ctuser", "not-" + password, expect=401)
            yield client.login("ctuser", password)
            page = yield client.get("/dashboard")
            self.assertEqual(page.code, 200)
            self.assertIn('id="who">ctuser<', page.text)
            logs = yield client.get("/dashboard/logs")
            self.assertIn("dashboard-password", logs.text)
            self.assertNotIn(password, logs.text)
            self.assertNotIn(password, daemon.log())
            daemon.stop()
        self.assertEqual(passwords[0], passwords[1])

    def test_finding_16_lone_edge_stores_its_generated_password(self):
        return self.check_generated("ctedge", {"CT_PROBE_INTERVAL": "0",
                                               "CT_DATA_DIR": os.path.abspath(self.mktemp())})

    def test_finding_16_locator_stores_its_generated_password(self):
        return self.check_generated("ctlocator", {
            "CT_DATA_DIR": os.path.abspath(self.mktemp()),
            "CT_EDGE_SECRET": "generated-password-test-secret"})
