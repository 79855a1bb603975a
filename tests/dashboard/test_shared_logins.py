"""Dashboard log-ins shared by several locators (ct/dashboard/shared_logins.py).

Pure logic: two (or three) stores on one in-memory table and a Clock, their announcements
delivered to each other as the locators' notifications would be (or lost, or delayed).
The table's SQL is checked on the real databases in tests/storage/test_logins.py.
"""

from __future__ import annotations

from dataclasses import replace

from treq.testing import StubTreq
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest
from twisted.web import resource

from ct.common.credentials import Credentials
from ct.dashboard.app import Dashboard
from ct.dashboard.auth import SessionStore
from ct.dashboard.backend import EdgeBackend
from ct.dashboard.guard import DashboardConfig
from ct.dashboard.logs import LogRing, ServerLog
from ct.dashboard.memory import AuditRing, MetricHistory
from ct.dashboard.shared_logins import (STORE_WAIT, UNKNOWN_FORGET, USED_FLUSH_INTERVAL,
                                        SharedSessionStore)
from ct.edge.server import Edge
from ct.storage.logins import login_key
from tests.dashboard import test_in_memory as base

T0 = 1_700_000_000.0


class Table:
    """``dashboard_logins`` in memory, with LoginStore's methods; ``hold`` keeps the
    answers of reads (or every call) until :meth:`release`; ``down`` fails every call."""

    def __init__(self):
        self.rows = {}
        self.hold_reads = False
        self.down = False
        self.held: list = []
        self.calls: list[str] = []

    def _answer(self, name, fn, read=False):
        self.calls.append(name)
        if self.down:
            return defer.fail(ConnectionError("database away"))
        if read and self.hold_reads:
            d = defer.Deferred()
            result = fn()  # read now, answered later: a slow read
            self.held.append((d, result))
            return d
        return defer.succeed(fn())

    def release(self):
        held, self.held = self.held, []
        for d, result in held:
            d.callback(result)

    def insert(self, row, max_rows):
        def run():
            self.rows[row.key] = row
            extra = len(self.rows) - max_rows
            others = sorted((r for r in self.rows.values() if r.key != row.key),
                            key=lambda r: (r.last_used_at, r.key))
            evicted = [r.key for r in others[:max(0, extra)]]
            for key in evicted:
                del self.rows[key]
            return evicted
        return self._answer("insert", run)

    def get(self, keys=None):
        return self._answer("get", lambda: [r for k, r in sorted(self.rows.items())
                                            if keys is None or k in keys], read=True)

    def delete(self, keys):
        return self._answer("delete", lambda: [self.rows.pop(k, None) for k in keys])

    def touch(self, used):
        def run():
            for key, at in used.items():
                row = self.rows.get(key)
                if row is not None and row.last_used_at < at:
                    self.rows[key] = replace(row, last_used_at=at)
        return self._answer("touch", run)

    def prune(self, used_before, created_before):
        def run():
            gone = [k for k, r in self.rows.items()
                    if r.last_used_at < used_before or r.created_at < created_before]
            for key in gone:
                del self.rows[key]
            return len(gone)
        return self._answer("prune", run)


class Locators:
    """Stores on one table; each one's announcements reach the others unless ``lost``."""

    def __init__(self, n=2, **kwargs):
        self.clock = Clock()
        self.clock.advance(T0)
        self.table = Table()
        self.lost = False
        self.stores = []
        for i in range(n):
            store = SharedSessionStore(self.clock, self.table,
                                       lambda keys, i=i: self._announce(i, keys), **kwargs)
            self.stores.append(store)

    def _announce(self, sender, keys):
        if self.lost:
            return
        for i, store in enumerate(self.stores):
            if i != sender:
                store.changed(keys)

    def start(self):
        for store in self.stores:
            store.start()

    def stop(self):
        for store in self.stores:
            store.stop()


def fired(d):
    out = []
    d.addBoth(out.append)
    return out


