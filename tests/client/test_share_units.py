"""Small pure pieces of the share adapter."""

from __future__ import annotations

import os
import shutil
import tempfile
import unittest
from unittest import mock

from ct.client import share
from ct.client.share import Truncated, printable, read_many, write_many


class PrintableTests(unittest.TestCase):
    def test_a_peers_text_cannot_drive_the_terminal(self):
        self.assertEqual(printable("bob\x1b[2J\x07\u202e"), "bob?[2J??")
        self.assertEqual(printable("ünï 😀"), "ünï 😀")
        self.assertEqual(len(printable("x" * 1000, 64)), 64)


class DiskTests(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="ct-disk-")
        self.addCleanup(shutil.rmtree, self.root, True)

    def test_a_file_changed_since_it_was_read_is_left_alone(self):
        path = os.path.join(self.root, "a.txt")
        with open(path, "w") as f:
            f.write("old")
        seen = read_many(self.root, ["a.txt", "new/b.txt"], 100)
        self.assertEqual(seen, {"a.txt": b"old", "new/b.txt": None})
        with open(path, "w") as f:
            f.write("edited meanwhile")
        done, again = write_many(self.root, [("a.txt", "mine", seen["a.txt"]),
                                             ("new/b.txt", "b", None)], [], 0o644, 100)
        self.assertEqual((done, again), ([("new/b.txt", "b")], ["a.txt"]))
        with open(path) as f:
            self.assertEqual(f.read(), "edited meanwhile")
        self.assertEqual(os.stat(os.path.join(self.root, "new/b.txt")).st_mode & 0o777, 0o644)

    def test_a_save_during_our_write_is_not_overwritten(self):
        """Another editor saves the file while our temporary file is being flushed (the slow
        part of the write): the file is read again before the rename, and left alone."""
        path = os.path.join(self.root, "a.txt")
        with open(path, "w") as f:
            f.write("old")
        seen = read_many(self.root, ["a.txt"], 100)["a.txt"]
        real_fsync = os.fsync
        saves = []

        def fsync_while_another_editor_saves(fd):
            real_fsync(fd)
            if not saves:
                with open(path, "w") as f:  # same size, same instant: only content tells
                    f.write("new")
                saves.append(fd)
        with mock.patch.object(share.os, "fsync", fsync_while_another_editor_saves):
            done, again = write_many(self.root, [("a.txt", "mine", seen)], [], 0o644, 100)
        self.assertEqual((done, again, len(saves)), ([], ["a.txt"], 1))
        with open(path) as f:
            self.assertEqual(f.read(), "new")
        self.assertEqual(os.listdir(self.root), ["a.txt"])  # no temporary file left
        # with nobody saving meanwhile the same write goes through
        seen = read_many(self.root, ["a.txt"], 100)["a.txt"]
        self.assertEqual(write_many(self.root, [("a.txt", "mine", seen)], [], 0o644, 100),
                         ([("a.txt", "mine")], []))
        with open(path) as f:
            self.assertEqual(f.read(), "mine")

    def test_reads_are_bounded_and_deletes_tidy_up(self):
        os.makedirs(os.path.join(self.root, "d/e"))
        with open(os.path.join(self.root, "d/e/big.txt"), "w") as f:
            f.write("x" * 50)
        data = read_many(self.root, ["d/e/big.txt"], 10)["d/e/big.txt"]
        self.assertIsInstance(data, Truncated)
        self.assertEqual((len(data), data.size), (11, 50))
        done, again = write_many(self.root, [], [("d/e/big.txt", data)], 0o644, 10)
        self.assertEqual(done, [("d/e/big.txt", None)])
        self.assertFalse(os.path.exists(os.path.join(self.root, "d")))
