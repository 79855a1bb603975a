"""The browser guest app in headless Chromium against a real edge and a real host.

Screenshots go to ``test-artifacts/webclient/``. The host is ``ct-client share`` on a
temporary directory (the acceptance scenarios: edits reach the disk, disk edits reach the
browsers), or the JavaScript client core in Node (``node_host.mjs``, a workspace in memory
it can steer: open a file, set the policy) where the test needs that.
"""

from __future__ import annotations

import base64
import shutil
import tempfile
import time
import unittest
from pathlib import Path

import pytest

from tests.dashboard.browser import missing
from tests.webclient.support import (
    ARTIFACTS, AppPage, CapturingProxy, NodeHost, ShareHost, encoded_forms, start_edge, wait_until)

pytestmark = pytest.mark.slow

FILES = {
    "README.md": "# Demo project\n\nShared from the test.\n",
    "src/main.py": "def main():\n    print('hello')\n",
    "src/util.js": "export const answer = 42;\n",
}


class BrowserTestCase(unittest.TestCase):
    def setUp(self):
        reason = missing()
        if reason:
            self.skipTest(reason)

    def share(self, url: str, files=FILES, args=(), locator: bool = False) -> ShareHost:
        """``ct-client share`` on a fresh directory holding ``files``."""
        work = Path(tempfile.mkdtemp(prefix="ct-share-"))
        self.addCleanup(shutil.rmtree, work, True)
        (work / "project").mkdir()
        return ShareHost(self, url, work / "project", files, args=args, locator=locator)


class TwoBrowsersTests(BrowserTestCase):
    def test_two_browsers_edit_with_the_host(self):
        started_at = time.time()
        _, url = start_edge(self)
        host = self.share(url)
        a, b = AppPage(self), AppPage(self)
        a.join(host.link, "Ada", shot="00-name-prompt")
        b.join(host.link, "Bob")
        for page in (a, b):
            wait_until(lambda: sorted(page.people()) == ["Ada", "Bob", "Hannah Host"], 10,
                       "participants list")
            wait_until(lambda: page.path() == "README.md", 10, "README.md open first")
        a.screenshot("01-a-joined")

        # A types in a file: the file on disk has it within a second.
        a.type_at_end("Typed by Ada.")
        started = time.monotonic()
        wait_until(lambda: "Typed by Ada." in (host.read("README.md") or ""), 1.0,
                   "A's typing on the host's disk")
        self.assertLess(time.monotonic() - started, 1.0)
        wait_until(lambda: "Typed by Ada." in b.editor_text(), 5, "A's typing in B")
        self.assertIsNone(a.js("return window.ctApp.following"))  # typing stops following
        self.assertEqual(b.js("return window.ctApp.following"), 1)

        # Participants get distinct colours, the same on both pages.
        colours_a, colours_b = a.people_colours(), b.people_colours()
        self.assertEqual(sorted(colours_a), ["Ada", "Bob", "Hannah Host"])
        self.assertEqual(colours_a, colours_b)
        self.assertEqual(len(set(colours_a.values())), 3, colours_a)

        # A selects a range (the first line): B renders it, in A's colour, with A's name.
        a.select_first_line()
        selected = FILES["README.md"].split("\n", 1)[0]
        wait_until(lambda: "".join(b.remote_selections()) == selected, 5,
                   "A's selection rendered in B")
        wait_until(lambda: b.caret_names() == ["Ada"], 5, "A's caret with A's name in B")
        ada = colours_b["Ada"]
        self.assertEqual(b.js("return getComputedStyle(document.querySelector("
                              "'.cm-ySelectionCaret')).borderLeftColor"), ada)
        shade = b.js("return getComputedStyle(document.querySelector('.cm-ySelection'))"
                     ".backgroundColor")
        self.assertTrue(shade.startswith(ada.replace("rgb(", "rgba(").rstrip(")") + ","), shade)
        b.screenshot("02-b-sees-a-selection")

        # The host changes another file on disk while both have it open: both editors
        # show it live, with nothing clicked or reopened.
        for page in (a, b):
            page.open_file("src/main.py")
        host.write("src/main.py", "def main():\n    print('changed by the host')\n")
        for page in (a, b):
            wait_until(lambda: "changed by the host" in page.shown_text(), 5,
                       "the host's change shown live")
            self.assertEqual(page.path(), "src/main.py")
            self.assertEqual(page.editor_text(), host.read("src/main.py"))
        a.screenshot("03-a-host-change")
        b.screenshot("03-b-host-change")

        # A file created on disk appears in both trees; one deleted goes away.
        host.write("docs/new.md", "new on disk\n")
        (host.dir / "src" / "util.js").unlink()
        for page in (a, b):
            wait_until(lambda: "docs/new.md" in page.js("return window.ctApp.paths()")
                       and "src/util.js" not in page.js("return window.ctApp.paths()"), 5,
                       "the tree follows the disk")
            wait_until(lambda: page.js("return !!document.querySelector("
                                       "'button.ct-file[data-path=\"docs/new.md\"]')"), 5,
                       "new.md in the tree")
        b.screenshot("03-b-tree-follows-disk")
        for name in ("00-name-prompt", "01-a-joined", "02-b-sees-a-selection",
                     "03-a-host-change", "03-b-host-change", "03-b-tree-follows-disk"):
            shot = ARTIFACTS / f"{name}.png"  # fresh from this run, and a real image
            self.assertGreater(shot.stat().st_mtime, started_at - 1, shot)
            self.assertEqual(shot.read_bytes()[:8], b"\x89PNG\r\n\x1a\n", shot)
            self.assertGreater(shot.stat().st_size, 10_000, shot)


