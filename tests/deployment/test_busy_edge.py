"""Placement by CPU end to end (issue 15, item 4): an edge process that burns CPU loses new
sessions to an idle one, the dashboard shows both figures, and the busy edge gets its
share again once it calms down."""

from __future__ import annotations

import collections
import tempfile
import textwrap
from pathlib import Path

from twisted.internet import defer
from twisted.trial import unittest

from tests.dashboard.util import DashboardClient
from tests.deployment.util import OPERATOR, Deployment
from tests.edge.util import sleep

# Imported by the edge's Python at start-up (``sitecustomize`` on its PYTHONPATH): a thread
# that burns CPU in the edge process while the file named by BURN_CPU_WHILE exists.
BURNER = textwrap.dedent('''\
    import os, threading, time

    def _burn(path):
        deadline = time.monotonic() + 300  # bounded, whatever happens to the test
        while os.path.exists(path) and time.monotonic() < deadline:
            end = time.process_time() + 0.05
            while time.process_time() < end:
                pass

    if os.environ.get("BURN_CPU_WHILE"):
        threading.Thread(target=_burn, args=(os.environ["BURN_CPU_WHILE"],),
                         daemon=True).start()
''')


class BusyEdgeTests(unittest.TestCase):
    timeout = 180

    @defer.inlineCallbacks
    def edge_figures(self, dep):
        listing = yield dep.client().edges(OPERATOR)
        return {e["edge"]: e.get("cpu") for e in listing["edges"]}

    @defer.inlineCallbacks
    def wait_figures(self, dep, predicate, timeout: float = 40.0):
        waited, figures = 0.0, None
        while waited < timeout:
            figures = yield self.edge_figures(dep)
            if all(v is not None for v in figures.values()) and predicate(figures):
                return figures
            yield sleep(0.5)
            waited += 0.5
        raise AssertionError(f"CPU figures not as expected within {timeout} s: {figures}")

    @defer.inlineCallbacks
    def place(self, dep, n):
        counts = collections.Counter()
        for _ in range(n):
            answer = yield dep.client().start_session()
            counts[answer["edge"]] += 1
        return counts

    @defer.inlineCallbacks
    def test_a_busy_edge_loses_placements_to_an_idle_one(self):
        hook = Path(tempfile.mkdtemp(prefix="ct-burner-"))
        (hook / "sitecustomize.py").write_text(BURNER)
        burning = hook / "burning"
        burning.write_text("")
        self.addCleanup(lambda: burning.unlink(missing_ok=True))
        dep = Deployment(self)
        dep.start_locator()
        dep.start_edge("busy", PYTHONPATH=str(hook), BURN_CPU_WHILE=str(burning))
        dep.start_edge("idle")
        yield dep.wait_online(["busy", "idle"])
        figures = yield self.wait_figures(dep, lambda f: f["busy"] > 0.6 and f["idle"] < 0.3)

        counts = yield self.place(dep, 8)
        self.assertEqual(counts, {"idle": 8}, figures)

        dashboard = DashboardClient(dep.locator_url)
        yield dashboard.login(*OPERATOR)
        page = yield dashboard.get("/dashboard/edges")
        self.assertIn("<th>CPU</th>", page.text)
        for name in ("busy", "idle"):
            self.assertRegex(page.text, rf'id="cpu-{name}"[^>]*>\d+ %<')

        # Calm again: the CPU figure falls and the edge gets new sessions once more.
        burning.unlink()
        yield self.wait_figures(dep, lambda f: f["busy"] < 0.1)
        yield sleep(10.5)  # the first placements no longer weigh (pending, 10 s)
        counts = yield self.place(dep, 8)
        self.assertGreaterEqual(counts["busy"], 3, counts)
