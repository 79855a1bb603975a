"""The host's caps on guests' edits, end to end: ``ct-client share`` with
``--max-file-bytes`` / ``--max-workspace-bytes`` in a child process, a real edge, guests as
``ct-client join --mirror`` processes and as the JavaScript client core (js/core, what the
browser app runs) under Node. An edit past a cap is never written to the host's disk; the
document goes back to the disk's text everywhere; every guest gets the notice."""

from __future__ import annotations

import json
import os
import shutil

from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.trial import unittest

from tests.client.cliproc import ROOT, CliProcess
from tests.client.test_share_e2e import ShareCase, read, tree_of, write
from tests.edge.util import sleep, wait_for

JS_GUEST = os.path.join(ROOT, "tests", "client", "js_guest.mjs")
NODE_READY = shutil.which("node") and os.path.isdir(os.path.join(ROOT, "js", "node_modules",
                                                                "yjs"))


class CapsOnGuestEditsTests(ShareCase):
    def watch_host_file(self, path: str) -> set[str | None]:
        """Every text the host's file held, sampled every 5 ms until the test ends."""
        seen: set[str | None] = set()
        loop = LoopingCall(lambda: seen.add(read(self.host_dir, path)))
        loop.start(0.005)
        self.addCleanup(loop.stop)
        return seen

    @defer.inlineCallbacks
    def test_an_edit_past_the_workspace_cap_is_undone_everywhere_with_a_notice(self):
        a, b = "a" * 40 + "\n", "b" * 40 + "\n"  # 82 bytes of 150
        yield self.start_share({"a.txt": a, "b.txt": b}, "--max-workspace-bytes", "150",
                               "--max-file-bytes", "1000")
        bob, bob_dir = yield self.start_mirror("bob")
        carol, carol_dir = yield self.start_mirror("carol")
        # within the cap: written (101 + 41 = 142 bytes)
        grown = "a" * 100 + "\n"
        write(bob_dir, "a.txt", grown)
        yield wait_for(lambda: read(self.host_dir, "a.txt") == grown, timeout=5)
        # past it (101 + 61 = 162 bytes): never on the host's disk, undone everywhere
        b_seen = self.watch_host_file("b.txt")
        write(bob_dir, "b.txt", "b" * 60 + "\n")
        message = (r"an edit by bob was undone: the shared files would be 162 bytes, over "
                   r"the host's limit of 150 bytes in total")
        yield self.host.wait_line(r"^\* workspace-full: b.txt: " + message)
        yield bob.wait_line(r"^\* warning from alice: " + message + r" \(b.txt\)")
        yield carol.wait_line(r"^\* warning from alice: " + message + r" \(b.txt\)")
        expected = {"a.txt": grown, "b.txt": b}
        yield wait_for(lambda: tree_of(bob_dir) == expected == tree_of(carol_dir), timeout=5)
        self.assertEqual(tree_of(self.host_dir), expected)
        self.assertEqual(b_seen, {b})
        self.assertIn("refused an edit of b.txt (workspace-full)",
                      self.host.errors.decode(errors="replace"))
        # an edit that does not grow the workspace past the cap still goes through
        write(carol_dir, "b.txt", "b" * 45 + "\n")
        yield wait_for(lambda: read(self.host_dir, "b.txt") == "b" * 45 + "\n"
                       and read(bob_dir, "b.txt") == "b" * 45 + "\n", timeout=5)

    @defer.inlineCallbacks
    def test_a_browser_core_edit_past_the_file_cap_is_undone_everywhere_with_a_notice(self):
        if not NODE_READY:
            raise unittest.SkipTest("needs node and js/node_modules (npm ci in js/)")
        small = "small 😀\n"  # 11 bytes; the cap is 100 per file
        yield self.start_share({"small.txt": small, "other.txt": "other\n"},
                               "--max-file-bytes", "100")
        carol, carol_dir = yield self.start_mirror("carol")
        ada = CliProcess(self, JS_GUEST, self.link, "ada", program=["node"])
        yield ada.wait_line(r'^\{"synced":true\}', timeout=30)
        small_seen = self.watch_host_file("small.txt")

        @defer.inlineCallbacks
        def ask(command: dict) -> dict:
            start = len(ada.lines)
            ada.send(json.dumps(command))
            line = yield ada.wait_line(r'^\{"(ok|snapshot|error)"', start=start)
            return json.loads(line)

        # the browser's editor does not refuse it: the host does (11 + 90 = 101 bytes)
        self.assertEqual((yield ask({"op": "insert", "path": "small.txt", "at": 8,
                                     "text": "x" * 90})), {"ok": True})
        message = (r"an edit by ada was undone: the file would be 101 bytes, over the host's "
                   r"limit of 100 bytes per file")
        yield self.host.wait_line(r"^\* too-large: small.txt: " + message)
        notice = json.loads((yield ada.wait_line(r'^\{"notice"')))["notice"]
        self.assertEqual(notice, {"from": 1, "level": "warning", "code": "too-large",
                                  "message": message.replace("\\", ""), "path": "small.txt"})
        yield carol.wait_line(r"^\* warning from alice: " + message + r" \(small.txt\)")

        @defer.inlineCallbacks
        def converged():
            for _ in range(100):  # about 5 s
                snapshot = (yield ask({"op": "snapshot"}))["snapshot"]
                if snapshot == tree_of(carol_dir) == tree_of(self.host_dir):
                    return snapshot
                yield sleep(0.05)
            raise AssertionError(f"no convergence: {snapshot} {tree_of(carol_dir)}")
        self.assertEqual((yield converged()), {"small.txt": small, "other.txt": "other\n"})
        self.assertEqual(small_seen, {small})
        self.assertIn("refused an edit of small.txt (too-large)",
                      self.host.errors.decode(errors="replace"))
        # an edit within the cap from the same guest reaches every disk
        self.assertEqual((yield ask({"op": "insert", "path": "small.txt", "at": 0,
                                     "text": "ok "})), {"ok": True})
        yield wait_for(lambda: read(self.host_dir, "small.txt") == "ok " + small
                       and read(carol_dir, "small.txt") == "ok " + small, timeout=5)