class FollowAndPolicyTests(BrowserTestCase):
    def test_follow_the_host_read_only_and_unshared_files(self):
        _, url = start_edge(self)
        host = NodeHost(self, url, FILES)
        host.policy(unshared=[{"path": "logo.png", "size": 20480, "reason": "binary"},
                              {"path": "data/big.csv", "size": 5 << 20, "reason": "too-large"}])
        b = AppPage(self)
        b.join(host.link, "Bob")
        self.assertEqual(b.js("return window.ctApp.following"), 1)  # the host, by default
        host.open("src/util.js")
        wait_until(lambda: b.path() == "src/util.js", 10, "B follows the host to util.js")
        unshared = b.js("return [...document.querySelectorAll('.ct-unshared')]"
                        ".map(e => [e.dataset.path, e.dataset.reason])")
        self.assertEqual(sorted(unshared), [["data/big.csv", "too-large"], ["logo.png", "binary"]])
        self.assertFalse(b.js("return document.querySelector('button.ct-file[data-path=\"logo.png\"]')"))
        b.screenshot("15-follow-and-unshared")
        b.open_file("README.md")  # picking a file stops following
        self.assertIsNone(b.js("return window.ctApp.following"))
        host.open("src/main.py")
        time.sleep(0.5)
        self.assertEqual(b.path(), "README.md")
        b.browser.find("#ct-follow-host").click()
        wait_until(lambda: b.path() == "src/main.py", 10, "following the host again")

        # Read-only: the badge shows, typing changes nothing, the host's edits still arrive.
        self.assertTrue(b.js("return document.querySelector('#ct-readonly').hidden"))
        host.policy(readOnly=True)
        wait_until(lambda: not b.js("return document.querySelector('#ct-readonly').hidden"), 5,
                   "read-only badge")
        before = b.editor_text()
        b.type_at_end("should not appear")
        time.sleep(0.5)
        self.assertEqual(b.editor_text(), before)
        self.assertEqual(host.read("src/main.py"), before)
        host.append("src/main.py", "# host still edits\n")
        wait_until(lambda: "host still edits" in b.editor_text(), 5, "the host's edit in B")
        b.screenshot("16-read-only")


