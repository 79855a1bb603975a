"""Team presence end to end over real websockets."""

from __future__ import annotations

from twisted.internet import defer, reactor
from twisted.trial import unittest

from ct.client.presence import PresenceClient
from ct.client.session import SessionClient
from ct.common.tokens import team_token
from tests.edge.util import BASE_ENV, start_edge

SECRET = BASE_ENV["CT_TEAM_SECRET"]


class PresenceTests(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.service, self.url = start_edge(self)

    def member(self, user, team="core", token=None):
        client = PresenceClient(reactor, self.url, team, token or team_token(SECRET, team), user)
        self.addCleanup(lambda: client._proto and client.close())
        return client

    @defer.inlineCallbacks
    def test_member_sees_another_come_online_and_go_offline_within_2s(self):
        alice = self.member("alice")
        state = yield alice.connect()
        self.assertEqual([m["user"] for m in state["members"]], ["alice"])
        bob = self.member("bob")
        start = reactor.seconds()
        yield bob.connect()
        online = yield alice.next_event("member-online", timeout=2)
        self.assertEqual(online["user"], "bob")
        yield bob.close()
        offline = yield alice.next_event("member-offline", timeout=2)
        self.assertEqual(offline["user"], "bob")
        self.assertLess(reactor.seconds() - start, 4)
        self.assertEqual(set(alice.members), {"alice"})

    @defer.inlineCallbacks
    def test_member_sees_team_session_start_and_end(self):
        alice = self.member("alice")
        yield alice.connect()
        host = SessionClient(reactor, self.url, "bob")
        yield host.host(title="review", team="core", team_token=team_token(SECRET, "core"))
        started = yield alice.next_event("session-started", timeout=2)
        self.assertEqual((started["session"], started["host"], started["title"]),
                         (host.session, "bob", "review"))
        guest = SessionClient.from_link(reactor, str(host.link), "carol")
        yield guest.join_link()
        updated = yield alice.next_event("session-updated", timeout=2)
        self.assertEqual(updated["participants"], 2)
        yield host.leave()
        ended = yield alice.next_event("session-ended", timeout=2)
        self.assertEqual(ended["session"], host.session)
        self.assertEqual(alice.sessions, {})
        yield guest.ended

    @defer.inlineCallbacks
    def test_other_teams_see_nothing(self):
        alice = self.member("alice", team="core")
        yield alice.connect()
        other = self.member("mallory", team="other")
        yield other.connect()
        yield self.member("bob", team="core").connect()
        yield alice.next_event("member-online", timeout=2)
        self.assertEqual(other.events.pending, [])

    @defer.inlineCallbacks
    def test_wrong_team_token_is_refused(self):
        eve = self.member("eve", token=team_token("another-secret", "core"))
        with self.assertRaises(ConnectionError) as caught:
            yield eve.connect()
        self.assertIn("forbidden", str(caught.exception))

    @defer.inlineCallbacks
    def test_hosting_a_team_session_needs_the_team_token(self):
        from ct.client.session import SessionEnded

        host = SessionClient(reactor, self.url, "bob")
        with self.assertRaises(SessionEnded) as caught:
            yield host.host(team="core", team_token="guess")
        self.assertEqual(caught.exception.code, "forbidden")
