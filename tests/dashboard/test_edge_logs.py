"""Edge logs in multi-server mode (issue 15, item 5): the locator's dashboard shows an
edge's recent log lines, fetched over the edge's link (no port of the edge is opened for
it), against a real locator and real edges."""

from __future__ import annotations

import html
import re

from twisted.internet import defer
from twisted.trial import unittest

from tests.dashboard.util import DashboardClient
from tests.deployment.util import OPERATOR, Deployment


def log_text(page) -> str:
    match = re.search(r'<pre class="log" id="log">(.*?)</pre>', page.text, re.S)
    assert match, f"no log on the page:\n{page.text[:3000]}"
    return html.unescape(match.group(1))


class EdgeLogPageTests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def test_an_edges_log_over_its_link(self):
        dep = Deployment(self)
        dep.start_locator()
        dep.start_edge("e1")
        dep.start_edge("e2")
        yield dep.wait_online(["e1", "e2"])
        dashboard = DashboardClient(dep.locator_url)
        yield dashboard.login(*OPERATOR)

        edges = yield dashboard.get("/dashboard/edges")
        self.assertIn('href="/dashboard/edges/e1/log"', edges.text)
        page = yield dashboard.get("/dashboard/edges/e1/log")
        self.assertEqual(page.code, 200)
        self.assertIn("Log of edge e1", page.text)
        self.assertIn("fetched over its link", page.text)
        text = log_text(page)
        # The edge's own log (its twistd log file), not the locator's.
        self.assertIn("edge e1 will register with the locator at", text)
        self.assertIn("registered with the locator at", text)
        self.assertNotIn("edge e2 will register", text)
        self.assertNotIn("ct locator", text)
        self.assertIn(f"file {dep.edges['e1'].log_path}", html.unescape(page.text))
        other = yield dashboard.get("/dashboard/edges/e2/log")
        self.assertIn("edge e2 will register with the locator at", log_text(other))
        self.assertNotIn("the locator suspended this edge", log_text(other))

        # What the edge logs later shows on the next fetch.
        yield dashboard.action("/dashboard/edges/e2/suspend", page="/dashboard/edges")
        yield dep.wait_edges(lambda s: s.get("e2") == "suspended")
        again = yield dashboard.get("/dashboard/edges/e2/log")
        self.assertIn("the locator suspended this edge", log_text(again))

        dep.edges["e1"].stop()
        yield dep.wait_edges(lambda s: s.get("e1") in ("link-lost", "unavailable"))
        gone = yield dashboard.get("/dashboard/edges/e1/log")
        self.assertIn('id="edge-log-error"', gone.text)
        self.assertIn("could not be fetched: edge 'e1' is not connected", gone.text)
        unknown = yield dashboard.get("/dashboard/edges/nobody/log")
        self.assertIn("could not be fetched", unknown.text)
        # The page needs a log-in like every other.
        anonymous = DashboardClient(dep.locator_url)
        refused = yield anonymous.get("/dashboard/edges/e2/log")
        self.assertEqual(refused.code, 303)