class BigWorkspaceTests(BrowserTestCase):
    def test_a_500_file_5_mb_workspace_reaches_the_browser(self):
        _, url = start_edge(self)
        line = "x = 'abcdefghijklmnopqrstuvwxyz0123456789' * 2  # a line of filler\n"
        files = {f"pkg{i // 50}/mod{i}.py": line * (10_000 // len(line)) for i in range(500)}
        self.assertGreater(sum(len(t) for t in files.values()), 4_900_000)
        host = self.share(url, files)
        a = AppPage(self)
        started = time.monotonic()
        a.join(host.link, "Ada")
        wait_until(lambda: len(a.js("return window.ctApp.paths()")) == 500, 30, "500 files")
        wait_until(lambda: a.path() is not None, 10, "a file open")
        elapsed = time.monotonic() - started
        self.assertLess(elapsed, 20)  # about half a second on loopback
        a.open_file("pkg9/mod499.py")
        a.type_at_end("# typed in a big workspace")
        wait_until(lambda: "typed in a big workspace" in host.read("pkg9/mod499.py"), 2,
                   "A's edit on disk")
        self.assertEqual(a.editor_text(), host.read("pkg9/mod499.py"))
        a.screenshot("19-big-workspace")


class ResumeTests(BrowserTestCase):
    def test_a_cut_connection_resumes_and_everyone_converges(self):
        _, url = start_edge(self)
        host = self.share(url)
        port = int(url.rsplit(":", 1)[1])
        proxy = CapturingProxy("127.0.0.1", port)
        self.addCleanup(proxy.stop)
        a, b = AppPage(self), AppPage(self)
        a.join(host.link.replace(url, f"http://127.0.0.1:{proxy.port}"), "Ada")
        b.join(host.link, "Bob")
        for page in (a, b):
            wait_until(lambda: page.path() == "README.md", 10, "README.md open")

        proxy.cut()
        a.wait_status("reconnecting", timeout=10)
        a.screenshot("04-a-reconnecting")
        cut_at = time.monotonic()
        a.type_at_end(" A-offline")  # kept by A's client until the edge has it
        b.type_at_end(" B-during-cut")
        # One after the other: a disk write racing the share's own write of B's keystrokes
        # can be overwritten (no file system offers compare-and-replace).
        wait_until(lambda: "B-during-cut" in host.read("README.md"), 5, "B's edit on disk")
        host.append("README.md", " Host-during-cut")
        host.write("src/util.js", "export const answer = 43; // host, during the cut\n")
        wait_until(lambda: "Host-during-cut" in b.editor_text(), 5, "the host's edit in B")
        time.sleep(max(0.0, 5.0 - (time.monotonic() - cut_at)))
        proxy.restore()
        a.wait_status("resumed", "connected", timeout=20)
        a.screenshot("05-a-resumed")

        def converged():
            disk = host.read("README.md")
            return disk if disk == a.editor_text() == b.editor_text() else None

        text = wait_until(converged, 10, "host, A and B identical")
        for edit in ("A-offline", "B-during-cut", "Host-during-cut"):  # no edit lost
            self.assertIn(edit, text)
        a.open_file("src/util.js")
        wait_until(lambda: a.editor_text() == host.read("src/util.js"), 5, "util.js in A")
        self.assertIn("during the cut", a.editor_text())


    def test_resume_without_full_replay_resyncs(self):
        # A small replay log: what B types while A is away overflows it.
        _, url = start_edge(self, CT_REPLAY_MAX_FRAMES="16")
        host = self.share(url)
        proxy = CapturingProxy("127.0.0.1", int(url.rsplit(":", 1)[1]))
        self.addCleanup(proxy.stop)
        a, b = AppPage(self), AppPage(self)
        a.join(host.link.replace(url, f"http://127.0.0.1:{proxy.port}"), "Ada")
        b.join(host.link, "Bob")
        wait_until(lambda: a.path() == "README.md" and b.path() == "README.md", 10, "open")
        proxy.cut()
        a.wait_status("reconnecting", timeout=10)
        b.type_at_end(" " + "many keystrokes from Bob " * 3)
        wait_until(lambda: "many keystrokes" in host.read("README.md"), 5, "B's edit on disk")
        proxy.restore()
        a.wait_status("resumed", timeout=20)
        self.assertIn("resyncing", a.js("return window.ctApp.statuses"))
        wait_until(lambda: a.editor_text() == b.editor_text() == host.read("README.md"), 10,
                   "A caught up after the resync")

    def test_away_longer_than_the_resume_window(self):
        _, url = start_edge(self, CT_RESUME_WINDOW="1")
        host = self.share(url)
        proxy = CapturingProxy("127.0.0.1", int(url.rsplit(":", 1)[1]))
        self.addCleanup(proxy.stop)
        a = AppPage(self)
        a.join(host.link.replace(url, f"http://127.0.0.1:{proxy.port}"), "Ada")
        proxy.cut()
        a.wait_status("reconnecting", timeout=10)
        time.sleep(3)
        proxy.restore()
        a.wait_page("resume-expired")
        a.screenshot("17-resume-expired")


class EndTests(BrowserTestCase):
    def test_host_removes_b_then_ends_the_session(self):
        _, url = start_edge(self)
        host = self.share(url)
        a, b = AppPage(self), AppPage(self)
        a.join(host.link, "Ada")
        b.join(host.link, "Bob")
        wait_until(lambda: a.path() == "README.md", 10, "README.md open in A")
        a.type_at_end("Last words from Ada.")
        wait_until(lambda: "Last words from Ada." in host.read("README.md"), 5, "A's edit on disk")
        bob = b.js("return window.ctApp.participant")
        host.kick(bob)
        b.wait_page("removed")
        self.assertIn("removed", b.browser.text("h1"))
        b.screenshot("06-b-removed")
        wait_until(lambda: sorted(a.people()) == ["Ada", "Hannah Host"], 10, "Bob gone in A")
        host.end()
        a.wait_page("ended")
        self.assertIn("ended", a.browser.text("h1"))
        a.screenshot("07-a-ended")
        # The disk is intact: every file as it was last, A's edit in, no stray files.
        host.proc.wait(timeout=15)
        self.assertEqual(host.read("README.md"), FILES["README.md"] + "Last words from Ada.")
        for path in ("src/main.py", "src/util.js"):
            self.assertEqual(host.read(path), FILES[path])
        self.assertEqual(sorted(str(p.relative_to(host.dir)) for p in host.dir.rglob("*")
                                if p.is_file()), sorted(FILES))


class CaptureTests(BrowserTestCase):
    def test_no_plaintext_and_no_key_between_browser_and_edge(self):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        _, url = start_edge(self)
        secret_file = "TOP-SECRET-CONTENT-" + "x" * 8
        host = self.share(url, {**FILES, "secret.txt": secret_file + "\n"})
        port = int(url.rsplit(":", 1)[1])
        proxy = CapturingProxy("127.0.0.1", port)
        self.addCleanup(proxy.stop)
        a = AppPage(self)
        a.join(host.link.replace(url, f"http://127.0.0.1:{proxy.port}"), "Ada")
        a.open_file("secret.txt")
        typed = "TYPED-BY-ADA-PLAINTEXT"
        a.type_at_end(typed)
        wait_until(lambda: typed in host.read("secret.txt"), 5, "A's edit")
        host.append("src/util.js", "// HOST-WROTE-THIS-ON-DISK\n")  # host -> edge -> A
        wait_until(lambda: "HOST-WROTE-THIS-ON-DISK" in a.js("return window.ctApp.fileText("
                                                            "'src/util.js')"), 5,
                   "the host's edit in A")
        key_text = host.link.split("#key=", 1)[1]
        key = base64.urlsafe_b64decode(key_text + "=" * (-len(key_text) % 4))
        self.assertEqual(len(key), 32)
        aes = AESGCM(key)

        def opened(payload: bytes) -> bytes:
            """A data frame's payload: nonce(12) | AES-256-GCM(plaintext, aad=session)."""
            return aes.decrypt(payload[:12], payload[12:], host.session.encode())

        # Every connection, each direction, as captured; the websocket ones frame by frame.
        connections = proxy.captured()
        self.assertGreaterEqual(len(connections), 2)  # at least the page and the socket
        sockets = [c for c in connections if c.is_websocket]
        self.assertTrue(sockets, [bytes(c.downstream[:40]) for c in connections])
        self.assertIn(b"GET /join/", b"".join(bytes(c.upstream) for c in connections))
        up = [f for c in sockets for f in c.frames(upstream=True)]
        down = [f for c in sockets for f in c.frames(upstream=False)]
        for frame in up + down:
            self.assertFalse(frame.rsv1, frame)  # the edge declines permessage-deflate
        # Control messages (text) carry JSON; data frames (binary) carry only ciphertext:
        # each one opens with the key, and what opens is the application's traffic.
        self.assertIn(b'"type":"join"', b"".join(f.payload for f in up if f.opcode == 1)
                      .replace(b" ", b""))
        up_data = [opened(f.payload[5:]) for f in up if f.opcode == 2]
        down_data = [opened(f.payload[13:]) for f in down if f.opcode == 2]
        # A's typing is about one update per keystroke, plus its awareness: an empty or a
        # mis-parsed capture cannot pass this.
        self.assertGreaterEqual(sum(p[0] == 0x03 for p in up_data), len(typed) // 2,
                                [f for f in up])
        self.assertGreaterEqual(len(down_data), 3, [f for f in down])  # policy, sync, update
        kinds_up = {p[0] for p in up_data}
        kinds_down = {p[0] for p in down_data}
        self.assertTrue({0x01, 0x03, 0x04} <= kinds_up, kinds_up)  # sync-step1, update, awareness
        self.assertTrue({0x02, 0x05} <= kinds_down, kinds_down)  # sync-step2, policy
        # Positive controls: the plaintext we search for is in the traffic, encrypted.
        self.assertIn(secret_file.encode(), b"".join(down_data))
        self.assertIn(b"HOST-WROTE-THIS-ON-DISK", b"".join(down_data))
        self.assertIn(b'"name":"Ada"', b"".join(up_data).replace(b" ", b""))

        # Nowhere on the wire: not in any connection's bytes either way, nor in the
        # unmasked websocket payloads, in any of the forms that could disguise it.
        plaintexts = [secret_file.encode(), typed.encode(), b"HOST-WROTE-THIS-ON-DISK",
                      b"Demo project", b"answer = 42", b"print('hello')"]
        haystacks = {}
        for n, c in enumerate(connections):
            haystacks[f"connection {n} upstream"] = bytes(c.upstream)
            haystacks[f"connection {n} downstream"] = bytes(c.downstream)
        haystacks["websocket payloads upstream"] = b"".join(f.payload for f in up)
        haystacks["websocket payloads downstream"] = b"".join(f.payload for f in down)
        needles = {}
        for text in plaintexts:
            for form, needle in encoded_forms(text).items():
                needles[f"{text!r} ({form})"] = needle
        for form, needle in encoded_forms(key).items():
            needles[f"the key ({form})"] = needle
        needles["the key (as in the link)"] = key_text.encode()
        for where, haystack in haystacks.items():
            for what, needle in needles.items():
                self.assertGreaterEqual(len(needle), 8, what)
                self.assertNotIn(needle, haystack, f"{what} in {where}")


class PagesTests(BrowserTestCase):
    def test_unknown_session_missing_key_bad_token_and_insecure_pages(self):
        _, url = start_edge(self)
        host = NodeHost(self, url, FILES)
        port = url.rsplit(":", 1)[1]
        page = AppPage(self, extra_args=["--host-resolver-rules=MAP ct-test.example 127.0.0.1"])
        page.open(f"{url}/join/no-such-session?token=x#key=abc")
        page.wait_page("not-found")
        page.screenshot("08-not-found")
        page.open(host.link.split("#", 1)[0])
        page.wait_page("no-key")
        page.screenshot("09-no-key")
        bad = host.link.replace("token=", "token=wrong")
        page.open(bad)
        page.browser.wait(lambda: page.browser.find("#ct-name"), 10, "the name prompt")
        page.browser.find("#ct-name").send_keys("Eve")
        page.browser.find("#ct-join").click()
        page.wait_page("forbidden")
        page.screenshot("10-forbidden")
        page.open(host.link.replace("127.0.0.1", "ct-test.example"))
        page.wait_page("insecure")
        self.assertIn("HTTPS", page.browser.text("h1"))
        page.screenshot("11-insecure")
        self.assertIsNone(page.js("return document.querySelector('script')"))  # the edge's page
        # A request that says a TLS proxy is in front gets the app: the app itself sees no
        # secure context, and says so.
        page.driver.execute_cdp_cmd("Network.enable", {})
        page.driver.execute_cdp_cmd("Network.setExtraHTTPHeaders",
                                    {"headers": {"X-Forwarded-Proto": "https"}})
        page.open(host.link.replace("127.0.0.1", "ct-test.example")
                  .replace("?token=", "?via=proxy&token="))  # a new URL: loaded again
        wait_until(lambda: page.js("return !!document.querySelector('script[src*=\"join-assets\"]')"),
                   10, "the app's shell")
        page.wait_page("insecure")
        self.assertFalse(page.js("return window.isSecureContext"))
        page.driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})
        # The page loads, but its websocket cannot reach the edge.
        proxy = CapturingProxy("127.0.0.1", int(port))
        self.addCleanup(proxy.stop)
        page.open(host.link.replace(url, f"http://127.0.0.1:{proxy.port}"))
        page.browser.wait(lambda: page.browser.find("#ct-name"), 10, "the name prompt")
        proxy.cut()
        page.browser.find("#ct-name").send_keys("Eve")  # another origin: nothing remembered
        page.browser.find("#ct-join").click()
        page.wait_page("unreachable")
        page.screenshot("18-unreachable")
