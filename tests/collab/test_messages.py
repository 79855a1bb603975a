"""The application layer codec: kinds, chunking and the bounded reassembler."""

from __future__ import annotations

import os
import re
import unittest
from pathlib import Path

from ct.collab import messages
from ct.collab.messages import MessageError, Reassembler


class CodecTests(unittest.TestCase):
    def test_round_trips(self):
        m = messages.decode(messages.sync_step1(b"\x01\x02", initial=True))
        self.assertEqual((m.kind, m.flags, m.body, m.name), (1, 1, b"\x01\x02", "sync-step1"))
        m = messages.decode(messages.sync_step1(b"", initial=False))
        self.assertEqual((m.flags, m.body), (0, b""))
        self.assertEqual(messages.decode(messages.sync_step2(b"u")).body, b"u")
        self.assertEqual(messages.decode(messages.update(b"u")).kind, messages.UPDATE)
        self.assertEqual(messages.decode(messages.awareness(b"\x00")).kind, messages.AWARENESS)
        policy = {"v": 1, "readOnly": True, "unshared": [{"path": "ü", "size": 1,
                                                          "reason": "binary"}]}
        self.assertEqual(messages.decode(messages.policy(policy)).body, policy)
        m = messages.decode(messages.notice("warning", "too-large", "big", "a.txt"))
        self.assertEqual(m.body, {"level": "warning", "code": "too-large", "message": "big",
                                  "path": "a.txt"})

    def test_unknown_kinds_are_ignored(self):
        self.assertIsNone(messages.decode(b"\x42anything"))
        self.assertIsNone(messages.decode(b"\x00"))

    def test_malformed_messages_raise_message_error(self):
        for bad in (b"", b"\x01", b"\x02", b"\x03", b"\x04", b"\x05not json", b"\x05[1]",
                    b"\x05\xff\xfe", b"\x06{}", b'\x06{"level": "panic", "code": "x", '
                    b'"message": "m"}', b"\x7f" + bytes(12)):
            with self.assertRaises(MessageError, msg=bad):
                messages.decode(bad)


class ChunkTests(unittest.TestCase):
    def test_small_messages_go_whole(self):
        small = messages.update(b"x" * 1000)
        self.assertEqual(messages.split(small, 1), [small])
        self.assertEqual(Reassembler().feed(2, small), small)

    def test_a_big_message_goes_in_chunks_and_comes_back_whole(self):
        big = messages.update(os.urandom(messages.CHUNK_BYTES * 2 + 100))
        parts = messages.split(big, 77)
        self.assertEqual(len(parts), 3)
        self.assertTrue(all(len(p) <= messages.CHUNK_BYTES + 13 for p in parts))
        self.assertTrue(all(p[0] == messages.CHUNK for p in parts))
        r = Reassembler()
        self.assertIsNone(r.feed(2, parts[0]))
        self.assertIsNone(r.feed(2, parts[1]))
        self.assertEqual(r.feed(2, parts[2]), big)
        self.assertEqual(r.pending_bytes(), 0)

    def test_senders_are_apart_and_a_new_id_discards_the_old(self):
        a = messages.split(messages.update(b"a" * (messages.CHUNK_BYTES + 1)), 1)
        b = messages.split(messages.update(b"b" * (messages.CHUNK_BYTES + 1)), 2)
        r = Reassembler()
        r.feed(2, a[0])
        r.feed(3, a[0])
        r.feed(2, b[0])  # sender 2 starts another message: its first one is gone
        with self.assertRaises(MessageError):
            r.feed(2, a[1])
        self.assertEqual(r.feed(3, a[1]), messages.update(b"a" * (messages.CHUNK_BYTES + 1)))

    def test_bad_chunks(self):
        parts = messages.split(messages.update(b"z" * (messages.CHUNK_BYTES * 2)), 5)
        r = Reassembler()
        with self.assertRaises(MessageError):  # not starting at 0
            r.feed(2, parts[1])
        r.feed(2, parts[0])
        with self.assertRaises(MessageError):  # a part skipped
            r.feed(2, parts[2])
        self.assertEqual(r.pending_bytes(), 0)
        with self.assertRaises(MessageError):
            r.feed(2, b"\x7f\x00\x00")
        zero = b"\x7f" + messages.CHUNK_HEADER.pack(1, 0, 0)
        with self.assertRaises(MessageError):
            r.feed(2, zero)

    def test_the_joined_size_is_bounded(self):
        r = Reassembler(max_bytes=100)
        header = messages.CHUNK_HEADER
        self.assertIsNone(r.feed(4, b"\x7f" + header.pack(1, 0, 3) + b"x" * 60))
        with self.assertRaises(MessageError):
            r.feed(4, b"\x7f" + header.pack(1, 1, 3) + b"x" * 60)
        self.assertEqual(r.pending_bytes(), 0)
        with self.assertRaises(MessageError):
            messages.split(b"\x03" + bytes(messages.MAX_MESSAGE_BYTES), 1)

    def test_forget_drops_a_departed_sender(self):
        parts = messages.split(messages.update(b"q" * (messages.CHUNK_BYTES + 5)), 9)
        r = Reassembler()
        r.feed(6, parts[0])
        self.assertGreater(r.pending_bytes(), 0)
        r.forget(6)
        self.assertEqual(r.pending_bytes(), 0)


class PaletteTests(unittest.TestCase):
    def test_python_and_the_browser_colour_participants_alike(self):
        model = (Path(__file__).resolve().parents[2] / "js" / "app" / "model.js").read_text()
        found = re.search(r"export const PALETTE = \[([^\]]*)\]", model)
        self.assertIsNotNone(found, "PALETTE not found in js/app/model.js")
        self.assertEqual(tuple(re.findall(r'"(#[0-9a-f]{6})"', found.group(1))),
                         messages.PALETTE)

    def test_colour_for_a_participant(self):
        self.assertEqual(messages.color_for(1), messages.PALETTE[0])
        self.assertEqual(messages.color_for(2), messages.PALETTE[1])
        self.assertEqual(messages.color_for(len(messages.PALETTE) + 1), messages.PALETTE[0])
        self.assertEqual(messages.color_for(0), messages.PALETTE[0])
        self.assertEqual(messages.color_for(-3), messages.PALETTE[0])
