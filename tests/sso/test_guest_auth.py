"""Guests' sign-in on a real single-server deployment: a lone edge running single sign-on
through a real OpenID provider (Node ``oidc-provider``). With ``CT_GUEST_AUTH=sso`` an
anonymous guest is refused with 4018; the browser app sends a guest to sign in and back,
joins under the identity's name, the session key never reaches a server, and a cut
connection resumes without signing in again. On an open edge, a host's
``--guests-sign-in`` asks the same, and ``ct-client join --host-token-file`` joins."""

from __future__ import annotations

import base64
import os
import sys
import tempfile
import time
from pathlib import Path

from twisted.internet import defer, reactor, utils
from twisted.trial import unittest

from ct.client.session import SessionClient, SessionEnded
from ct.common import hosttoken
from ct.common.hosttoken import HostIdentity, HostTokenConfig
from ct.protocol import errors
from tests.dashboard.browser import missing, run
from tests.deployment.util import Deployment
from tests.edge.util import close_all
from tests.procutil import Daemon
from tests.sso.provider import Provider, pass_provider
from tests.webclient.support import (
    AppPage, CapturingProxy, ShareHost, node_missing, unmask_client_frames, wait_until,
)

ROOT = Path(__file__).resolve().parent.parent.parent
SECRET = "guest-sign-in-secret-for-the-tests-0123456789"
FILES = {"README.md": "# Guests sign in\n", "src/main.py": "print('signed')\n"}


def start_edge(env: dict[str, str]) -> tuple[Daemon, str]:
    """Blocking: a lone ``ctedge`` on a free loopback port."""
    daemon = Daemon("ctedge", {"CT_HTTP_LISTEN": "tcp:0:interface=127.0.0.1",
                               "CT_PROBE_INTERVAL": "0", **env})
    try:
        return daemon, f"http://127.0.0.1:{daemon.port('HTTP')}"
    except BaseException:
        daemon.stop()
        raise


