"""API tokens and the team-scoped audit query on every database dialect (SQLite,
PostgreSQL, MariaDB/MySQL), through the real migrations."""

from __future__ import annotations

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from ct.storage.apitokens import MAX_TOKENS, ApiTokenStore, TooManyTokens, split_token
from ct.storage.database import Database
from ct.storage.migrations import prepare_database
from ct.storage.store import LocatorStore
from tests.storage import dbs
from tests.storage.test_store import T0, audit


class TokenSuite:
    dialect = ""

    @defer.inlineCallbacks
    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(T0)
        self.db = Database(dbs.fresh_database(self, self.dialect), reactor, retries=1)
        self.addCleanup(self.db.close)
        yield prepare_database(self.db, self.clock)
        self.tokens = ApiTokenStore(self.db, self.clock)
        self.store = LocatorStore(self.db, self.clock)

    @defer.inlineCallbacks
    def test_create_verify_revoke(self):
        token, text = yield self.tokens.create("ci", "team-viewer", ("red", "blue"), "ada")
        self.assertEqual(split_token(text)[0], token.token_id)
        found = yield self.tokens.verify(text)
        self.assertEqual((found.name, found.role, found.teams, found.created_by),
                         ("ci", "team-viewer", ("red", "blue"), "ada"))
        self.assertEqual(found.last_used_at, None)  # as read before this use was written
        listed = yield self.tokens.list()
        self.assertEqual(listed[0].last_used_at, T0)
        secret = split_token(text)[1]
        for wrong in (text[:-1] + ("A" if text[-1] != "A" else "B"),
                      "ctk_" + "0" * 16 + "_" + secret, "Bearer " + text, "", "ctk_x_y",
                      text + "x"):
            self.assertIsNone((yield self.tokens.verify(wrong)), wrong)
        self.assertTrue((yield self.tokens.revoke(token.token_id)))
        self.assertFalse((yield self.tokens.revoke(token.token_id)))
        self.assertIsNone((yield self.tokens.verify(text)))
        rows = yield self.db.runInteraction("read", lambda txn: (
            txn.execute("SELECT secret_hash, revoked_at FROM api_tokens"), txn.fetchall())[1])
        self.assertEqual(len(rows[0][0]), 64)
        self.assertNotIn(secret, rows[0][0])
        self.assertIsNotNone(rows[0][1])

    @defer.inlineCallbacks
    def test_live_tokens_are_bounded(self):
        def fill(txn):
            for i in range(MAX_TOKENS):
                txn.execute("INSERT INTO api_tokens (token_id, name, secret_hash, role, "
                            "created_at) VALUES (?, ?, ?, ?, ?)",
                            (f"{i:016x}", f"t{i}", "0" * 64, "admin", 1))

        yield self.db.runInteraction("fill", fill)
        with self.assertRaises(TooManyTokens):
            yield self.tokens.create("one-more", "admin", (), "ada")
        yield self.tokens.revoke(f"{0:016x}")
        yield self.tokens.create("one-more", "admin", (), "ada")

    @defer.inlineCallbacks
    def test_audit_of_some_teams(self):
        yield self.store.session_started("s-red", "e1", "red", T0)
        yield self.store.session_started("s-blue", "e1", "blue", T0)
        yield self.store.session_started("s-none", "e1", None, T0)
        yield self.store.insert_audit_batch([
            audit(1, session_id="s-red"), audit(2, session_id="s-blue"),
            audit(3, session_id="s-none"), audit(4, session_id=None, kind="edge_suspended")])
        red = yield self.store.query_audit(teams=["red"])
        self.assertEqual([e.session_id for e in red], ["s-red"])
        both = yield self.store.query_audit(teams=["red", "blue"])
        self.assertEqual(sorted(e.session_id for e in both), ["s-blue", "s-red"])
        self.assertEqual((yield self.store.query_audit(teams=[])), [])
        self.assertEqual(len((yield self.store.query_audit())), 4)


class TokenSQLiteTests(TokenSuite, unittest.TestCase):
    dialect = "sqlite"


class TokenPostgresTests(TokenSuite, unittest.TestCase):
    dialect = "postgres"


class TokenMySQLTests(TokenSuite, unittest.TestCase):
    dialect = "mysql"
