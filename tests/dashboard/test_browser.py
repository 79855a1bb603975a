"""The dashboard in headless Chromium against a real 1-locator/2-edge deployment.

Screenshots go to ``test-artifacts/dashboard/``.
"""

from __future__ import annotations

import csv
import json

from twisted.internet import defer, reactor
from twisted.trial import unittest

from ct.client.session import SessionClient
from tests.dashboard.browser import Browser, missing, run
from tests.deployment.util import OPERATOR, Deployment
from tests.edge.util import close_all, wait_for


class BrowserTests(unittest.TestCase):
    timeout = 240

    def setUp(self):
        reason = missing()
        if reason:
            raise unittest.SkipTest(reason)
        self.d = Deployment(self)
        self.d.start_locator()
        for name in ("e1", "e2"):
            self.d.start_edge(name)
        self.clients = []
        self.addCleanup(lambda: close_all(self.clients))
        return self.d.wait_online(["e1", "e2"])

    @defer.inlineCallbacks
    def host_via_locator(self, n, name="alice"):
        placed = []
        for _ in range(n):
            answer = yield self.d.client().start_session()
            host = SessionClient(reactor, answer["server"], name)
            yield host.host()
            self.clients.append(host)
            placed.append(answer["edge"])
        return placed

    @defer.inlineCallbacks
    def test_log_in_suspend_resume_sessions_and_export_audit(self):
        base = self.d.locator_url
        b = yield run(Browser, self)

        def log_in():
            b.driver.get(base + "/dashboard/edges")
            b.wait(lambda: "/dashboard/login" in b.driver.current_url, what="login redirect")
            b.screenshot("01-login")
            b.find("#user").send_keys(OPERATOR[0])
            b.find("#password").send_keys(OPERATOR[1])
            b.find("#login").click()
            b.wait(lambda: b.driver.current_url.endswith("/dashboard/edges"),
                   what="back on the edges page")
            b.wait(lambda: b.text("#state-e1") == "online" and b.text("#state-e2") == "online",
                   what="both edges online")
            b.screenshot("02-edges")
            return b.text("#who")

        who = yield run(log_in)
        self.assertEqual(who, OPERATOR[0])

        def suspend_e1():
            b.click_and_confirm("#suspend-e1")
            b.wait(lambda: b.text("#state-e1") == "suspended", what="e1 suspended")
            b.screenshot("03-edge-suspended")
            return b.text(".flash-ok")

        flash = yield run(suspend_e1)
        self.assertIn("Edge e1 suspended", flash)
        placed = yield self.host_via_locator(4)
        self.assertEqual(placed, ["e2"] * 4)

        # Sessions page: who is where; remove a guest, end a session.
        host = self.clients[0]
        guest = SessionClient(reactor, host.server, "bob")
        guest.auto_resume = False
        self.clients.append(guest)
        yield guest.join(host.session, host.join_token)

        def sessions_page():
            b.driver.get(base + "/dashboard/sessions")
            b.wait(lambda: len(b.driver.find_elements("css selector", "#sessions tbody tr"))
                   == 4, what="4 sessions listed")
            b.screenshot("04-sessions")
            row = b.text(f"#session-{host.session}")
            b.click_and_confirm(f"#remove-{host.session}-{guest.participant}")
            b.wait(lambda: "removed" in b.text(".flash-ok"), what="removal confirmed")
            b.click_and_confirm(f"#end-{self.clients[1].session}")
            b.wait(lambda: "ended" in b.text(".flash-ok"), what="end confirmed")
            return row

        row = yield run(sessions_page)
        self.assertIn("alice", row)
        self.assertIn("bob", row)
        self.assertIn("e2", row)
        yield wait_for(lambda: guest._proto is None, timeout=10)
        yield wait_for(lambda: self.clients[1]._proto is None, timeout=10)

        def resume_e1():
            b.driver.get(base + "/dashboard/edges")
            b.find("#resume-e1").click()
            b.wait(lambda: b.text("#state-e1") == "online", what="e1 online again")
            b.screenshot("05-edge-resumed")

        yield run(resume_e1)
        placed = yield self.host_via_locator(2)
        self.assertIn("e1", placed)  # the emptiest edge takes new sessions again

        def export_audit():
            b.driver.get(base + "/dashboard/audit")
            b.wait(lambda: "edge_suspended" in b.text("#audit"), what="audit entries")
            b.screenshot("06-audit")
            b.find("#export-csv").click()
            path = b.downloaded(".csv")
            b.driver.get(base + "/dashboard/audit?kind=edge_resumed")
            b.find("#export-json").click()
            return path.read_text(), b.downloaded(".json").read_text()

        csv_text, json_text = yield run(export_audit)
        rows = list(csv.DictReader(csv_text.splitlines()))
        by_kind = {}
        for r in rows:
            by_kind.setdefault(r["kind"], []).append(r)
        for kind in ("dashboard_login", "edge_suspended", "edge_resumed", "participant_removed",
                     "session_ended_by_admin"):
            self.assertIn(kind, by_kind)
            self.assertEqual(by_kind[kind][0]["user"], OPERATOR[0])
        self.assertEqual(by_kind["edge_suspended"][0]["edge"], "e1")
        self.assertIn("session_started", by_kind)  # edges' own entries reach the locator
        entries = json.loads(json_text)["entries"]
        self.assertEqual([(e["kind"], e["edge"]) for e in entries], [("edge_resumed", "e1")])

        def overview_and_logs():
            b.driver.get(base + "/dashboard?range=hour")
            b.wait(lambda: b.text("#stat-sessions") != "", what="overview numbers")
            b.screenshot("07-overview")
            b.driver.get(base + "/dashboard/logs")
            b.screenshot("08-logs")
            b.driver.get(base + "/dashboard/regions")
            b.screenshot("09-regions")
            b.driver.get(base + "/dashboard/integrations")
            b.screenshot("10-integrations")
            b.driver.get(base + "/dashboard/usage")
            b.wait(lambda: b.text("#stat-unique-users") not in ("", "0"), what="usage numbers")
            b.screenshot("11-usage")
            b.find("form.logout button").click()
            b.wait(lambda: "/dashboard/login" in b.driver.current_url, what="logged out")
            b.driver.get(base + "/dashboard")
            return b.driver.current_url

        url = yield run(overview_and_logs)
        self.assertIn("/dashboard/login", url)