class GuestAuthTests(unittest.TestCase):
    timeout = 400

    @defer.inlineCallbacks
    def setUp(self):
        reason = missing() or node_missing()
        if reason:
            raise unittest.SkipTest(reason)
        self.provider = Provider(self)
        yield self.provider.start()
        self.clients = []
        self.addCleanup(lambda: close_all(self.clients))

    @defer.inlineCallbacks
    def edge(self, **env):
        daemon, url = yield run(start_edge, self.provider.locator_env(
            CT_HOST_TOKEN_SECRET=SECRET, **env))
        self.addCleanup(run, daemon.stop)
        return daemon, url

    @defer.inlineCallbacks
    def share(self, url: str, *args) -> ShareHost:
        directory = Path(tempfile.mkdtemp(prefix="ct-guestauth-")) / "project"
        host = yield run(ShareHost, self, url, directory, FILES, "Hannah Host", args)
        return host

    @defer.inlineCallbacks
    def python_guest(self, link: str, name: str, token: str | None = None):
        guest = SessionClient.from_link(reactor, link, name)
        guest.auto_resume = False
        self.clients.append(guest)
        reply = yield guest.join_link(token)
        return guest, reply

    @defer.inlineCallbacks
    def refused(self, link: str, token: str | None = None) -> str:
        try:
            yield self.python_guest(link, "anonymous", token)
        except SessionEnded as e:
            self.assertEqual(e.code, errors.SIGN_IN_REQUIRED.name)
            self.assertEqual(errors.BY_NAME[e.code].close_code, 4018)
            return e.message
        self.fail("the edge let the guest in without signing in")

    @staticmethod
    def token(name: str = "Cy Blue") -> str:
        return hosttoken.issue(HostIdentity("cy@example.com", name, "cy@example.com"),
                               HostTokenConfig(SECRET), time.time())

    @defer.inlineCallbacks
    def test_policy_browser_guest_signs_in_key_stays_in_the_browser_and_resumes(self):
        daemon, url = yield self.edge(CT_GUEST_AUTH="sso")
        host = yield self.share(url)
        self.assertIn("sign in", (yield self.refused(host.link)))
        self.assertIn("not valid", (yield self.refused(
            host.link, hosttoken.issue(HostIdentity("x", "X"), HostTokenConfig("f" * 40),
                                       time.time()))))

        port = int(url.rsplit(":", 1)[1])
        proxy = CapturingProxy("127.0.0.1", port)
        self.addCleanup(proxy.stop)
        through = host.link.replace(url, f"http://127.0.0.1:{proxy.port}")
        page = yield run(AppPage, self)

        def sign_in_and_join():
            b = page.browser
            page.open(through)
            b.wait(lambda: b.find("#ct-name"), 20, "the name prompt")
            b.find("#ct-name").send_keys("mallory")
            b.find("#ct-join").click()
            page.wait_page("sign-in", timeout=20)
            page.screenshot("guestauth-01-sign-in-to-join")
            self.assertIn("#key=", b.driver.current_url)
            b.find("#ct-sign-in").click()
            pass_provider(b, "cy@example.com", lambda: page.status() == "connected")
            page.wait_status("connected", timeout=30)
            page.screenshot("guestauth-02-joined")
            return b.driver.current_url

        back = yield run(sign_in_and_join)
        key_text = host.link.split("#key=", 1)[1]
        # Back on the join page with the key in the fragment again, the token gone.
        self.assertEqual(back, through)
        stored = yield run(page.js, "return sessionStorage.getItem('ct.signin')")
        self.assertIsNone(stored)
        people = yield run(wait_until, lambda: "Cy Blue" in page.people() and page.people(),
                           20, "the identity's name in the people list")
        self.assertNotIn("mallory", people)

        # The others see the identity's name.
        host.command("/who")
        yield run(wait_until, lambda: any("Cy Blue (guest)" in line for line in host.output),
                  20, "the host's /who naming Cy Blue")
        watcher, _ = yield self.python_guest(host.link, "watcher", self.token("Wanda Watch"))
        self.assertIn("Cy Blue", [p["name"] for p in watcher.participants.values()])
        self.assertIn("Wanda Watch", [p["name"] for p in watcher.participants.values()])

        # A cut connection resumes without signing in again (the token is not asked for).
        proxy.cut()
        yield run(page.wait_status, "reconnecting", timeout=15)
        proxy.restore()
        yield run(page.wait_status, "resumed", "connected", timeout=30)
        yield run(page.open_file, "src/main.py")
        yield run(page.type_at_end, "# BY-CY")
        yield run(wait_until, lambda: "BY-CY" in (host.read("src/main.py") or ""), 20,
                  "the signed-in guest's edit on the host's disk after the resume")

        # The key went to no server: not in any byte between the browser and the edge (the
        # page, the sign-in start and callback, the app, the websocket), nor in the edge's
        # log of requests. The provider only saw addresses the edge made.
        key = base64.urlsafe_b64decode(key_text + "=" * (-len(key_text) % 4))
        upstream = unmask_client_frames(bytes(proxy.upstream))
        self.assertIn(b"GET /dashboard/sso/host?redirect_uri=", upstream)
        self.assertIn(b"GET /dashboard/sso/callback?", upstream)
        self.assertIn(b'"hostToken"', upstream)
        for needle in (key_text.encode(), key):
            self.assertNotIn(needle, upstream)
            self.assertNotIn(needle, bytes(proxy.downstream))
        self.assertNotIn(key_text, daemon.log())

    @defer.inlineCallbacks
    def test_host_asks_guests_to_sign_in_on_an_open_edge_cli_guest_with_a_token_file(self):
        _, url = yield self.edge()  # CT_GUEST_AUTH=open
        relaxed = yield self.share(url)
        guest, reply = yield self.python_guest(relaxed.link, "anyone")
        self.assertEqual([p["name"] for p in reply["participants"]], ["Hannah Host", "anyone"])

        strict = yield self.share(url, "--guests-sign-in")
        self.assertIn("sign in", (yield self.refused(strict.link)))
        _, reply = yield self.python_guest(strict.link, "mallory", self.token())
        self.assertEqual([p["name"] for p in reply["participants"]],
                         ["Hannah Host", "Cy Blue"])

        # The CLI guest: join --mirror with --host-token-file, and without (refused).
        work = Path(tempfile.mkdtemp(prefix="ct-guestauth-cli-"))
        token_file = work / "token"
        token_file.write_text(self.token("Cli Guest") + "\n")
        token_file.chmod(0o600)
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
        out, err, code = yield utils.getProcessOutputAndValue(
            sys.executable, ["-m", "ct.client.cli", "join", strict.link, "--name", "x",
                             "--mirror", str(work / "anon")], env=env, path=str(ROOT),
            reactor=reactor).addTimeout(60, reactor)
        self.assertNotEqual(code, 0)
        self.assertIn(b"sign-in-required", out + err)
        mirror = work / "mirror"
        cli = yield run(_MirrorGuest, strict.link, mirror, token_file, env)
        self.addCleanup(run, cli.stop)
        yield run(wait_until, lambda: (mirror / "README.md").exists()
                  and (mirror / "README.md").read_text() == FILES["README.md"], 30,
                  "the CLI guest's mirror")
        strict.command("/who")
        yield run(wait_until, lambda: any("Cli Guest (guest)" in line for line in strict.output),
                  20, "the host's /who naming the CLI guest's identity")


