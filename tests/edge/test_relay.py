"""The relay core, driven with fake connections and a Clock (no sockets)."""

from __future__ import annotations

import json

from twisted.internet.task import Clock
from twisted.trial import unittest

from ct.edge.relay import Limits, Relay
from ct.protocol import errors
from ct.protocol.errors import ProtocolError
from ct.protocol.wire import decode_downstream, encode_upstream


class FakeConnection:
    """Records what the relay sends; decodes frames like a client would."""

    def __init__(self, peer_host="192.0.2.1"):
        self.peer_host = peer_host
        self.controls = []
        self.received = []  # (seq, sender, payload) for frames, (seq, 'event', dict) for events
        self.closed = None

    def send(self, out):
        if out.is_binary:
            flags, seq, sender, payload = decode_downstream(out.payload)
            self.received.append((seq, sender, payload))
        else:
            body = json.loads(out.payload)
            self.received.append((body["seq"], "event", body))

    def send_control(self, message):
        self.controls.append(message)

    def close(self, code, message):
        self.closed = code

    def frames(self):
        return [(seq, sender, payload) for seq, sender, payload in self.received
                if sender != "event"]

    def events(self, kind=None):
        return [body for _, sender, body in self.received
                if sender == "event" and (kind is None or body["type"] == kind)]


