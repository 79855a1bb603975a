"""Sessions end to end: a real edge on a loopback port and the reference client."""

from __future__ import annotations

from twisted.internet import defer, reactor
from twisted.internet.task import LoopingCall
from twisted.trial import unittest

from ct.client.session import SessionClient
from tests.edge.util import host_and_guests, start_edge, wait_for


class Collector:
    """Collects frames per sender, to check loss, duplication and order."""

    def __init__(self):
        self.by_sender = {}
        self.seqs = []

    def __call__(self, frame):
        self.by_sender.setdefault(frame.sender, []).append(frame.data)
        self.seqs.append(frame.seq)

    def count(self):
        return sum(len(v) for v in self.by_sender.values())


class SessionEndToEndTests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def setup_session(self, guests=2, **env):
        self.service, self.url = start_edge(self, **env)
        names = [f"guest{i}" for i in range(guests)]
        self.host_frames = Collector()
        self.guest_frames = [Collector() for _ in names]
        clients = yield host_and_guests(self, self.url, names, title="pairing", frames={
            "alice": self.host_frames, **dict(zip(names, self.guest_frames))})
        return clients

    @defer.inlineCallbacks
    def test_three_clients_exchange_1000_frames_each_way(self):
        host, g0, g1 = yield self.setup_session(guests=2)
        n = 1000
        for i in range(n):
            host.send(b"h-%d" % i)
            g0.send("g0-%d" % i)  # text payload
            g1.send(b"g1-%d" % i)
        collectors = [self.host_frames] + self.guest_frames
        yield wait_for(lambda: all(c.count() == 2 * n for c in collectors), timeout=60)
        expect = {host.participant: [b"h-%d" % i for i in range(n)],
                  g0.participant: ["g0-%d" % i for i in range(n)],
                  g1.participant: [b"g1-%d" % i for i in range(n)]}
        for me, frames in zip([host, g0, g1], collectors):
            wanted = {pid: data for pid, data in expect.items() if pid != me.participant}
            self.assertEqual(frames.by_sender, wanted)  # nothing lost, duplicated or reordered
            self.assertEqual(frames.seqs, sorted(set(frames.seqs)))

    @defer.inlineCallbacks
    def test_host_cut_mid_stream_resumes_and_misses_nothing(self):
        host, guest = yield self.setup_session(guests=1)
        n = 600
        sent = {"guest": 0, "host": 0}

        def pump():
            for _ in range(5):
                if sent["guest"] < n:
                    guest.send(b"to-host-%d" % sent["guest"])
                    sent["guest"] += 1
                if sent["host"] < n:
                    host.send(b"to-guest-%d" % sent["host"])
                    sent["host"] += 1
            if sent["guest"] == 150:
                host.drop()  # the TCP connection dies mid-stream, both ways
        loop = LoopingCall(pump)
        loop.start(0.005)
        self.addCleanup(lambda: loop.running and loop.stop())
        yield wait_for(lambda: self.host_frames.count() == n
                       and self.guest_frames[0].count() == n, timeout=60)
        self.assertEqual(host.resumes, 1)
        self.assertTrue(host.resume_reports[0]["recovered"])
        self.assertGreater(host.resume_reports[0]["missed"], 0)  # the cut really lost frames
        self.assertEqual(self.host_frames.by_sender[guest.participant],
                         [b"to-host-%d" % i for i in range(n)])
        self.assertEqual(self.guest_frames[0].by_sender[host.participant],
                         [b"to-guest-%d" % i for i in range(n)])
        away = yield guest.next_event("participant-away")
        back = yield guest.next_event("participant-back")
        self.assertEqual((away["participant"], back["participant"]),
                         (host.participant, host.participant))

    @defer.inlineCallbacks
    def test_host_that_does_not_come_back_ends_the_session(self):
        host, guest = yield self.setup_session(guests=1, CT_RESUME_WINDOW="0.5")
        host.auto_resume = False
        host.drop()
        ended = yield guest.next_event("session-ended", timeout=10)
        self.assertEqual(ended["reason"], "host-timeout")
        outcome = yield guest.ended
        self.assertEqual(outcome.code, "session-ended")
        self.assertEqual(self.service.edge.relay.sessions, {})

    @defer.inlineCallbacks
    def test_guest_sees_join_and_leave_events(self):
        host, guest = yield self.setup_session(guests=1)
        late = SessionClient.from_link(reactor, str(host.link), "carol")
        yield late.join_link()
        joined = yield guest.next_event("participant-joined")
        self.assertEqual(joined["participant"]["name"], "carol")
        yield late.leave()
        left = yield host.next_event("participant-left")
        self.assertEqual((left["name"], left["reason"]), ("carol", "left"))
        yield host.leave()
        ended = yield guest.next_event("session-ended")
        self.assertEqual(ended["reason"], "host-left")

    @defer.inlineCallbacks
    def test_direct_frame_goes_to_one_participant(self):
        host, g0, g1 = yield self.setup_session(guests=2)
        host.send(b"only-for-g1", to=g1.participant)
        host.send(b"for-all")
        yield wait_for(lambda: self.guest_frames[0].count() == 1
                       and self.guest_frames[1].count() == 2)
        self.assertEqual(self.guest_frames[0].by_sender[host.participant], [b"for-all"])
        self.assertEqual(self.guest_frames[1].by_sender[host.participant],
                         [b"only-for-g1", b"for-all"])
