"""Log-in sessions and failed log-in throttling, driven by a fake clock."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial import unittest

from ct.dashboard.auth import LoginThrottle, SessionStore


class SessionStoreTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.store = SessionStore(self.clock, idle=60, lifetime=300, max_sessions=3)

    def test_random_ids_and_tokens(self):
        a, b = self.store.create("ctuser"), self.store.create("ctuser")
        self.assertNotEqual(a.sid, b.sid)
        self.assertNotEqual(a.csrf, b.csrf)
        self.assertGreaterEqual(len(a.sid), 40)
        self.assertIs(self.store.get(a.sid), a)
        self.assertIsNone(self.store.get("forged"))
        self.assertIsNone(self.store.get(None))

    def test_idle_expiry_is_renewed_by_use(self):
        s = self.store.create("ctuser")
        for _ in range(4):
            self.clock.advance(50)
            self.assertIs(self.store.get(s.sid), s)
        self.clock.advance(61)
        self.assertIsNone(self.store.get(s.sid))

    def test_lifetime_ends_even_a_busy_session(self):
        s = self.store.create("ctuser")
        for _ in range(5):
            self.clock.advance(59)
            self.assertIsNotNone(self.store.get(s.sid))
        self.clock.advance(59)  # 354 s since log-in
        self.assertIsNone(self.store.get(s.sid))

    def test_log_out_and_bounded_table(self):
        first = self.store.create("a")
        self.clock.advance(1)
        for name in "bcd":
            self.store.create(name)
            self.clock.advance(1)
        self.assertEqual(len(self.store), 3)
        self.assertIsNone(self.store.get(first.sid))  # least recently used went
        s = self.store.create("e")
        self.store.end(s.sid)
        self.assertIsNone(self.store.get(s.sid))

    def test_csrf_check(self):
        s = self.store.create("ctuser")
        self.assertTrue(s.csrf_ok(s.csrf))
        self.assertFalse(s.csrf_ok(s.csrf[:-1] + ("A" if s.csrf[-1] != "A" else "B")))
        self.assertFalse(s.csrf_ok(""))
        self.assertFalse(s.csrf_ok(None))


class ThrottleTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.t = LoginThrottle(self.clock, pair_failures=5, ip_failures=20, base_lock=30,
                               max_lock=120, forget_after=600)

    def test_user_locked_from_an_address_after_five_failures_with_growing_locks(self):
        for _ in range(4):
            self.assertEqual(self.t.failed("10.0.0.1", "ctuser"), 0)
        self.assertEqual(self.t.failed("10.0.0.1", "ctuser"), 30)
        self.assertEqual(self.t.locked_for("10.0.0.1", "other"), 0)
        self.assertEqual(self.t.locked_for("10.0.0.2", "ctuser"), 0)
        self.clock.advance(29)
        self.assertEqual(self.t.locked_for("10.0.0.1", "ctuser"), 1)
        self.clock.advance(1)
        self.assertEqual(self.t.locked_for("10.0.0.1", "ctuser"), 0)
        self.assertEqual(self.t.failed("10.0.0.1", "ctuser"), 60)  # 6th failure: doubled
        self.clock.advance(60)
        self.assertEqual(self.t.failed("10.0.0.1", "ctuser"), 120)
        self.clock.advance(120)
        self.assertEqual(self.t.failed("10.0.0.1", "ctuser"), 120)  # capped

    def test_finding_12_failures_lock_the_address_not_the_user_elsewhere(self):
        for i in range(10):  # many addresses, a few failures each
            for _ in range(4):
                self.assertEqual(self.t.failed(f"10.0.1.{i}", "ctuser"), 0)
        self.assertEqual(self.t.failed("10.0.1.0", "ctuser"), 30)
        self.assertEqual(self.t.locked_for("10.0.1.0", "ctuser"), 30)
        self.assertEqual(self.t.locked_for("10.9.9.9", "ctuser"), 0)  # the operator elsewhere

    def test_finding_12_many_user_names_from_one_address_lock_it(self):
        t = LoginThrottle(self.clock, pair_failures=5, ip_failures=8, base_lock=30)
        for i in range(7):
            self.assertEqual(t.failed("10.0.0.1", f"user{i}"), 0)
        self.assertEqual(t.failed("10.0.0.1", "user7"), 30)
        self.assertEqual(t.locked_for("10.0.0.1", "ctuser"), 30)
        self.assertEqual(t.locked_for("10.0.0.2", "ctuser"), 0)

    def test_success_clears_and_quiet_time_forgets(self):
        for _ in range(4):
            self.t.failed("10.0.0.1", "ctuser")
        self.t.succeeded("10.0.0.1", "ctuser")
        for _ in range(4):
            self.assertEqual(self.t.failed("10.0.0.1", "ctuser"), 0)
        self.clock.advance(601)
        self.assertEqual(self.t.failed("10.0.0.1", "ctuser"), 0)  # counting from 1 again

    def test_table_is_bounded(self):
        t = LoginThrottle(self.clock, max_entries=50)
        for i in range(500):
            t.failed(f"10.1.{i // 256}.{i % 256}", f"user{i}")
            self.clock.advance(0.01)
        self.assertLessEqual(len(t._table), 52)

