"""Hardening of the session relay and the reference client's resume, end to end.

A real edge on a loopback port, real reference clients (``ct.client.session``).
"""

from __future__ import annotations

from twisted.internet import defer, reactor
from twisted.trial import unittest

from ct.client.session import SessionClient
from ct.edge.relay import Limits
from ct.protocol import errors
from ct.protocol.wire import encode_upstream
from tests.edge.test_relay import FakeConnection, RelayTestCase
from tests.edge.util import host_and_guests, start_edge, wait_for


class Collector:
    """Frames received by one client, in arrival order."""

    def __init__(self):
        self.frames = []

    def __call__(self, frame):
        self.frames.append(frame)

    def data_from(self, sender):
        return [f.data for f in self.frames if f.sender == sender]


class RelayHardeningTests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def session(self, guests=2, **env):
        self.service, self.url = start_edge(self, **env)
        self.relay = self.service.edge.relay
        names = ["alice"] + [f"guest{i}" for i in range(guests)]
        self.received = [Collector() for _ in names]
        clients = yield host_and_guests(self, self.url, names[1:], title="pairing",
                                        frames=dict(zip(names, self.received)))
        return clients

    def edge_side(self, client):
        """The edge's connection object for ``client``'s participant."""
        return self.relay.sessions[client.session].participants[client.participant].conn

    # ------------------------------------------------------------ finding 26

    @defer.inlineCallbacks
    def test_finding_26_kick_of_departed_guest_is_an_error_reply(self):
        host, stays, goes = yield self.session(guests=2)
        gone = goes.participant
        yield goes.leave()
        left = yield host.next_event("participant-left")
        self.assertEqual(left["participant"], gone)
        host.kick(gone)  # the host's click raced the guest's departure
        error = yield host.next_event("error")
        self.assertEqual(error["code"], errors.UNKNOWN_TARGET.name)
        self.assertIn(str(gone), error["message"])
        # The host's connection is untouched: no close, no resume, the session goes on.
        host.send(b"still here")
        yield wait_for(lambda: self.received[1].data_from(host.participant) == [b"still here"])
        self.assertIsNotNone(host._proto)
        self.assertEqual(host.resumes, 0)
        self.assertFalse(host.ended.called)
        self.assertIn(host.session, self.relay.sessions)
        self.assertEqual(self.relay.stats.errors.get(errors.NOT_FOUND.name), None)
        # Kicking a guest who is there still removes it, and that close is final for it.
        host.kick(stays.participant)
        outcome = yield stays.ended
        self.assertEqual(outcome.code, errors.REMOVED.name)
        self.assertEqual(stays.resumes, 0)
        self.assertFalse(host.ended.called)

    @defer.inlineCallbacks
    def test_finding_26_client_resumes_after_a_resumable_close(self):
        host, guest = yield self.session(guests=1)
        # An edge from before the fix closed the host with not-found (4004): the seat is
        # kept for the resume window, so the client must resume rather than give up.
        self.edge_side(host).close(errors.NOT_FOUND, "no participant 9 in this session")
        yield wait_for(lambda: host.resumes == 1 and host._handshake is None
                       and host._proto is not None)
        self.assertFalse(host.ended.called)
        host.send(b"after resume")
        yield wait_for(lambda: self.received[1].data_from(host.participant) == [b"after resume"])
        # The same for a close with no error message at all (a plain websocket close).
        self.edge_side(guest).sendCloseFrame(code=1001, isReply=False)
        yield wait_for(lambda: guest.resumes == 1 and guest._handshake is None
                       and guest._proto is not None)
        guest.send(b"guest back")
        yield wait_for(lambda: self.received[0].data_from(guest.participant) == [b"guest back"])
        self.assertFalse(guest.ended.called)
        self.assertEqual(len(self.relay.sessions), 1)

    @defer.inlineCallbacks
    def test_finding_26_final_closes_end_the_session_for_the_client(self):
        host, guest = yield self.session(guests=1)
        self.edge_side(guest).close(errors.SESSION_ENDED, "session ended: ended-by-admin")
        outcome = yield guest.ended
        self.assertEqual(outcome.code, errors.SESSION_ENDED.name)
        self.assertEqual(guest.resumes, 0)
        # A resume the edge refuses (here: the seat is gone) is final too, not retried.
        self.relay.remove(self.relay.sessions[host.session], guest.participant)
        late = SessionClient(reactor, self.url, "guest0")
        late.session, late.participant = guest.session, guest.participant
        late.resume_token, late.last_seq = guest.resume_token, guest.last_seq
        late._resume(0)
        outcome = yield late.ended
        self.assertEqual(outcome.code, errors.NOT_FOUND.name)
        self.assertEqual(late.resumes, 0)

    # ------------------------------------------------------------ finding 27

    @defer.inlineCallbacks
    def test_finding_27_participants_who_missed_nothing_of_the_overflow_are_recovered(self):
        # The default replay log (4096 frames); a burst allowance for the 6,003 frames.
        host, g1, g2, g3 = yield self.session(guests=3, CT_RATE_BURST=20000)
        session = self.relay.sessions[host.session]
        # Host and guest 2 have everything so far (g3's arrival included), then stop
        # reading (their TCP connections stall, the edge does not know yet).
        yield wait_for(lambda: host.last_seq == g2.last_seq == session.seq)
        for c in (host, g2):
            c._proto.transport.pauseProducing()
        seen = {host.participant: host.last_seq, g2.participant: g2.last_seq}
        n = 6000
        for i in range(n):
            g3.send(b"to-g1-%d" % i, to=g1.participant)
        g3.send(b"all-0")
        g3.send(b"all-1")
        g3.send(b"to-g2", to=g2.participant)
        yield wait_for(lambda: session.frames == n + 3, timeout=60)
        yield wait_for(lambda: len(self.received[1].frames) == n + 2, timeout=60)
        self.assertGreater(session.log[0].seq, max(seen.values()) + 1000)  # it overflowed
        # The stalled connections die; both clients resume with what they had seen.
        host.drop()
        g2.drop()
        yield wait_for(lambda: host.resumes == 1 and g2.resumes == 1, timeout=30)
        yield wait_for(lambda: len(self.received[0].data_from(g3.participant)) >= 2
                       and len(self.received[2].data_from(g3.participant)) >= 3)
        host_report, g2_report = host.resume_reports[0], g2.resume_reports[0]
        self.assertTrue(host_report["recovered"], host_report)
        self.assertTrue(g2_report["recovered"], g2_report)
        # Exactly their missed frames: none of the 6,000, nothing twice.
        self.assertEqual(self.received[0].data_from(g3.participant), [b"all-0", b"all-1"])
        self.assertEqual(self.received[2].data_from(g3.participant),
                         [b"all-0", b"all-1", b"to-g2"])
        self.assertEqual(self.relay.stats.resumes_unrecovered, 0)
        self.assertEqual(len(self.received[1].data_from(g3.participant)), n + 2)

    def test_finding_26_which_closes_are_final(self):
        from ct.client.session import close_is_final

        for code in ("session-ended", "removed", "resume-expired", "forbidden", "superseded",
                     "bad-message", "unsupported-version", "client-too-old"):
            self.assertTrue(close_is_final(code, 4000), code)
        for code in ("not-found", "rate-limited", "handshake-timeout", "shutting-down",
                     "something-new"):
            self.assertFalse(close_is_final(code, 4004), code)
        for close in (1000, 1001, 1006, 1011, None):
            self.assertFalse(close_is_final(None, close), close)
        for close in (1002, 1007, 1009):
            self.assertTrue(close_is_final(None, close), close)


