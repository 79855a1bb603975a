"""The host's caps on guests' edits (ct/collab/caps.py): which edits of a batch are refused."""

from __future__ import annotations

import unittest

from ct.collab.caps import (TOO_LARGE, WORKSPACE_FULL, Proposal, Refusal, SizedTexts, describe,
                            refused_edits)


class RefusedEditsTests(unittest.TestCase):
    def test_an_edit_within_both_caps_is_accepted(self):
        self.assertEqual(refused_edits({"a": Proposal(10, 100)}, 50, 100, 150), {})

    def test_a_file_past_the_file_cap_is_refused_with_its_would_be_size(self):
        self.assertEqual(refused_edits({"a": Proposal(10, 101)}, 0, 100, 10_000),
                         {"a": Refusal(TOO_LARGE, 101)})

    def test_a_shrinking_edit_is_never_refused(self):
        # the workspace is already past its cap (the host's own disk edits may do that)
        self.assertEqual(refused_edits({"a": Proposal(80, 70)}, 500, 100, 200), {})
        self.assertEqual(refused_edits({"a": Proposal(80, 80)}, 500, 100, 200), {})

    def test_growth_past_the_workspace_cap_is_refused_with_the_total_it_would_reach(self):
        self.assertEqual(refused_edits({"a": Proposal(10, 60)}, 100, 1000, 150),
                         {"a": Refusal(WORKSPACE_FULL, 160)})
        self.assertEqual(refused_edits({"a": Proposal(10, 60)}, 100, 1000, 160), {})

    def test_shrinks_make_room_first_then_growth_in_path_order(self):
        proposals = {"a": Proposal(10, 40), "b": Proposal(10, 40), "c": Proposal(50, 20)}
        # disk total 70; c's shrink frees 30 -> 40; a grows by 30 -> 70; b would make 100
        self.assertEqual(refused_edits(proposals, 0, 1000, 80),
                         {"b": Refusal(WORKSPACE_FULL, 100)})

    def test_a_file_refused_for_its_size_counts_at_its_disk_size(self):
        proposals = {"a": Proposal(10, 500), "b": Proposal(10, 60)}
        self.assertEqual(refused_edits(proposals, 0, 100, 70),
                         {"a": Refusal(TOO_LARGE, 500)})

    def test_the_notice_message_says_who_what_and_the_limit(self):
        self.assertEqual(describe(Refusal(TOO_LARGE, 2048), ["bob"], 1024, 9999),
                         "an edit by bob was undone: the file would be 2,048 bytes, over the "
                         "host's limit of 1,024 bytes per file")
        self.assertEqual(describe(Refusal(WORKSPACE_FULL, 5000), ["bob", "carol"], 1024, 4096),
                         "an edit by bob, carol was undone: the shared files would be 5,000 "
                         "bytes, over the host's limit of 4,096 bytes in total")
        self.assertIn("an edit was undone", describe(Refusal(TOO_LARGE, 2), [], 1, 1))


class SizedTextsTests(unittest.TestCase):
    def test_the_total_follows_sets_replacements_and_removals(self):
        texts = SizedTexts()
        texts["a"] = "héllo"  # 6 UTF-8 bytes
        texts["b"] = "😀"  # 4
        self.assertEqual(texts.total, 10)
        texts["a"] = "x"
        self.assertEqual(texts.total, 5)
        self.assertEqual(texts.pop("b"), "😀")
        self.assertIsNone(texts.pop("missing", None))
        del texts["a"]
        self.assertEqual((texts.total, dict(texts), texts.sizes), (0, {}, {}))
