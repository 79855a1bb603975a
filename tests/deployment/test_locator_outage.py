"""The locator is down for 60 s while edges produce 5,000 audit entries and one edge restarts.

After the locator returns, its database holds every entry exactly once, and a session that
was active throughout lost no frame.
"""

from __future__ import annotations

import os
import time

from twisted.internet import defer, reactor
from twisted.internet.task import LoopingCall
from twisted.trial import unittest

from ct.client.session import SessionClient
from tests.deployment.util import Deployment
from tests.edge.util import host_and_guests, sleep, wait_for

OUTAGE = float(os.environ.get("CT_TEST_OUTAGE_SECONDS", "60"))
ENTRIES_PER_CYCLE = 4  # session_started, participant_joined, participant_left, session_ended
KINDS = ("session_started", "participant_joined", "participant_left", "session_ended")


class LocatorOutageTests(unittest.TestCase):
    timeout = 600

    @defer.inlineCallbacks
    def cycle(self, url):
        """One short session: host, a guest joins and leaves, the host leaves (4 entries)."""
        host = SessionClient(reactor, url, "host", auto_resume=False)
        yield host.host()
        guest = SessionClient.from_link(reactor, str(host.link), "guest", auto_resume=False)
        yield guest.join_link()
        yield guest.leave()
        yield host.leave()
        return host.session

    @defer.inlineCallbacks
    def test_outage_loses_no_audit_entry_and_no_frame(self):
        d = Deployment(self)
        locator_port = d.start_locator()
        for name in ("e1", "e2", "e3"):
            d.start_edge(name)
        yield d.wait_online(["e1", "e2", "e3"])

        # A session that stays active throughout, on an edge that is not restarted.
        received = []
        host, guest = yield host_and_guests(self, d.edge_urls["e1"], frames={
            "bob": lambda f: received.append(f.data)})
        sent = [0]

        def stream():
            host.send(b"frame-%d" % sent[0])
            sent[0] += 1
        streaming = LoopingCall(stream)
        streaming.start(0.05)
        self.addCleanup(lambda: streaming.running and streaming.stop())

        d.locator.stop()
        stopped_at = time.monotonic()

        cycles = 5000 // ENTRIES_PER_CYCLE
        sessions = []
        urls = [d.edge_urls[n] for n in ("e1", "e2", "e3")]
        restarted = False
        for i in range(cycles):
            if i == cycles // 2 and not restarted:
                # Restart e2 gracefully on the same port and data directory; its outbox
                # (already holding entries for the locator) must survive.
                port = d.edge_port("e2")
                d.edges["e2"].stop()
                d.start_edge("e2", port=port)
                restarted = True
            sid = yield self.cycle(urls[i % 3])
            sessions.append(sid)
        self.assertEqual(len(sessions), 1250)

        remaining = OUTAGE - (time.monotonic() - stopped_at)
        if remaining > 0:
            yield sleep(remaining)
        d.start_locator(locator_port)
        yield d.wait_online(["e1", "e2", "e3"], timeout=60)

        ours = set(sessions)

        def stored():
            rows = d.audit_rows("SELECT session_id, kind, COUNT(*) FROM audit_entries "
                                "WHERE kind IN (?, ?, ?, ?) GROUP BY session_id, kind", KINDS)
            return [r for r in rows if r[0] in ours]

        yield wait_for(lambda: sum(r[2] for r in stored()) >= 5000, timeout=120, step=0.5)
        rows = stored()
        self.assertEqual(sum(r[2] for r in rows), 5000)
        self.assertEqual({r[2] for r in rows}, {1})  # each (session, kind) exactly once
        self.assertEqual(len({r[0] for r in rows}), 1250)
        ids = d.audit_rows("SELECT COUNT(*), COUNT(DISTINCT entry_id) FROM audit_entries")
        self.assertEqual(ids[0][0], ids[0][1])

        streaming.stop()
        total = sent[0]
        yield wait_for(lambda: len(received) == total, timeout=30)
        self.assertEqual(received, [b"frame-%d" % i for i in range(total)])
        self.assertEqual(host.resumes + guest.resumes, 0)
        self.assertGreater(total, OUTAGE * 10)