# ---------------------------------------------------------------- finding 27, pure relay


class RecoveredPerParticipantTests(RelayTestCase):
    """``recovered`` is decided per participant: only what was addressed to it counts."""

    def limits(self):
        return Limits(resume_window=30.0, replay_max_frames=100, replay_max_bytes=1_000_000,
                      max_participants=10, max_people=10, ack_every=1000)

    def resume(self, p, last_seq):
        conn = FakeConnection()
        self.relay.resume(conn, {"type": "resume", "session": p.session.id, "participant": p.id,
                                 "token": p.token, "lastSeq": last_seq})
        return conn.controls[0], conn

    def test_finding_27_overflow_of_frames_to_one_guest_leaves_the_others_recovered(self):
        host, hconn = self.host()
        g1, g1conn = self.join(host, "g1")
        g2, g2conn = self.join(host, "g2")
        g3, _ = self.join(host, "g3")
        # Everyone's last seen seq now; their connections then stop delivering (half-open).
        last = {p.id: p.session.seq for p in (host, g1, g2)}
        for i in range(6000):
            self.relay.data(g3, encode_upstream(b"to-g1-%d" % i, to=g1.id))
        for i in range(2):
            self.relay.data(g3, encode_upstream(b"all-%d" % i))
        self.relay.data(g3, encode_upstream(b"to-g2", to=g2.id))
        self.assertGreater(host.session.log[0].seq, last[host.id] + 5000)  # it overflowed

        reply, conn = self.resume(host, last[host.id])
        self.assertEqual((reply["recovered"], reply["missed"]), (True, 2))
        self.assertEqual([p for _, _, p in conn.frames()], [b"all-0", b"all-1"])
        reply, conn = self.resume(g2, last[g2.id])
        self.assertEqual((reply["recovered"], reply["missed"]), (True, 4))  # + host's back
        self.assertEqual([p for _, _, p in conn.frames()], [b"all-0", b"all-1", b"to-g2"])
        self.assertEqual([e["participant"] for e in conn.events("participant-back")], [host.id])
        reply, _ = self.resume(g1, last[g1.id])
        self.assertFalse(reply["recovered"])  # its own frames did overflow
        self.assertEqual((self.relay.stats.resumes, self.relay.stats.resumes_unrecovered), (3, 1))

    def test_finding_27_own_broadcasts_overflowing_do_not_count(self):
        host, _ = self.host()
        guest, _ = self.join(host, "g")
        before = host.session.seq
        for _ in range(150):
            self.relay.data(host, encode_upstream(b"x"))
        reply, conn = self.resume(host, before)
        self.assertEqual((reply["recovered"], reply["missed"]), (True, 0))
        reply, _ = self.resume(guest, before)
        self.assertFalse(reply["recovered"])

    def test_finding_27_a_lost_broadcast_of_another_sender_counts(self):
        host, _ = self.host()
        guest, _ = self.join(host, "g")
        before = host.session.seq
        self.relay.data(guest, encode_upstream(b"from-guest"))
        guest_seq = host.session.seq
        for _ in range(150):  # pushes the guest's broadcast, then the host's own, out
            self.relay.data(host, encode_upstream(b"x"))
        reply, _ = self.resume(host, before)
        self.assertFalse(reply["recovered"])  # the guest's broadcast to it is gone
        reply, _ = self.resume(host, guest_seq)
        self.assertTrue(reply["recovered"])
        reply, _ = self.resume(guest, guest_seq)
        self.assertFalse(reply["recovered"])  # the host's broadcasts to it are gone

    def test_finding_27_lost_directed_frame_counts_only_for_its_target(self):
        host, _ = self.host()
        g1, _ = self.join(host, "g1")
        g2, _ = self.join(host, "g2")
        before = host.session.seq
        self.relay.data(host, encode_upstream(b"secret", to=g2.id))
        for _ in range(120):
            self.relay.data(host, encode_upstream(b"y", to=g1.id))
        self.assertFalse(self.resume(g2, before)[0]["recovered"])
        self.assertTrue(self.resume(g2, before + 1)[0]["recovered"])
        self.assertTrue(self.resume(host, before)[0]["recovered"])
