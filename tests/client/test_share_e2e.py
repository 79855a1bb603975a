"""``ct-client share DIR`` and ``ct-client join LINK --mirror DIR`` end to end: a real edge,
the real CLI in child processes, real directories watched with inotify."""

from __future__ import annotations

import os
import re
import shutil
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
            if name.startswith(".ct-tmp-"):
                continue  # an atomic write under way
            full = os.path.join(directory, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            try:
                with open(full, "rb") as f:
                    out[rel] = f.read().decode("utf-8", "replace")
            except FileNotFoundError:
                continue
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
        yield mirror.wait_line(r"not shared by the host: logo.png \(binary")
        yield mirror.wait_line(r"not shared by the host: big.txt \(too-large, 5000 bytes")
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
        # directories: created with files, renamed, deleted (then watching still works)
        write(self.host_dir, "newdir/sub/deep.txt", "deep\n")
        yield wait_for(lambda: read(mdir, "newdir/sub/deep.txt") == "deep\n", timeout=3)
        os.rename(os.path.join(self.host_dir, "newdir"), os.path.join(self.host_dir, "moved"))
        yield wait_for(lambda: read(mdir, "moved/sub/deep.txt") == "deep\n"
                       and not os.path.exists(os.path.join(mdir, "newdir")), timeout=3)
        shutil.rmtree(os.path.join(self.host_dir, "moved"))
        yield wait_for(lambda: not os.path.exists(os.path.join(mdir, "moved")), timeout=3)
        write(self.host_dir, "docs/new.md", "new\nafter the directory went\n")
        yield wait_for(lambda: read(mdir, "docs/new.md") == "new\nafter the directory went\n",
                       timeout=3)
        write(mdir, "docs/new.md", "new\nafter the directory went\nand back\n")
        yield wait_for(lambda: read(self.host_dir, "docs/new.md") ==
                       "new\nafter the directory went\nand back\n", timeout=3)
        # .gitignore changes apply at once: now hidden, then shown again
        with open(os.path.join(self.host_dir, ".gitignore"), "a") as f:
            f.write("emoji.txt\n")
        yield wait_for(lambda: read(mdir, "src/emoji.txt") is None, timeout=3)
        write(self.host_dir, ".gitignore", "*.log\nbuild/\n")
        yield wait_for(lambda: read(mdir, "src/emoji.txt") == "😀 ok\n", timeout=3)
        # an emoji-aware minimal edit from the mirror
        write(mdir, "src/ünï😀.txt", "a😀Xb\n")
        yield wait_for(lambda: read(self.host_dir, "src/ünï😀.txt") == "a😀Xb\n", timeout=2)
        shared = {p: t for p, t in tree_of(self.host_dir).items()
                  if p not in ("debug.log", "build/out.txt", "logo.png", "big.txt", "other.log")}
        yield wait_for(lambda: tree_of(mdir) == shared, timeout=3)
        mirror.close_input()
        yield mirror.wait_exit()
        yield self.host.wait_line(r"^\* bob left")


class AtomicWriteTests(ShareCase):
    @defer.inlineCallbacks
    def test_a_reader_never_sees_a_partial_file(self):
        versions = [("version %d " % i) * 40000 + "\n" for i in range(6)]  # ~400 KB each
        yield self.start_share({"big.txt": versions[0]})
        mirror, mdir = yield self.start_mirror()
        target = os.path.join(mdir, "big.txt")
        yield wait_for(lambda: read(mdir, "big.txt") == versions[0], timeout=10)
        seen, bad = set(), []

        def look():
            with open(target, encoding="utf-8") as f:
                text = f.read()
            if text in versions:
                seen.add(versions.index(text))
            else:
                bad.append(len(text))
        from twisted.internet.task import LoopingCall
        watcher = LoopingCall(look)
        watcher.start(0.001)
        self.addCleanup(lambda: watcher.running and watcher.stop())
        for version in versions[1:]:
            write(self.host_dir, "big.txt", version)
            yield sleep(0.4)
        yield wait_for(lambda: read(mdir, "big.txt") == versions[-1], timeout=10)
        watcher.stop()
        self.assertEqual(bad, [], "a reader saw a partial or mixed file")
        self.assertGreaterEqual(len(seen), 3)
        mode_before = os.stat(os.path.join(self.host_dir, "big.txt")).st_mode
        os.chmod(os.path.join(self.host_dir, "big.txt"), 0o640)
        write(mdir, "big.txt", versions[0])
        yield wait_for(lambda: read(self.host_dir, "big.txt") == versions[0], timeout=5)
        self.assertEqual(os.stat(os.path.join(self.host_dir, "big.txt")).st_mode & 0o777, 0o640)
        self.assertNotEqual(mode_before & 0o777, 0)
        leftovers = [n for n in os.listdir(self.host_dir) + os.listdir(mdir) if "ct-tmp" in n]
        self.assertEqual(leftovers, [])


class ConvergenceTests(ShareCase):
    timeout = 300

    @defer.inlineCallbacks
    def test_500_files_5_mb_with_concurrent_edits(self):
        files = {}
        for n in range(500):
            body = "".join(f"file {n} line {i}: {'lorem ipsum dolor sit amet ' * 3}\n"
                           for i in range(105))
            files[f"pkg{n % 20}/module_{n}.py"] = body
        total = sum(len(v.encode()) for v in files.values())
        self.assertGreater(total, 5_000_000)
        yield self.start_share(files)
        mirror, mdir = yield self.start_mirror()
        yield wait_for(lambda: len(tree_of(mdir)) == 500, timeout=60)
        yield wait_for(lambda: self.converged(self.host_dir, mdir), timeout=30)
        markers = []
        for round_ in range(8):
            # each round starts from a settled state (a person's editor would not save over
            # a file it has not reloaded), then both disks change at the same instant
            yield wait_for(lambda: self.converged(self.host_dir, mdir), timeout=20)
            yield sleep(0.2)
            path = "pkg3/module_3.py"
            host_text, mirror_text = read(self.host_dir, path), read(mdir, path)
            lines_h, lines_m = host_text.split("\n"), mirror_text.split("\n")
            lines_h.insert(round_ * 7, f"# host edit {round_}")
            lines_m.insert(len(lines_m) - 1 - round_ * 5, f"# mirror edit {round_}")
            write(self.host_dir, path, "\n".join(lines_h))  # the same instant on both disks
            write(mdir, path, "\n".join(lines_m))
            other = f"pkg{round_}/module_{100 + round_}.py"
            write(mdir, other, read(mdir, other) + f"# mirror tail {round_}\n")
            write(self.host_dir, f"pkg{round_}/new_{round_}.py", f"new {round_}\n")
            markers += [f"# host edit {round_}", f"# mirror edit {round_}",
                        f"# mirror tail {round_}"]
        yield wait_for(lambda: self.converged(self.host_dir, mdir), timeout=20)
        yield sleep(0.5)  # nothing further moves
        self.assertTrue(self.converged(self.host_dir, mdir))
        everything = "".join(tree_of(self.host_dir).values())
        for marker in markers:
            self.assertEqual(everything.count(marker + "\n"), 1, marker)
        self.assertEqual(len(tree_of(mdir)), 508)


class ReadOnlyAndCommandsTests(ShareCase):
    @defer.inlineCallbacks
    def test_read_only_guest_edits_are_not_applied_then_kick(self):
        yield self.start_share({"a.txt": "original\n"}, "--read-only")
        wrong = re.sub(r"token=[^&#]+", "token=wrong", self.link)
        refused = CliProcess(self, "join", wrong, "--name", "eve", "--mirror", self.make_dir())
        yield refused.wait_exit()
        self.assertEqual(refused.status, 1)
        self.assertIn("* could not join: forbidden", refused.output)
        self.assertNotIn("Traceback", refused.errors.decode(errors="replace"))
        mirror, mdir = yield self.start_mirror()
        write(mdir, "a.txt", "guest was here\n")
        yield mirror.wait_line(r"read-only session")
        yield wait_for(lambda: read(mdir, "a.txt") == "original\n", timeout=5)
        yield sleep(0.5)
        self.assertEqual(read(self.host_dir, "a.txt"), "original\n")
        # the host still reaches the guest
        write(self.host_dir, "a.txt", "host edit\n")
        yield wait_for(lambda: read(mdir, "a.txt") == "host edit\n", timeout=5)
        # editable again
        self.host.send("/readonly off")
        yield mirror.wait_line(r"now editable")
        write(mdir, "a.txt", "host edit\nguest edit\n")
        yield wait_for(lambda: read(self.host_dir, "a.txt") == "host edit\nguest edit\n",
                       timeout=5)
        start = len(self.host.lines)
        self.host.send("/who")
        yield self.host.wait_line(r"#2 bob \(guest", start=start)
        self.host.send("/kick bob")
        yield mirror.wait_line(r"session over: removed")
        yield mirror.wait_exit()
        yield self.host.wait_line(r"^\* bob left")
        self.assertEqual(read(self.host_dir, "a.txt"), "host edit\nguest edit\n")
        self.host.send("/end")
        yield self.host.wait_line(r"session over")
        yield self.host.wait_exit()


class ResumeTests(ShareCase):
    timeout = 240

    @defer.inlineCallbacks
    def mirror_through_proxy(self):
        from tests.locator.tcpproxy import CuttableProxy
        port = int(self.url.rsplit(":", 1)[1])
        proxy = CuttableProxy("127.0.0.1", port)
        self.addCleanup(proxy.stop)
        mirror, mdir = yield self.start_mirror(server=f"http://127.0.0.1:{proxy.port}")
        return proxy, mirror, mdir

    @defer.inlineCallbacks
    def test_cut_for_5_s_resumes_and_converges(self):
        yield self.start_share({"notes.txt": "start\n", "b.txt": "b\n"})
        proxy, mirror, mdir = yield self.mirror_through_proxy()
        proxy.cut()
        for n in range(10):
            write(self.host_dir, "notes.txt", read(self.host_dir, "notes.txt") + f"host {n}\n")
            yield sleep(0.25)
        write(mdir, "b.txt", "b\nmirror while cut off\n")  # queued, sent on resume
        yield sleep(2.5)
        proxy.restore()
        yield mirror.wait_line(r"^\* resumed$", timeout=30)
        yield wait_for(lambda: self.converged(self.host_dir, mdir), timeout=15)
        self.assertIn("host 9\n", read(mdir, "notes.txt"))
        self.assertEqual(read(self.host_dir, "b.txt"), "b\nmirror while cut off\n")

    @defer.inlineCallbacks
    def test_resume_with_lost_frames_syncs_again(self):
        yield self.start_share({"notes.txt": "start\n"}, CT_REPLAY_MAX_FRAMES=16)
        proxy, mirror, mdir = yield self.mirror_through_proxy()
        proxy.cut()
        for n in range(40):  # more frames than the replay log keeps
            write(self.host_dir, "notes.txt", read(self.host_dir, "notes.txt") + f"host {n}\n")
            yield sleep(0.1)
        proxy.restore()
        yield mirror.wait_line(r"messages were lost meanwhile: synchronising again", timeout=30)
        yield wait_for(lambda: self.converged(self.host_dir, mdir), timeout=15)
        self.assertIn("host 39\n", read(mdir, "notes.txt"))
        # and it still works both ways afterwards
        write(mdir, "notes.txt", read(mdir, "notes.txt") + "mirror after resync\n")
        yield wait_for(lambda: "mirror after resync" in read(self.host_dir, "notes.txt"),
                       timeout=5)


class BadInputTests(ShareCase):
    @defer.inlineCallbacks
    def test_malformed_and_unknown_messages_are_dropped_and_logged(self):
        from twisted.internet import reactor

        from ct.client.crypto import SessionKey
        from ct.client.session import SessionClient
        from ct.collab import messages
        yield self.start_share({"a.txt": "one\n"})
        mirror, mdir = yield self.start_mirror()
        mallory = SessionClient.from_link(reactor, self.link, "mallory")
        yield mallory.join_link()
        self.addCleanup(lambda: mallory._over or mallory.leave())
        good_key = mallory.key
        evil = [
            b"\x42whatever",                       # unknown kind: ignored by contract
            b"\x01",                               # sync-step1 without flags
            b"\x03not a yjs update",
            b"\x02\x00\x01\x02",
            b"\x04\xff\xff\xff",                   # truncated awareness
            b"\x04" + bytes([1, 5, 1, 2]) + b"{}",  # awareness that claims nobody
            b"\x05" + b'{"v": 1, "readOnly": true}',  # a policy from a guest
            b"\x06" + b"[1, 2]",
            b"\x7f\x00",                           # chunk shorter than its header
            b"\x7f" + (9).to_bytes(4, "big") + (3).to_bytes(4, "big")
            + (5).to_bytes(4, "big") + b"x",       # chunk 3 of an unknown message
            b"\x7f" + (7).to_bytes(4, "big") + (0).to_bytes(4, "big")
            + (1).to_bytes(4, "big") + b"\x7fnested",
        ]
        for payload in evil:
            mallory.send(payload)
        mallory.send("a text line, as the old join sends")
        mallory.key = SessionKey.generate()  # a frame that does not decrypt
        mallory.send(messages.update(b"\x00\x00"))
        mallory.key = good_key
        yield sleep(0.5)
        # both sides still work, and the guest's policy did not make anything read-only
        write(mdir, "a.txt", "one\ntwo\n")
        yield wait_for(lambda: read(self.host_dir, "a.txt") == "one\ntwo\n", timeout=5)
        write(self.host_dir, "a.txt", "one\ntwo\nthree\n")
        yield wait_for(lambda: read(mdir, "a.txt") == "one\ntwo\nthree\n", timeout=5)
        errors = self.host.errors.decode(errors="replace")
        self.assertIn("dropped a message from participant 3", errors)
        self.assertIn("ignored a policy from participant 3", errors)
        self.assertIn("does not decrypt", errors)
        self.assertNotIn("Traceback", errors + mirror.errors.decode(errors="replace"))
        self.assertIsNone(self.host.status)
        self.assertIsNone(mirror.status)
        # SIGTERM: the host leaves cleanly, which ends the session; the mirror stops
        import signal
        self.host.transport.signalProcess(signal.SIGTERM)
        status = yield self.host.wait_exit()
        self.assertEqual(status, 0, self.host.errors.decode(errors="replace")[-3000:])
        yield mirror.wait_line(r"session over: session-ended")
        self.assertEqual((yield mirror.wait_exit()), 0)
        self.assertEqual(read(mdir, "a.txt"), "one\ntwo\nthree\n")


class CapsTests(ShareCase):
    @defer.inlineCallbacks
    def test_size_cap_on_both_sides(self):
        yield self.start_share({"small.txt": "small\n", "grow.txt": "grow\n"},
                               "--max-file-bytes", "100")
        mirror, mdir = yield self.start_mirror()
        # a mirror edit past the cap is not sent; the others get a notice
        write(mdir, "small.txt", "y" * 200)
        yield mirror.wait_line(r"would pass 100 bytes")
        yield self.host.wait_line(r"warning from bob: .*size cap \(small.txt\)")
        yield wait_for(lambda: read(mdir, "small.txt") == "small\n", timeout=5)
        self.assertEqual(read(self.host_dir, "small.txt"), "small\n")
        # a host file that grows past the cap leaves the session, and comes back
        write(self.host_dir, "grow.txt", "z" * 150)
        yield wait_for(lambda: read(mdir, "grow.txt") is None, timeout=5)
        write(self.host_dir, "grow.txt", "fits again\n")
        yield wait_for(lambda: read(mdir, "grow.txt") == "fits again\n", timeout=5)
        # a new file on the mirror stays local
        write(mdir, "local.txt", "mine\n")
        yield mirror.wait_line(r"not shared: local.txt \(only the host adds files\)")
        self.assertIsNone(read(self.host_dir, "local.txt"))


class LocatorTests(ShareCase):
    @defer.inlineCallbacks
    def test_share_through_a_locator_prints_a_locator_link(self):
        from tests.deployment.util import Deployment
        deployment = Deployment(self)
        deployment.start_locator()
        deployment.start_edge("e1")
        yield deployment.wait_online(["e1"])
        self.host_dir = self.make_dir()
        write(self.host_dir, "hello.txt", "hello\n")
        self.host = CliProcess(self, "share", self.host_dir, "--locator",
                               deployment.locator_url, "--name", "alice")
        yield self.host.wait_line(r"placed this session on edge e1", timeout=30)
        line = yield self.host.wait_line(r"^https?://.*/join/")
        self.assertTrue(line.startswith(deployment.locator_url + "/join/"), line)
        self.link = line.strip()
        mirror, mdir = yield self.start_mirror()
        yield wait_for(lambda: read(mdir, "hello.txt") == "hello\n", timeout=10)
        write(mdir, "hello.txt", "hello\nthrough the locator's link\n")
        yield wait_for(lambda: read(self.host_dir, "hello.txt") ==
                       "hello\nthrough the locator's link\n", timeout=5)
