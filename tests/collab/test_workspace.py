"""The pycrdt document, awareness ownership and the host's policy."""

from __future__ import annotations

import unittest

from ct.collab import textdiff
from ct.collab.messages import MessageError
from ct.collab.workspace import Awareness, Policy, Workspace, decode_awareness


class WorkspaceTests(unittest.TestCase):
    def test_local_edits_are_updates_another_document_applies(self):
        a, b = Workspace(), Workspace()
        self.assertEqual(b.apply(a.put("src/x.py", "a😀b\n")), {"src/x.py"})
        self.assertEqual(b.apply(a.put("src/x.py", "a😀!b\n")), {"src/x.py"})
        self.assertEqual(b.text("src/x.py"), "a😀!b\n")
        self.assertEqual(b.apply(a.remove("src/x.py")), {"src/x.py"})
        self.assertEqual(b.paths(), [])
        self.assertIsNone(a.remove("src/x.py"))
        self.assertIsNone(a.edit("nope", [textdiff.Edit(0, 0, "x")]))

    def test_a_minimal_edit_is_a_small_update(self):
        ws = Workspace()
        ws.put("big.txt", "line\n" * 100000)
        update = ws.put("big.txt", "line\n" * 50000 + "changed\n" + "line\n" * 50000)
        self.assertLess(len(update), 100)

    def test_sync_step_1_and_2_both_ways(self):
        a, b = Workspace(), Workspace()
        a.put("one", "1")
        b.put("two", "2")
        b.apply(a.update_for(b.state_vector()))
        a.apply(b.update_for(a.state_vector()))
        self.assertEqual(a.snapshot(), b.snapshot())
        self.assertEqual(a.snapshot(), {"one": "1", "two": "2"})

    def test_concurrent_edits_converge(self):
        a, b = Workspace(), Workspace()
        b.apply(a.put("f", "😀 middle 😀"))
        ua = a.edit("f", [textdiff.Edit(1, 1, "A")])
        ub = b.edit("f", [textdiff.Edit(9, 9, "B")])
        a.apply(ub)
        b.apply(ua)
        self.assertEqual(a.text("f"), b.text("f"))
        self.assertEqual(a.text("f"), "😀A middle B😀")  # 9: before the second emoji

    def test_bad_updates_and_paths(self):
        ws = Workspace()
        with self.assertRaises(MessageError):
            ws.apply(b"\x05garbage")
        with self.assertRaises(ValueError):
            ws.put("../escape", "x")


class AwarenessTests(unittest.TestCase):
    def state(self, participant, name="bo"):
        return {"user": {"name": name, "participant": participant}, "file": None,
                "cursor": None}

    def test_entries_are_checked_against_the_sender(self):
        bob, host = Awareness(client_id=20), Awareness(client_id=10)
        update = bob.set_local(self.state(2))
        self.assertEqual(host.apply(update, sender=2), ({20}, []))
        self.assertEqual(host.remote_states()[20]["user"]["name"], "bo")
        # participant 3 cannot speak for participant 2, nor take over its clientID
        forged = Awareness(client_id=30)
        changed, refused = host.apply(forged.set_local(self.state(2, "evil")), sender=3)
        self.assertEqual(changed, set())
        self.assertEqual(len(refused), 1)
        bob2 = Awareness(client_id=20)
        bob2.clocks[20] = 50
        changed, refused = host.apply(bob2.set_local(self.state(3)), sender=3)
        self.assertEqual(changed, set())
        self.assertIn("belongs to participant 2", refused[0])

    def test_clock_order_removal_and_departure(self):
        bob, host = Awareness(client_id=20), Awareness(client_id=10)
        first = bob.set_local(self.state(2))
        second = bob.set_local(self.state(2, "bob"))
        host.apply(second, sender=2)
        host.apply(first, sender=2)  # older: ignored
        self.assertEqual(host.states[20]["user"]["name"], "bob")
        host.apply(bob.set_local(None), sender=2)
        self.assertNotIn(20, host.states)
        host.apply(bob.set_local(self.state(2)), sender=2)
        self.assertEqual(host.remove_participant(2), {20})
        self.assertEqual(host.remote_states(), {})

    def test_malformed_awareness(self):
        for bad in (b"", b"\x01", b"\x01\x01\x01\x05ab", b"\x01\x01\x01\x02[]",
                    b"\x01\x01\x01\x01\xff", b"\x00extra", b"\xff" * 11):
            with self.assertRaises(MessageError, msg=bad):
                decode_awareness(bad)


class PolicyTests(unittest.TestCase):
    def test_round_trip_and_read_only_rule(self):
        p = Policy(read_only=True, max_file_bytes=10, max_workspace_bytes=20,
                   unshared=[{"path": "a.png", "size": 3, "reason": "binary"}])
        again = Policy.from_json(p.to_json())
        self.assertEqual(again, p)
        self.assertTrue(again.accepts_edits_from(1))
        self.assertFalse(again.accepts_edits_from(2))
        self.assertTrue(Policy().accepts_edits_from(2))
        self.assertEqual(Policy.from_json({"v": 1, "extra": "ignored"}), Policy())

    def test_bad_policies(self):
        for bad in ({}, {"v": 2}, {"v": 1, "readOnly": "yes"}, {"v": 1, "maxFileBytes": -1},
                    {"v": 1, "maxFileBytes": True}, {"v": 1, "unshared": {}},
                    {"v": 1, "unshared": [{"path": "a", "size": 1, "reason": "other"}]}):
            with self.assertRaises(MessageError, msg=bad):
                Policy.from_json(bad)

