"""pycrdt and yjs agree: the same update format, and the same characters at the positions
each side counts (Python code points here, UTF-16 code units in yjs), emoji and other
non-BMP text included.

The fixture below was made by real yjs 13 (``yjs_peer.cjs``) and always runs. The live
round trips run node with ``yjs``/``y-protocols`` from ``js/node_modules`` or from
``$YJS_NODE_MODULES`` (a folder with both installed), and are skipped without them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import unittest

from ct.collab import textdiff
from ct.collab.workspace import Awareness, Workspace, decode_awareness

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# yjs: files.set("a.txt", new Y.Text()); insert(0, "a😀b"); then insert(3, "X") — index 3
# in UTF-16 is after the emoji (a surrogate pair).
YJS_UPDATE = bytes.fromhex(
    "010491ecbdc8060027010566696c657305612e74787402040091ecbdc806000561f09f98808491ecbd"
    "c806030162c491ecbdc8060391ecbdc80604015800")
# y-protocols encodeAwarenessUpdate of {"user": {"name": "n", "participant": 2}}
YJS_AWARENESS = bytes.fromhex(
    "0191ecbdc80601257b2275736572223a7b226e616d65223a226e222c227061727469636970616e7422"
    "3a327d7d")


def _node_modules() -> str | None:
    for candidate in (os.environ.get("YJS_NODE_MODULES"), os.path.join(ROOT, "js", "node_modules")):
        if candidate and os.path.isdir(os.path.join(candidate, "yjs")) \
                and os.path.isdir(os.path.join(candidate, "y-protocols")):
            return candidate
    return None


def run_yjs(request: dict) -> dict:
    modules = _node_modules()
    out = subprocess.run(["node", os.path.join(HERE, "yjs_peer.cjs")],
                         input=json.dumps(request).encode(), capture_output=True, timeout=30,
                         env={**os.environ, "NODE_PATH": modules}, check=True)
    return json.loads(out.stdout)


class FixtureTest(unittest.TestCase):
    def test_yjs_update_reads_back_with_the_same_characters(self):
        ws = Workspace()
        self.assertEqual(ws.apply(YJS_UPDATE), {"a.txt"})
        self.assertEqual(ws.text("a.txt"), "a😀Xb")

    def test_code_point_edits_after_a_surrogate_pair(self):
        ws = Workspace()
        ws.apply(YJS_UPDATE)
        ws.edit("a.txt", [textdiff.Edit(2, 3, "Y")])  # replace "X" (code point 2)
        self.assertEqual(ws.text("a.txt"), "a😀Yb")
        other = Workspace()
        other.apply(ws.update_for(None))
        self.assertEqual(other.text("a.txt"), "a😀Yb")

    def test_yjs_awareness_update_decodes(self):
        [(client, clock, state)] = decode_awareness(YJS_AWARENESS)
        self.assertEqual((client, clock), (1762620945, 1))
        self.assertEqual(state, {"user": {"name": "n", "participant": 2}})
        aw = Awareness(client_id=7)
        changed, refused = aw.apply(YJS_AWARENESS, sender=2)
        self.assertEqual((changed, refused), ({1762620945}, []))


@unittest.skipUnless(shutil.which("node") and _node_modules(),
                     "needs node with yjs and y-protocols (js/node_modules or $YJS_NODE_MODULES)")
class LiveYjsTest(unittest.TestCase):
    def test_round_trip_with_non_bmp_text(self):
        ws = Workspace()
        ws.put("src/ünï.txt", "a😀b\n𝄞 clef\n")
        ws.put("src/ünï.txt", "a😀Zb\n𝄞 G clef\n")  # minimal edits after astral characters
        # yjs: UTF-16 index 3 is after "a😀" ("a" 1 + surrogate pair 2)
        answer = run_yjs({"update": ws.update_for(None).hex(),
                          "edits": [["src/ünï.txt", 3, 1, "Q"]]})
        self.assertEqual(answer["files"]["src/ünï.txt"], "a😀Qb\n𝄞 G clef\n")
        ws.apply(bytes.fromhex(answer["update"]))
        self.assertEqual(ws.text("src/ünï.txt"), "a😀Qb\n𝄞 G clef\n")
        # and a Python edit after yjs's: position 9 in code points is after "𝄞 G "
        ws.edit("src/ünï.txt", [textdiff.Edit(9, 9, "big ")])
        again = run_yjs({"update": ws.update_for(None).hex(), "edits": []})
        self.assertEqual(again["files"]["src/ünï.txt"], "a😀Qb\n𝄞 G big clef\n")

    def test_concurrent_edits_converge(self):
        ws = Workspace()
        ws.put("f", "😀😀😀\n")
        base = ws.update_for(None)
        answer = run_yjs({"update": base.hex(), "edits": [["f", 2, 0, "J"]]})
        ws.edit("f", [textdiff.Edit(2, 2, "P")])
        mine = ws.update_for(None)
        ws.apply(bytes.fromhex(answer["update"]))
        # yjs applies Python's state on top of its own
        both = run_yjs({"update": _merge(answer["update"], mine.hex()), "edits": []})
        self.assertEqual(both["files"]["f"], ws.text("f"))
        self.assertIn("J", ws.text("f"))
        self.assertIn("P", ws.text("f"))
        self.assertTrue(ws.text("f").startswith("😀J") or ws.text("f").startswith("😀😀P"))

    def test_awareness_both_ways(self):
        aw = Awareness(client_id=4242)
        ours = aw.set_local({"user": {"name": "Ada", "participant": 1}, "file": None,
                             "cursor": None})
        answer = run_yjs({"update": None, "edits": [],
                          "awareness": {"apply": ours.hex(),
                                        "state": {"user": {"name": "Bo", "participant": 3}}}})
        self.assertEqual(answer["states"]["4242"]["user"]["name"], "Ada")
        changed, refused = aw.apply(bytes.fromhex(answer["awareness"]), sender=3)
        self.assertEqual(changed, {answer["clientID"]})
        self.assertEqual(refused, [])


def _merge(a_hex: str, b_hex: str) -> str:
    from pycrdt import merge_updates
    return merge_updates(bytes.fromhex(a_hex), bytes.fromhex(b_hex)).hex()