class RelayTestCase(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.relay = Relay(self.clock, self.limits())
        self.notes = []
        self.relay.add_listener(lambda kind, s, p, r: self.notes.append((kind, r)))

    def limits(self):
        return Limits(resume_window=30.0, replay_max_frames=100, replay_max_bytes=10_000,
                      max_participants=3, max_sessions_per_host=2, max_people=5, ack_every=4)

    def host(self, conn=None):
        conn = conn or FakeConnection()
        p = self.relay.host(conn, {"type": "host", "name": "alice"})
        return p, conn

    def join(self, host, name="bob", conn=None):
        conn = conn or FakeConnection()
        reply_token = host.session.join_token
        p = self.relay.join(conn, {"type": "join", "session": host.session.id,
                                   "token": reply_token, "name": name})
        return p, conn


class HandshakeTests(RelayTestCase):
    def test_host_gets_session_secret_and_join_token(self):
        p, conn = self.host()
        reply = conn.controls[0]
        self.assertEqual(reply["type"], "hosted")
        self.assertEqual(reply["session"], p.session.id)
        self.assertEqual(reply["participant"], 1)
        self.assertTrue(len(reply["hostSecret"]) >= 24)
        self.assertNotEqual(reply["hostSecret"], reply["joinToken"])
        self.assertEqual(self.notes, [("session-started", None)])

    def test_join_announces_to_others_not_to_joiner(self):
        host, hconn = self.host()
        guest, gconn = self.join(host)
        self.assertEqual(gconn.controls[0]["type"], "joined")
        self.assertEqual([p["name"] for p in gconn.controls[0]["participants"]], ["alice", "bob"])
        joined = hconn.events("participant-joined")
        self.assertEqual(joined[0]["participant"]["name"], "bob")
        self.assertEqual(gconn.events(), [])

    def test_wrong_join_token_is_forbidden(self):
        host, _ = self.host()
        e = self.assertRaises(ProtocolError, self.relay.join, FakeConnection(),
                              {"type": "join", "session": host.session.id,
                               "token": "x" * 24, "name": "eve"})
        self.assertEqual(e.code, errors.FORBIDDEN)

    def test_unknown_session(self):
        e = self.assertRaises(ProtocolError, self.relay.join, FakeConnection(),
                              {"type": "join", "session": "nope", "token": "t", "name": "eve"})
        self.assertEqual(e.code, errors.NOT_FOUND)

    def test_missing_name_is_bad_message(self):
        e = self.assertRaises(ProtocolError, self.relay.host, FakeConnection(), {"type": "host"})
        self.assertEqual(e.code, errors.BAD_MESSAGE)

    def test_session_full(self):
        host, _ = self.host()
        self.join(host, "b")
        self.join(host, "c")
        e = self.assertRaises(ProtocolError, self.join, host, "d")
        self.assertEqual(e.code, errors.SESSION_FULL)

    def test_sessions_per_host_address(self):
        self.host(FakeConnection("198.51.100.7"))
        self.host(FakeConnection("198.51.100.7"))
        e = self.assertRaises(ProtocolError, self.host, FakeConnection("198.51.100.7"))
        self.assertEqual(e.code, errors.TOO_MANY_SESSIONS)
        self.host(FakeConnection("198.51.100.8"))  # another address may

    def test_edge_capacity_counts_people_in_sessions(self):
        a, _ = self.host(FakeConnection("198.51.100.1"))
        self.join(a, "b")
        self.join(a, "c")
        b, _ = self.host(FakeConnection("198.51.100.2"))
        self.join(b, "e")
        self.assertEqual(self.relay.people, 5)
        e = self.assertRaises(ProtocolError, self.join, b, "f")
        self.assertEqual(e.code, errors.EDGE_FULL)
        self.relay.leave(a)  # ends a's session: three seats free again
        self.assertEqual(self.relay.people, 2)
        self.join(b, "f")


class TrafficTests(RelayTestCase):
    def test_broadcast_reaches_everyone_but_sender_in_order(self):
        host, hconn = self.host()
        b, bconn = self.join(host, "b")
        c, cconn = self.join(host, "c")
        for i in range(10):
            self.relay.data(host, encode_upstream(b"h%d" % i))
            self.relay.data(b, encode_upstream(b"b%d" % i))
        self.assertEqual([p for _, s, p in cconn.frames() if s == host.id],
                         [b"h%d" % i for i in range(10)])
        self.assertEqual([p for _, s, p in cconn.frames() if s == b.id],
                         [b"b%d" % i for i in range(10)])
        self.assertEqual([p for _, s, p in hconn.frames()], [b"b%d" % i for i in range(10)])
        seqs = [s for s, _, _ in cconn.received]
        self.assertEqual(seqs, sorted(seqs))

    def test_direct_frame_reaches_only_its_target(self):
        host, hconn = self.host()
        b, bconn = self.join(host, "b")
        c, cconn = self.join(host, "c")
        self.relay.data(host, encode_upstream(b"secret-for-c", to=c.id))
        self.assertEqual([p for _, _, p in cconn.frames()], [b"secret-for-c"])
        self.assertEqual(bconn.frames(), [])

    def test_unknown_target_is_an_error_not_a_close(self):
        host, hconn = self.host()
        self.relay.data(host, encode_upstream(b"x", to=99))
        self.assertEqual(hconn.controls[-1]["code"], "unknown-target")
        self.assertIsNone(hconn.closed)

    def test_short_frame_and_unknown_flags(self):
        host, _ = self.host()
        e = self.assertRaises(ProtocolError, self.relay.data, host, b"\x00\x00")
        self.assertEqual(e.code, errors.BAD_MESSAGE)
        e = self.assertRaises(ProtocolError, self.relay.data, host, b"\x80\x00\x00\x00\x00x")
        self.assertEqual(e.code, errors.BAD_MESSAGE)

    def test_edge_acknowledges_received_frames(self):
        host, hconn = self.host()
        for _ in range(8):
            self.relay.data(host, encode_upstream(b"x"))
        acks = [c["received"] for c in hconn.controls if c["type"] == "ack"]
        self.assertEqual(acks, [4, 8])

    def test_log_is_trimmed_by_acks(self):
        host, hconn = self.host()
        b, bconn = self.join(host, "b")
        for _ in range(20):
            self.relay.data(host, encode_upstream(b"x"))
        session = host.session
        self.assertEqual(len(session.log), 21)  # + the join event
        self.relay.ack(b, {"type": "ack", "seq": session.seq})
        self.relay.ack(host, {"type": "ack", "seq": session.seq})
        self.assertEqual(len(session.log), 0)

    def test_ack_ahead_of_session_is_refused(self):
        host, _ = self.host()
        e = self.assertRaises(ProtocolError, self.relay.ack, host, {"type": "ack", "seq": 99})
        self.assertEqual(e.code, errors.BAD_MESSAGE)


class ResumeTests(RelayTestCase):
    def resume(self, p, last_seq, conn=None):
        conn = conn or FakeConnection()
        self.relay.resume(conn, {"type": "resume", "session": p.session.id, "participant": p.id,
                                 "token": p.token, "lastSeq": last_seq})
        return conn

    def test_resume_replays_exactly_what_was_missed(self):
        host, hconn = self.host()
        b, bconn = self.join(host, "b")
        for i in range(5):
            self.relay.data(b, encode_upstream(b"before%d" % i))
        last = hconn.received[-1][0]
        self.relay.connection_lost(host, hconn)
        for i in range(7):
            self.relay.data(b, encode_upstream(b"missed%d" % i))
        self.assertEqual(bconn.events("participant-away")[0]["participant"], host.id)
        new = self.resume(host, last)
        reply = new.controls[0]
        self.assertEqual((reply["type"], reply["recovered"], reply["missed"]), ("resumed", True, 7))
        self.assertEqual([p for _, _, p in new.frames()], [b"missed%d" % i for i in range(7)])
        self.assertEqual(bconn.events("participant-back")[0]["participant"], host.id)
        self.relay.data(b, encode_upstream(b"after"))
        self.assertEqual(new.frames()[-1][2], b"after")

    def test_resume_reports_what_the_edge_received(self):
        host, hconn = self.host()
        self.join(host, "b")
        for _ in range(3):
            self.relay.data(host, encode_upstream(b"x"))
        self.relay.connection_lost(host, hconn)
        new = self.resume(host, 0)
        self.assertEqual(new.controls[0]["received"], 3)

    def test_wrong_resume_token(self):
        host, hconn = self.host()
        self.relay.connection_lost(host, hconn)
        e = self.assertRaises(ProtocolError, self.relay.resume, FakeConnection(),
                              {"type": "resume", "session": host.session.id, "participant": 1,
                               "token": "wrong", "lastSeq": 0})
        self.assertEqual(e.code, errors.FORBIDDEN)

    def test_resume_while_old_connection_lingers_supersedes_it(self):
        host, hconn = self.host()
        new = self.resume(host, 0)
        self.assertEqual(hconn.closed, errors.SUPERSEDED)
        self.relay.connection_lost(host, hconn)  # late close of the old socket: ignored
        self.assertIs(host.conn, new)

    def test_overflowed_log_says_not_recovered(self):
        host, hconn = self.host()
        b, bconn = self.join(host, "b")
        self.relay.connection_lost(b, bconn)
        for _ in range(150):  # log keeps 100
            self.relay.data(host, encode_upstream(b"x"))
        new = self.resume(b, 1)
        self.assertFalse(new.controls[0]["recovered"])
        self.assertEqual(self.relay.stats.resumes_unrecovered, 1)

    def test_host_not_back_in_window_ends_session_and_guests_are_told(self):
        host, hconn = self.host()
        b, bconn = self.join(host, "b")
        self.relay.connection_lost(host, hconn)
        self.clock.advance(29)
        self.assertIn(host.session.id, self.relay.sessions)
        self.clock.advance(2)
        self.assertNotIn(host.session.id, self.relay.sessions)
        self.assertEqual(bconn.events("session-ended")[0]["reason"], "host-timeout")
        self.assertEqual(bconn.closed, errors.SESSION_ENDED)
        self.assertEqual(self.relay.people, 0)
        self.assertIn(("session-ended", "host-timeout"), self.notes)

    def test_guest_not_back_in_window_is_dropped(self):
        host, hconn = self.host()
        b, bconn = self.join(host, "b")
        self.relay.connection_lost(b, bconn)
        self.clock.advance(31)
        left = hconn.events("participant-left")
        self.assertEqual((left[0]["participant"], left[0]["reason"]), (b.id, "timeout"))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        e = self.assertRaises(ProtocolError, self.resume, b, 0)
        self.assertEqual(e.code, errors.RESUME_EXPIRED)

    def test_resume_cancels_the_timer(self):
        host, hconn = self.host()
        self.relay.connection_lost(host, hconn)
        self.resume(host, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(100)
        self.assertIn(host.session.id, self.relay.sessions)


class DepartureTests(RelayTestCase):
    def test_host_leaving_ends_session(self):
        host, hconn = self.host()
        b, bconn = self.join(host, "b")
        self.relay.leave(host)
        self.assertEqual(bconn.events("session-ended")[0]["reason"], "host-left")
        self.assertIsNone(hconn.closed)  # the host's own socket closes normally
        self.assertEqual(self.relay.sessions, {})

    def test_host_can_remove_a_guest(self):
        host, hconn = self.host()
        b, bconn = self.join(host, "b")
        self.relay.kick(host, {"type": "kick", "participant": b.id})
        self.assertEqual(bconn.closed, errors.REMOVED)
        self.assertEqual(hconn.events("participant-left")[0]["reason"], "removed")

    def test_guest_cannot_remove(self):
        host, _ = self.host()
        b, _ = self.join(host, "b")
        e = self.assertRaises(ProtocolError, self.relay.kick, b, {"type": "kick",
                                                                   "participant": host.id})
        self.assertEqual(e.code, errors.NOT_ALLOWED)


class SessionIdTests(unittest.TestCase):
    def test_a_session_id_never_starts_with_a_dash(self):
        """``ctctl kick ID`` would read such an id as an option: the edge skips it."""
        drawn = iter(["-iWq-_bDr0rO", "--x", "ok-id_1"])
        relay = Relay(Clock(), Limits(), token=lambda n: next(drawn))
        self.assertEqual(relay._new_session_id(), "ok-id_1")
