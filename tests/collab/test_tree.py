"""What of a directory is shared: .gitignore (nested, negations), .git, binary files,
caps, path rules and symbolic links."""

from __future__ import annotations

import os
import shutil
import tempfile
import unittest

from ct.collab import tree


def make(root: str, files: dict[str, str | bytes]) -> None:
    for path, content in files.items():
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(content.encode() if isinstance(content, str) else content)


class ScanTests(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="ct-tree-")
        self.addCleanup(shutil.rmtree, self.root, True)

    def test_gitignore_nested_and_negated_and_git_skipped(self):
        make(self.root, {
            ".gitignore": "*.log\n!keep.log\nbuild/\n/only-root.txt\n",
            "a.log": "x", "keep.log": "kept", "only-root.txt": "x",
            "sub/only-root.txt": "shared: the rule is anchored at the root",
            "build/x.txt": "x", "sub/build/y.txt": "x",
            "sub/.gitignore": "secret*\n!secret-ok.txt\n",
            "sub/secret.txt": "x", "sub/secret-ok.txt": "ok", "sub/z.log": "x",
            ".git/config": "x", "src/main.py": "print()\n",
            ".ct-tmp-abc": "our own temporary file",
        })
        found = tree.scan(self.root)
        self.assertEqual(sorted(found.files), [
            ".gitignore", "keep.log", "src/main.py", "sub/.gitignore", "sub/only-root.txt",
            "sub/secret-ok.txt"])
        ignorer = tree.Ignorer(self.root)
        self.assertTrue(ignorer.ignored("build", is_dir=True))
        self.assertTrue(ignorer.ignored("sub/build/new.txt"))
        self.assertTrue(ignorer.ignored(".git/HEAD"))
        self.assertFalse(ignorer.ignored("src/new.py"))

    def test_binary_too_large_and_workspace_full_are_listed(self):
        make(self.root, {"a.txt": "a" * 10, "b.txt": "b" * 10, "c.txt": "c" * 10,
                         "big.txt": "x" * 100, "nul.txt": b"a\x00b", "latin1.txt": b"caf\xe9",
                         "utf8.txt": "café 😀"})
        found = tree.scan(self.root, max_file_bytes=50, max_workspace_bytes=35)
        reasons = {e["path"]: e["reason"] for e in found.unshared}
        self.assertEqual(reasons["big.txt"], "too-large")
        self.assertEqual(reasons["nul.txt"], "binary")
        self.assertEqual(reasons["latin1.txt"], "binary")
        self.assertIn("workspace-full", reasons.values())
        self.assertLessEqual(found.shared_bytes, 35)
        self.assertEqual({e["size"] for e in found.unshared if e["path"] == "big.txt"}, {100})

    def test_symbolic_links_leaving_the_root_are_refused(self):
        outside = tempfile.mkdtemp(prefix="ct-outside-")
        self.addCleanup(shutil.rmtree, outside, True)
        make(outside, {"secret.txt": "do not share"})
        make(self.root, {"in.txt": "in"})
        os.symlink(os.path.join(outside, "secret.txt"), os.path.join(self.root, "leak.txt"))
        os.symlink(outside, os.path.join(self.root, "leakdir"))
        os.symlink(os.path.join(self.root, "in.txt"), os.path.join(self.root, "alias.txt"))
        found = tree.scan(self.root)
        self.assertEqual(sorted(found.files), ["alias.txt", "in.txt"])
        self.assertEqual(sorted(p for p, _ in found.refused), ["leak.txt", "leakdir"])
        self.assertIsNone(tree.safe_target(self.root, "leak.txt"))
        self.assertIsNone(tree.safe_target(self.root, "leakdir/x.txt"))
        self.assertIsNone(tree.safe_target(self.root, "../x"))
        self.assertIsNone(tree.safe_target(self.root, ".git/config"))
        self.assertEqual(tree.safe_target(self.root, "new/dir/x.txt"),
                         os.path.join(self.root, "new", "dir", "x.txt"))


class PathTests(unittest.TestCase):
    def test_validate_path(self):
        for good in ("a", "src/main.py", "ünï/😀.txt", "a" * 1024):
            self.assertIsNone(tree.validate_path(good), good)
        for bad in ("", "/abs", "a/../b", "..", "./a", "a//b", "a/", "a\x00b", "a\\b",
                    "é" * 513, "\udc80"):
            self.assertIsNotNone(tree.validate_path(bad), bad)

    def test_decode_text(self):
        self.assertEqual(tree.decode_text("ok 😀".encode()), "ok 😀")
        self.assertIsNone(tree.decode_text(b"\x00"))
        self.assertIsNone(tree.decode_text(b"\xff"))
