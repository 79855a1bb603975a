"""CT_HOST_AUTH=sso on a real deployment (locator with single sign-on through a real
OpenID provider, two edges): an anonymous host is refused with 4018
``sign-in-required``; ``ct-client login`` (a loopback redirect, the provider's pages in
headless Chromium) gets a host token that both edges accept, and the identity's name is
what guests and the team see; expired, other-audience and forged tokens are refused."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from urllib.parse import parse_qs

from twisted.internet import defer, protocol, reactor
from twisted.trial import unittest

from ct.client.presence import PresenceClient
from ct.client.session import SessionClient, SessionEnded
from ct.common import hosttoken
from ct.common.hosttoken import HostIdentity, HostTokenConfig
from ct.common.tokens import team_token
from ct.protocol import errors
from tests.dashboard.browser import Browser, missing, run
from tests.deployment.util import Deployment
from tests.edge.util import close_all, wait_for
from tests.sso.provider import Provider, pass_provider

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOST_SECRET = "host-token-secret-for-the-tests-0123456789"
TEAM_SECRET = "deployment-team-secret"


class _Cli(protocol.ProcessProtocol):
    """``ct-client login`` as a child process: its first URL line, then its exit."""

    def __init__(self):
        self.url = defer.Deferred()
        self.ended = defer.Deferred()
        self.out = b""
        self.err = b""

    def outReceived(self, data):
        self.out += data
        for line in self.out.decode(errors="replace").splitlines():
            if line.startswith("http") and not self.url.called:
                self.url.callback(line.strip())

    def errReceived(self, data):
        self.err += data

    def processEnded(self, reason):
        if not self.url.called:
            self.url.errback(AssertionError(f"ct-client login ended: {self.err!r}"))
        self.ended.callback(reason.value.exitCode)


class HostAuthTests(unittest.TestCase):
    timeout = 300

    @defer.inlineCallbacks
    def setUp(self):
        reason = missing()
        if reason:
            raise unittest.SkipTest(reason)
        self.provider = Provider(self)
        yield self.provider.start()
        self.d = Deployment(self, locator_env=self.provider.locator_env(
            CT_HOST_TOKEN_SECRET=HOST_SECRET, CT_HOST_TOKEN_LIFETIME="300"),
            edge_env={"CT_HOST_AUTH": "sso", "CT_HOST_TOKEN_SECRET": HOST_SECRET})
        self.d.start_locator()
        for name in ("e1", "e2"):
            self.d.start_edge(name)
        self.clients = []
        self.addCleanup(lambda: close_all(self.clients))
        yield self.d.wait_online(["e1", "e2"])

    @defer.inlineCallbacks
    def host_on(self, edge: str, name: str, token: str | None, **kw):
        client = SessionClient(reactor, self.d.edge_urls[edge], name)
        client.auto_resume = False
        self.clients.append(client)
        yield client.host(host_token=token, **kw)
        return client

    @defer.inlineCallbacks
    def refused(self, edge: str, token: str | None) -> str:
        try:
            yield self.host_on(edge, "anyone", token)
        except SessionEnded as e:
            self.assertEqual(e.code, errors.SIGN_IN_REQUIRED.name)
            return e.message
        self.fail("the edge let the host in")

    @defer.inlineCallbacks
    def cli_login(self, login: str) -> str:
        token_file = os.path.join(tempfile.mkdtemp(prefix="ct-login-"), "host-token")
        cli = _Cli()
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": ROOT}
        process = reactor.spawnProcess(
            cli, sys.executable, [sys.executable, "-m", "ct.client.cli", "login", "--server",
                                  self.d.locator_url, "--token-file", token_file,
                                  "--timeout", "120"], env=env, path=ROOT)
        self.addCleanup(lambda: cli.ended if cli.ended.called
                        else (process.signalProcess("KILL"), cli.ended)[1])
        url = yield cli.url.addTimeout(30, reactor)
        b = self.browser = yield run(Browser, self)

        def through_provider():
            b.driver.get(url)
            pass_provider(b, login, lambda: "Signed in" in b.driver.page_source)
            b.screenshot("host-login-done")
            return b.driver.current_url

        back = yield run(through_provider)
        self.assertTrue(back.startswith("http://127.0.0.1:"), back)
        code = yield cli.ended.addTimeout(30, reactor)
        self.assertEqual(code, 0, cli.err)
        self.assertEqual(os.stat(token_file).st_mode & 0o777, 0o600)
        with open(token_file) as f:
            return f.read().strip()

    @defer.inlineCallbacks
    def test_signed_in_hosts_on_both_edges_anonymous_and_bad_tokens_refused(self):
        message = yield self.refused("e1", None)
        self.assertIn("sign in", message)

        token = yield self.cli_login("bob@example.com")

        # The client says "mallory"; guests see the identity's name.
        host = yield self.host_on("e1", "mallory", token)
        guest = SessionClient(reactor, host.server, "guest")
        guest.auto_resume = False
        self.clients.append(guest)
        joined = yield guest.join(host.session, host.join_token)  # guests need no token
        self.assertEqual([(p["name"], p["role"]) for p in joined["participants"]],
                         [("Bob Red", "host"), ("guest", "guest")])

        # The same token on the other edge, which never talked to the provider.
        other = yield self.host_on("e2", "mallory", token)
        self.assertTrue(other.session)

        # A page of this server (the browser client's flow) gets a token in the fragment.
        b = self.browser
        state = "browser-client-state-0123456789"

        def page_flow():
            b.driver.get(f"{self.d.locator_url}/dashboard/sso/host?redirect_uri=/dashboard/"
                         f"login&state={state}")
            pass_provider(b, "bob@example.com", lambda: "#" in b.driver.current_url)
            return b.driver.current_url

        back = yield run(page_flow)
        path, _, fragment = back.partition("#")
        self.assertEqual(path, self.d.locator_url + "/dashboard/login")
        answer = parse_qs(fragment)
        self.assertEqual(answer["state"], [state])
        third = yield self.host_on("e2", "mallory", answer["token"][0])
        self.assertTrue(third.session)

        # Expired, for another deployment, forged: refused on both edges.
        who = HostIdentity("bob@example.com", "Bob Red")
        now = time.time()
        expired = hosttoken.issue(who, HostTokenConfig(HOST_SECRET, lifetime=30), now - 600)
        elsewhere = hosttoken.issue(who, HostTokenConfig(HOST_SECRET, audience="other-org"),
                                    now)
        forged = hosttoken.issue(who, HostTokenConfig("x" * 40), now)
        for edge in ("e1", "e2"):
            self.assertIn("expired", (yield self.refused(edge, expired)))
            self.assertIn("not valid", (yield self.refused(edge, elsewhere)))
            self.assertIn("not valid", (yield self.refused(edge, forged)))
            self.assertIn("not valid", (yield self.refused(edge, token[:-2] + "xx")))

        # Team presence: the token is needed too, and the name is the identity's.
        anonymous = PresenceClient(reactor, self.d.edge_urls["e1"], "red",
                                   team_token(TEAM_SECRET, "red"), "mallory")
        with self.assertRaises(ConnectionError) as caught:
            yield anonymous.connect()
        self.assertIn("sign-in-required", str(caught.exception))
        member = PresenceClient(reactor, self.d.edge_urls["e1"], "red",
                                team_token(TEAM_SECRET, "red"), "mallory", host_token=token)
        state = yield member.connect()
        self.addCleanup(member.close)
        self.assertEqual([m["user"] for m in state["members"]], ["Bob Red"])

        rows = self.d.audit_rows("SELECT user_name FROM audit_entries WHERE kind = "
                                 "'host_signed_in'")
        self.assertEqual(rows, [("Bob Red",), ("Bob Red",)])
        # The edges' audit entries (through their outboxes) name the identity too.
        query = "SELECT user_name FROM audit_entries WHERE kind = 'session_started'"
        yield wait_for(lambda: len(self.d.audit_rows(query)) >= 3, timeout=20, step=0.2)
        self.assertEqual(self.d.audit_rows(query), [("Bob Red",)] * 3)
