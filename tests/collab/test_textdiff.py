"""Minimal edits and their rebase onto concurrent edits."""

from __future__ import annotations

import unittest

from hypothesis import given, settings
from hypothesis import strategies as st

from ct.collab import textdiff
from ct.collab.textdiff import Edit

ALPHABET = st.sampled_from(list("ab\n😀é𝄞 "))
TEXT = st.text(ALPHABET, max_size=60)


class EditsTests(unittest.TestCase):
    def test_minimal_for_a_typed_character(self):
        self.assertEqual(textdiff.edits("hello world", "hello, world"), [Edit(5, 5, ",")])
        self.assertEqual(textdiff.edits("a😀b", "a😀Xb"), [Edit(2, 2, "X")])
        self.assertEqual(textdiff.edits("same", "same"), [])
        self.assertEqual(textdiff.edits("", "new"), [Edit(0, 0, "new")])

    def test_two_far_apart_changes_in_a_big_text_stay_small(self):
        old = "".join(f"line {i}\n" for i in range(20000))
        new = old.replace("line 10\n", "line ten\n").replace("line 19990\n", "LINE\n")
        changes = textdiff.edits(old, new)
        self.assertEqual(textdiff.apply(old, changes), new)
        self.assertLess(sum(e.end - e.start + len(e.text) for e in changes), 40)

    @settings(max_examples=300, deadline=None)
    @given(TEXT, TEXT)
    def test_edits_turn_old_into_new(self, old, new):
        self.assertEqual(textdiff.apply(old, textdiff.edits(old, new)), new)

    @settings(max_examples=300, deadline=None)
    @given(TEXT, TEXT, st.lists(st.tuples(st.integers(0, 70), st.sampled_from("XYZ")),
                                max_size=4))
    def test_rebase_keeps_both_sides_edits(self, base, mine_text, inserts):
        theirs_text = base
        for pos, ch in inserts:  # the others insert X, Y, Z somewhere
            pos = min(pos, len(theirs_text))
            theirs_text = theirs_text[:pos] + ch + theirs_text[pos:]
        mine = textdiff.edits(base, mine_text)
        merged = textdiff.apply(theirs_text, textdiff.rebase(mine, base, theirs_text))
        for ch in "XYZ":  # none of their insertions is lost
            self.assertEqual(merged.count(ch), theirs_text.count(ch))
        # and mine is all there when theirs only inserted: removing their letters gives mine
        self.assertEqual("".join(c for c in merged if c not in "XYZ"), mine_text)

    def test_rebase_when_nothing_happened_meanwhile(self):
        mine = textdiff.edits("abc", "abXc")
        self.assertEqual(textdiff.rebase(mine, "abc", "abc"), mine)

    def test_rebase_moves_an_edit_past_text_inserted_before_it(self):
        base = "one\ntwo\nthree\n"
        mine = textdiff.edits(base, "one\ntwo\nthree!\n")
        theirs = "zero\none\ntwo\nthree\n"
        merged = textdiff.apply(theirs, textdiff.rebase(mine, base, theirs))
        self.assertEqual(merged, "zero\none\ntwo\nthree!\n")


LINES = st.lists(st.sampled_from(["a\n", "b\n", "c\n", "😀\n", "long line\n", "x"]),
                 max_size=40).map("".join)


class PatienceTests(unittest.TestCase):
    """Big texts take the unique-line anchored path: still exact, and fast on any input."""

    def setUp(self):
        self.saved = textdiff.PATIENCE_LINES, textdiff.CHAR_DIFF_CHARS
        textdiff.PATIENCE_LINES, textdiff.CHAR_DIFF_CHARS = 0, 0
        self.addCleanup(self.restore)

    def restore(self):
        textdiff.PATIENCE_LINES, textdiff.CHAR_DIFF_CHARS = self.saved

    @settings(max_examples=300, deadline=None)
    @given(LINES, LINES)
    def test_edits_turn_old_into_new(self, old, new):
        self.assertEqual(textdiff.apply(old, textdiff.edits(old, new)), new)

    def test_adversarial_input_stays_fast(self):
        import random
        import time
        rng = random.Random(7)
        a = "".join(rng.choice("ab\n") for _ in range(1_000_000))
        b = "".join(rng.choice("ab\n") for _ in range(1_000_000))
        started = time.monotonic()
        self.assertEqual(textdiff.apply(a, textdiff.edits(a, b)), b)
        self.assertLess(time.monotonic() - started, 10)
