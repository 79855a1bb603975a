"""Allocation state machine: lifetimes of allocations, permissions and channels."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial import unittest

from ct.turn.allocation import Allocation, AllocationTable
from ct.turn.metrics import TurnStats

PEER = ("198.51.100.7", 5000)


class AllocationTableTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.stats = TurnStats()
        self.table = AllocationTable(self.stats, max_allocations=3, user_quota=2)

    def allocate(self, key, user="alice", lifetime=600):
        a = Allocation(key, user, "realm", b"k", self.clock.seconds() + lifetime)
        self.table.add(a)
        return a

    def test_permission_expires_after_300s_unless_refreshed(self):
        a = self.allocate("c1")
        self.table.add_permission(a, PEER[0], self.clock.seconds())
        self.assertEqual(self.stats.permissions_active, 1)
        self.clock.advance(299)
        self.table.expire(self.clock.seconds())
        self.assertIn(PEER[0], a.permissions)
        self.table.add_permission(a, PEER[0], self.clock.seconds())  # refresh
        self.clock.advance(299)
        self.table.expire(self.clock.seconds())
        self.assertIn(PEER[0], a.permissions)
        self.clock.advance(1)
        self.table.expire(self.clock.seconds())
        self.assertNotIn(PEER[0], a.permissions)
        self.assertEqual(self.stats.permissions_active, 0)

    def test_channel_expires_after_600s_and_number_frees(self):
        a = self.allocate("c1", lifetime=3600)
        self.table.bind_channel(a, 0x4000, PEER, self.clock.seconds())
        self.assertEqual((self.stats.channels_active, self.stats.permissions_active), (1, 1))
        self.clock.advance(300)
        self.table.expire(self.clock.seconds())
        self.assertNotIn(PEER[0], a.permissions)  # permission lapsed on its own
        self.assertEqual(a.channels, {0x4000: PEER})
        self.clock.advance(300)
        self.table.expire(self.clock.seconds())
        self.assertEqual(a.channels, {})
        self.assertEqual(a.peer_channels, {})
        self.assertEqual(self.stats.channels_active, 0)
        self.assertIsNone(a.bind_check(0x4000, ("198.51.100.8", 1)))

    def test_channel_refresh_keeps_it(self):
        a = self.allocate("c1", lifetime=3600)
        for _ in range(3):
            self.table.bind_channel(a, 0x4001, PEER, self.clock.seconds())
            self.clock.advance(590)
            self.table.expire(self.clock.seconds())
            self.assertEqual(a.channels, {0x4001: PEER})
        self.assertEqual(self.stats.channels_active, 1)

    def test_bind_rules(self):
        a = self.allocate("c1")
        self.assertEqual(a.bind_check(0x3FFF, PEER), "channel number out of range")
        self.assertEqual(a.bind_check(0x7FFF, PEER), "channel number out of range")
        self.table.bind_channel(a, 0x4000, PEER, 0)
        self.assertIsNone(a.bind_check(0x4000, PEER))
        self.assertEqual(a.bind_check(0x4000, ("198.51.100.8", 1)), "channel bound to another peer")
        self.assertEqual(a.bind_check(0x4001, PEER), "peer bound to another channel")

    def test_allocation_freed_after_lifetime(self):
        a = self.allocate("c1", lifetime=600)
        self.table.bind_channel(a, 0x4000, PEER, 0)
        self.clock.advance(599)
        self.assertEqual(self.table.expire(self.clock.seconds()), [])
        self.clock.advance(1)
        self.assertEqual(self.table.expire(self.clock.seconds()), [a])
        self.assertIsNone(self.table.get("c1"))
        self.assertEqual(self.stats.snapshot()["allocations_active"], 0)
        self.assertEqual(self.stats.channels_active, 0)
        self.assertEqual(self.stats.permissions_active, 0)
        self.assertEqual(self.stats.allocations_total, 1)
        self.assertEqual(self.table.per_user, {})

    def test_quotas(self):
        self.allocate("c1", "alice")
        self.allocate("c2", "alice")
        self.assertEqual(self.table.quota_refusal("alice"), "user allocation quota reached")
        self.assertIsNone(self.table.quota_refusal("bob"))
        self.allocate("c3", "bob")
        self.assertEqual(self.table.quota_refusal("bob"), "total allocation cap reached")
        self.table.remove(self.table.get("c1"))
        self.assertIsNone(self.table.quota_refusal("alice"))
        self.assertFalse(self.table.remove(Allocation("c1", "alice", "r", b"", 0)))
