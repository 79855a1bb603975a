"""``dashboard_logins`` (ct/storage/logins.py) on SQLite, PostgreSQL and MariaDB/MySQL."""

from __future__ import annotations

from twisted.internet import defer, reactor
from twisted.trial import unittest

from ct.storage.database import Database
from ct.storage.logins import LoginRow, LoginStore, login_key
from ct.storage.migrations import prepare_database
from tests.storage import dbs

T0 = 1_700_000_000.0


def row(n: int, created=T0, used=None, **kw) -> LoginRow:
    fields = dict(key=login_key(f"sid-{n}"), user=f"user{n}", role="team-viewer",
                  teams=("red", "blue"), method="sso", csrf=f"csrf-{n}", created_at=created,
                  last_used_at=created + n if used is None else used)
    fields.update(kw)
    return LoginRow(**fields)


class LoginStoreSuite:
    dialect = ""

    @defer.inlineCallbacks
    def setUp(self):
        self.db = Database(dbs.fresh_database(self, self.dialect), reactor)
        self.addCleanup(self.db.close)
        yield prepare_database(self.db)
        self.store = LoginStore(self.db)

    @defer.inlineCallbacks
    def test_insert_read_touch_delete(self):
        evicted = yield self.store.insert(row(1), 10)
        self.assertEqual(evicted, [])
        again = yield self.store.insert(row(1), 10)  # safe to repeat
        self.assertEqual(again, [])
        yield self.store.insert(row(2), 10)
        rows = yield self.store.get()
        self.assertEqual(sorted(rows, key=lambda r: r.user), [row(1), row(2)])
        self.assertEqual((yield self.store.get([row(2).key, "f" * 64])), [row(2)])
        self.assertEqual((yield self.store.get([])), [])
        yield self.store.touch({row(1).key: T0 + 100, row(2).key: T0 + 1})  # 2: never back
        got = {r.user: r.last_used_at for r in (yield self.store.get())}
        self.assertEqual(got, {"user1": T0 + 100, "user2": T0 + 2})
        yield self.store.delete([row(1).key])
        self.assertEqual([r.user for r in (yield self.store.get())], ["user2"])

    @defer.inlineCallbacks
    def test_rows_are_bounded_least_recently_used_first(self):
        for n in range(1, 5):
            evicted = yield self.store.insert(row(n), 3)
        self.assertEqual(evicted, [row(1).key])
        evicted = yield self.store.insert(row(9, used=T0), 2)  # the newest stays
        self.assertEqual(sorted(evicted), sorted([row(2).key, row(3).key]))
        self.assertEqual(sorted(r.user for r in (yield self.store.get())), ["user4", "user9"])

    @defer.inlineCallbacks
    def test_prune_removes_idle_and_old_rows(self):
        yield self.store.insert(row(1, used=T0 + 10), 10)  # idle
        yield self.store.insert(row(2, created=T0 - 50, used=T0 + 500), 10)  # too old
        yield self.store.insert(row(3, used=T0 + 500), 10)
        gone = yield self.store.prune(T0 + 100, T0 - 10)
        self.assertEqual(gone, 2)
        self.assertEqual([r.user for r in (yield self.store.get())], ["user3"])


class LoginStoreSQLiteTests(LoginStoreSuite, unittest.TestCase):
    dialect = "sqlite"


class LoginStorePostgresTests(LoginStoreSuite, unittest.TestCase):
    dialect = "postgres"


class LoginStoreMySQLTests(LoginStoreSuite, unittest.TestCase):
    dialect = "mysql"