class SharedLoginTests(unittest.TestCase):
    def setUp(self):
        self.l = Locators(3)
        self.a, self.b, self.c = self.l.stores
        self.l.start()
        self.addCleanup(self.l.stop)

    def log_in(self, store, user="ctuser", **kw):
        session = store.create(user, **kw)
        self.assertEqual(fired(store.stored(session)), [None])
        return session

    def test_a_log_in_is_known_everywhere_and_only_its_hash_is_stored(self):
        s = self.log_in(self.a, "bob", role="team-viewer", teams=("red",), method="sso")
        self.assertEqual(list(self.l.table.rows), [login_key(s.sid)])
        row = self.l.table.rows[s.key]
        self.assertNotIn(s.sid, repr(row))
        for store in (self.b, self.c):
            seen = store.get(s.sid)
            self.assertEqual((seen.user, seen.role, seen.teams, seen.method),
                             ("bob", "team-viewer", ("red",), "sso"))
            self.assertTrue(seen.csrf_ok(s.csrf))  # a POST checked on another locator
            self.assertEqual(seen.sid, "")  # the cookie is known only where it was made

    def test_a_log_out_anywhere_ends_it_everywhere(self):
        s = self.log_in(self.a)
        self.assertIsNotNone(self.b.get(s.sid))
        self.assertEqual(fired(self.b.end_key(self.b.get(s.sid).key)), [None])
        self.assertEqual(self.l.table.rows, {})
        for store in (self.a, self.b, self.c):
            self.assertIsNone(store.get(s.sid))
            self.assertIsNone(store.lookup(s.sid))  # known ended: no database look-up
        self.l.clock.advance(USED_FLUSH_INTERVAL)
        self.assertEqual(self.b._ending, {})  # what log-outs leave behind is bounded

    def test_a_lost_notification_is_covered_by_one_look_up_then_the_full_re_read(self):
        self.l.lost = True
        s = self.log_in(self.a)
        self.assertIsNone(self.b.get(s.sid))
        self.assertEqual(fired(self.b.lookup(s.sid)), [None])
        self.assertIsNotNone(self.b.get(s.sid))
        # A log-out whose notification is lost: the next full re-read (resync) ends it.
        self.a.end_key(s.key)
        self.assertIsNotNone(self.b.get(s.sid))
        self.b.changed(None)
        self.assertIsNone(self.b.get(s.sid))

    def test_made_up_cookies_are_looked_up_once_and_at_a_bounded_rate(self):
        made_up = "x" * 43
        self.assertIsNotNone(self.b.lookup(made_up))
        self.assertIsNone(self.b.lookup(made_up))  # remembered as unknown
        self.assertIsNone(self.b.lookup("not a session id"))  # malformed: never looked up
        self.assertIsNone(self.b.lookup(None))
        reads = self.l.table.calls.count("get")
        answered = [self.b.lookup(f"{i:043d}") for i in range(500)]
        looked = sum(1 for d in answered if d is not None)
        self.assertLess(looked, 60)  # the burst, not 500 database reads
        self.assertLessEqual(self.l.table.calls.count("get") - reads, looked)
        self.l.clock.advance(UNKNOWN_FORGET + 1)
        self.assertIsNotNone(self.b.lookup(made_up))  # forgotten after a while

    def test_an_active_log_in_does_not_expire_on_another_locator(self):
        s = self.log_in(self.a)
        self.assertIsNotNone(self.b.get(s.sid))
        # Used on A every 10 minutes for two hours; B re-reads every 5 s (the resync).
        for _ in range(12):
            for _ in range(120):
                self.l.clock.advance(5)
                self.b.changed(None)
            self.assertIsNotNone(self.a.get(s.sid))
        self.assertIsNotNone(self.b.get(s.sid))
        # A last use reaches the database within one batch.
        used_at = self.a.get(s.sid).last_used
        self.l.clock.advance(USED_FLUSH_INTERVAL)
        self.assertEqual(self.l.table.rows[s.key].last_used_at, used_at)

    def test_idle_and_old_log_ins_expire_everywhere_and_their_rows_go(self):
        idle = self.log_in(self.a, "idle")
        busy = self.log_in(self.a, "busy")
        for _ in range(3601 // 5 + 1):
            self.l.clock.advance(5)
            self.c.get(busy.sid)
            for store in self.l.stores:
                store.changed(None)  # the resync
        for store in (self.a, self.b, self.c):
            self.assertIsNone(store.get(idle.sid))
            self.assertIsNotNone(store.get(busy.sid))
        self.l.clock.advance(2 * USED_FLUSH_INTERVAL + 1)
        self.assertNotIn(idle.key, self.l.table.rows)  # pruned by a batch
        for _ in range(12 * 3600 // 600):  # the busy one: at most 12 hours
            self.l.clock.advance(600)
            self.a.get(busy.sid)
        for store in (self.a, self.b, self.c):
            self.assertIsNone(store.get(busy.sid))
        self.l.clock.advance(USED_FLUSH_INTERVAL)
        self.assertEqual(self.l.table.rows, {})

    def test_rows_are_bounded_and_the_evicted_ones_end_everywhere(self):
        l = Locators(2, max_sessions=3)
        l.start()
        self.addCleanup(l.stop)
        a, b = l.stores
        made = []
        for i in range(5):
            l.clock.advance(1)
            made.append(a.create(f"u{i}"))
        self.assertEqual(len(l.table.rows), 3)
        self.assertEqual(sorted(r.user for r in l.table.rows.values()), ["u2", "u3", "u4"])
        for store in (a, b):
            self.assertEqual([s.user for s in made if store.get(s.sid) is not None],
                             ["u2", "u3", "u4"])

    def test_a_slow_read_does_not_bring_back_a_log_in_ended_meanwhile(self):
        s = self.log_in(self.a)
        self.assertIsNotNone(self.b.get(s.sid))
        self.l.table.hold_reads = True
        pending = fired(self.b.changed(None))  # reads the row, answers later
        self.l.table.hold_reads = False
        self.b.end_key(s.key)  # logged out on B meanwhile
        self.assertEqual(self.l.table.rows, {})
        self.l.table.release()
        self.assertEqual(pending, [None])
        self.assertIsNone(self.b.get(s.sid))
        # And on A: a read in flight when the log-out's notification came is not trusted.
        s = self.log_in(self.b)
        self.assertIsNotNone(self.a.get(s.sid))
        self.l.table.hold_reads = True
        first = fired(self.a.changed(None))
        self.l.table.hold_reads = False
        self.c.end_key(s.key)  # A is told, but its read of the notified key waits
        self.l.table.release()
        self.assertEqual(first, [None])
        self.assertIsNone(self.a.get(s.sid))

    def test_without_the_database_a_log_in_works_here_and_is_shared_once_it_is_back(self):
        self.l.table.down = True
        s = self.a.create("ctuser")
        self.assertEqual(fired(self.a.stored(s)), [None])  # answered, not failed
        self.assertIsNotNone(self.a.get(s.sid))
        self.assertIsNone(self.b.get(s.sid))
        self.l.clock.advance(USED_FLUSH_INTERVAL)
        self.assertEqual(self.l.table.rows, {})
        self.l.table.down = False
        self.l.clock.advance(USED_FLUSH_INTERVAL)  # the next batch stores it
        self.assertIn(s.key, self.l.table.rows)
        self.assertIsNotNone(self.b.get(s.sid))
        # A log-out the database missed is retried too.
        self.l.table.down = True
        self.assertEqual(fired(self.a.end_key(s.key)), [None])
        self.assertIsNotNone(self.b.get(s.sid))
        self.l.table.down = False
        self.l.clock.advance(USED_FLUSH_INTERVAL)
        self.assertIsNone(self.b.get(s.sid))

    def test_a_stuck_database_delays_a_log_in_by_at_most_store_wait(self):
        table = self.l.table
        table.insert = lambda row, max_rows: defer.Deferred()  # never answers
        s = self.a.create("ctuser")
        done = fired(self.a.stored(s))
        self.assertEqual(done, [])
        self.l.clock.advance(STORE_WAIT)
        self.assertEqual(done, [None])

    def test_a_locator_starting_loads_the_live_log_ins(self):
        s = self.log_in(self.a)
        late = SharedSessionStore(self.l.clock, self.l.table, lambda keys: None)
        late.start()
        self.addCleanup(late.stop)
        self.assertEqual(late.get(s.sid).user, "ctuser")


class MemoryStoreTests(unittest.TestCase):
    def test_the_memory_store_answers_at_once(self):
        clock = Clock()
        store = SessionStore(clock)
        s = store.create("ctuser")
        self.assertEqual(fired(store.stored(s)), [None])
        self.assertIsNone(store.lookup(s.sid))
        self.assertIsNone(store.lookup("y" * 43))  # nothing else to ask
        self.assertEqual(fired(store.end_key(s.key)), [None])
        self.assertIsNone(store.get(s.sid))


class TwoDashboardsTests(unittest.TestCase):
    """The guard of two dashboards on one table (StubTreq): a cookie made on A opens B's
    pages before any notification arrives (one database look-up), and a log-out on B ends
    it on A."""

    request = base.DashboardInMemoryTests.request
    post = base.DashboardInMemoryTests.post

    def setUp(self):
        self.l = Locators(2)
        self.l.start()
        self.addCleanup(self.l.stop)
        self.clock = self.l.clock
        self.sites = []
        for store in self.l.stores:
            edge = Edge(self.clock)
            audit = AuditRing()
            dashboard = Dashboard(EdgeBackend(edge, None, audit, MetricHistory(10.0)),
                                  Credentials("ctuser", base.PASSWORD), self.clock,
                                  ServerLog(LogRing()), DashboardConfig.for_server(base.BASE),
                                  sessions=store)
            root = resource.Resource()
            dashboard.mount(root)
            self.sites.append(StubTreq(root))
        self.cookies = {}

    def on(self, i):
        self.http = self.sites[i]
        return self

    def test_a_cookie_from_another_locator_is_looked_up_once(self):
        self.l.lost = True  # the notifications have not arrived
        _, form = self.on(0).request("GET", "/dashboard/login")
        response, _ = self.on(0).post("/dashboard/login", {
            "csrf": base.CSRF_RE.search(form).group(1), "user": "ctuser",
            "password": base.PASSWORD})
        self.assertEqual(response.code, 303)
        reads = self.l.table.calls.count("get")
        response, page = self.on(1).request("GET", "/dashboard/advanced")
        self.assertEqual(response.code, 200)
        self.assertIn('id="who">ctuser<', page)
        self.assertEqual(self.l.table.calls.count("get"), reads + 1)
        token = base.CSRF_RE.search(page).group(1)
        response, _ = self.on(1).post("/dashboard/advanced", {
            "csrf": token, "min_client_version": "2024.2.0"})
        self.assertEqual((response.code, response.headers.getRawHeaders(b"location")),
                         (303, [b"/dashboard/advanced"]))
        self.assertEqual(self.l.table.calls.count("get"), reads + 1)  # known from now on
        # Log out on B (notifications delivered again): A refuses the cookie at once.
        self.l.lost = False
        sid = self.cookies["ct_dashboard"]
        response, _ = self.on(0).request("GET", "/dashboard")
        self.assertEqual(response.code, 200)
        response, _ = self.on(1).post("/dashboard/logout", {"csrf": token})
        self.assertEqual(response.code, 303)
        self.cookies["ct_dashboard"] = sid
        for i in (0, 1):
            response, _ = self.on(i).request("GET", "/dashboard")
            self.assertEqual(response.code, 303)
            self.assertTrue(response.headers.getRawHeaders(b"location")[0]
                            .startswith(b"/dashboard/login"))
