"""Hardening of the session relay and the reference client's resume, end to end.

A real edge on a loopback port, real reference clients (``ct.client.session``).
"""

from __future__ import annotations

from twisted.internet import defer, reactor
from twisted.trial import unittest

from ct.client.session import SessionClient
from ct.protocol import errors
from tests.edge.util import close_all, start_edge, wait_for


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
        self.received = [Collector()]
        host = SessionClient(reactor, self.url, "alice", on_frame=self.received[0])
        yield host.host(title="pairing")
        clients = [host]
        for i in range(guests):
            self.received.append(Collector())
            guest = SessionClient.from_link(reactor, str(host.link), f"guest{i}",
                                            on_frame=self.received[-1])
            yield guest.join_link()
            clients.append(guest)
        self.addCleanup(close_all, clients)
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