class MultiServerGuestAuthTests(unittest.TestCase):
    """Locator (single sign-on) + edge (CT_GUEST_AUTH=sso): the link names the locator, the
    app runs on the edge and signs in at the locator, which sends the browser back through
    its ``/join`` redirect to the edge, fragment kept."""

    timeout = 400

    @defer.inlineCallbacks
    def setUp(self):
        reason = missing() or node_missing()
        if reason:
            raise unittest.SkipTest(reason)
        self.provider = Provider(self)
        yield self.provider.start()
        self.d = Deployment(self, locator_env=self.provider.locator_env(
            CT_HOST_TOKEN_SECRET=SECRET),
            edge_env={"CT_GUEST_AUTH": "sso", "CT_HOST_TOKEN_SECRET": SECRET})
        self.d.start_locator()
        self.d.start_edge("e1")
        yield self.d.wait_online(["e1"])

    @defer.inlineCallbacks
    def test_browser_guest_signs_in_at_the_locator_and_joins_on_the_edge(self):
        directory = Path(tempfile.mkdtemp(prefix="ct-guestauth-")) / "project"
        host = yield run(ShareHost, self, self.d.locator_url, directory, FILES, "Hannah Host",
                         (), True)
        self.assertTrue(host.link.startswith(self.d.locator_url + "/join/"), host.link)
        page = yield run(AppPage, self)
        edge = self.d.edge_urls["e1"]

        def sign_in_and_join():
            b = page.browser
            page.open(host.link)
            b.wait(lambda: b.find("#ct-name"), 20, "the name prompt")
            b.find("#ct-name").send_keys("mallory")
            b.find("#ct-join").click()
            page.wait_page("sign-in", timeout=20)
            b.find("#ct-sign-in").click()
            pass_provider(b, "bob@example.com", lambda: page.status() == "connected")
            page.wait_status("connected", timeout=30)
            return b.driver.current_url

        back = yield run(sign_in_and_join)
        self.assertTrue(back.startswith(edge.rstrip("/") + "/join/"), back)
        self.assertTrue(back.endswith("#key=" + host.link.split("#key=", 1)[1]), back)
        yield run(wait_until, lambda: "Bob Red" in page.people(), 20, "the identity's name")
        host.command("/who")
        yield run(wait_until, lambda: any("Bob Red (guest)" in line for line in host.output),
                  20, "the host's /who naming Bob Red")


class _MirrorGuest:
    """``ct-client join LINK --mirror DIR --host-token-file F`` as a child process."""

    def __init__(self, link: str, mirror: Path, token_file: Path, env: dict[str, str]):
        import subprocess

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ct.client.cli", "join", link, "--name", "x", "--mirror",
             str(mirror), "--host-token-file", str(token_file)], env=env, cwd=str(ROOT),
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self):
        import subprocess

        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
