"""An edge's log for the locator's dashboard, over the link in memory (issue 15, item 5):
``log-lines`` asked by the locator, answered from the edge's log capture, bounded."""

from __future__ import annotations

from twisted.trial import unittest

from ct.dashboard.logs import LogRing, ServerLog
from ct.locator.service import LocatorError
from ct.protocol import link
from tests.locator import test_link_memory as in_memory


class EdgeLogOverTheLinkTests(unittest.SynchronousTestCase):
    connect = in_memory.LinkInMemoryTests.connect
    disconnect = in_memory.LinkInMemoryTests.disconnect

    def setUp(self):
        in_memory.LinkInMemoryTests.setUp(self)  # edge, locator and link in memory
        self.ring = LogRing()
        self.link.server_log = ServerLog(self.ring)

    def ask(self, lines=link.DEFAULT_LOG_LINES):
        d = self.locator.edge_log(self.edge.edge_id, lines)
        self.pump.flush()
        return d

    def test_the_recent_lines_come_back(self):
        self.ring.lines.extend(f"edge line {n}" for n in range(700))
        self.connect()
        answer = self.successResultOf(self.ask())
        self.assertEqual((answer.source, answer.truncated), ("memory", True))
        self.assertEqual(len(answer.lines), link.DEFAULT_LOG_LINES)
        self.assertEqual(answer.lines[-1], "edge line 699")
        answer = self.successResultOf(self.ask(3))
        self.assertEqual(answer.lines, ("edge line 697", "edge line 698", "edge line 699"))
        answer = self.successResultOf(self.ask(700))
        self.assertEqual((len(answer.lines), answer.truncated), (700, False))

    def test_a_huge_log_is_bounded(self):
        self.ring.lines.extend("z" * 9000 for _ in range(2000))
        self.connect()
        answer = self.successResultOf(self.ask(link.MAX_LOG_LINES))
        self.assertTrue(answer.truncated)
        self.assertLessEqual(sum(len(line) + 1 for line in answer.lines), link.MAX_LOG_BYTES)
        self.assertTrue(all(len(line) == link.MAX_LOG_LINE for line in answer.lines))

    def test_an_edge_without_a_log_says_so(self):
        self.link.server_log = None
        self.connect()
        e = self.failureResultOf(self.ask(), LocatorError).value
        self.assertEqual((e.status, e.code, e.message), (409, "not-available",
                                                         "this edge keeps no log"))

    def test_an_edge_that_is_not_connected(self):
        e = self.failureResultOf(self.locator.edge_log("nobody"), LocatorError).value
        self.assertEqual((e.status, e.code), (503, "edge-unavailable"))

    def test_an_edge_that_does_not_answer(self):
        self.connect()
        self.link._admin_request = lambda proto, kind, message: None  # an older edge
        d = self.ask()
        self.clock.advance(5.0)
        self.assertEqual(self.failureResultOf(d, LocatorError).value.status, 504)
