"""``/join/<session>`` and ``/join-assets/`` on a real edge (treq over loopback), and the
locator's redirect (in memory, with the lookup's answers made up)."""

from __future__ import annotations

import hashlib
import re
import tempfile
from pathlib import Path

import treq
from treq.testing import StubTreq
from twisted.internet import defer, reactor, ssl
from twisted.internet.task import Clock
from twisted.trial import unittest
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from twisted.web.resource import Resource

from ct.client.session import SessionClient
from ct.locator.service import LocatorError
from ct.storage.database import DatabaseUnavailable
from ct.webclient import redirect
from ct.webclient.assets import STATIC_DIR, Assets
from ct.webclient.web import loopback_host
from tests.edge.util import close_all, start_edge
from tests.tlsutil import write_self_signed

SCRIPT = re.compile(rb"<script\b[^>]*>", re.I)


def header(response, name: str) -> str | None:
    values = response.headers.getRawHeaders(name)
    return None if not values else values[-1]


@defer.inlineCallbacks
def fetch(url: str, headers=None):
    """GET without redirects over a connection of its own (closed after the answer)."""
    agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
    response = yield treq.get(url, headers=headers, allow_redirects=False, agent=agent)
    body = yield response.content()
    return response, body


class EdgeJoinPageTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        self.edge, self.url = start_edge(self)
        self.host = SessionClient(reactor, self.url, "alice")
        self.addCleanup(close_all, [self.host])
        yield self.host.host()
        self.session = self.host.session

    def check_page_headers(self, response):
        csp = header(response, "content-security-policy")
        self.assertIn("script-src 'self';", csp)
        self.assertIn("default-src 'none'", csp)
        self.assertIn("frame-ancestors 'none'", csp)
        self.assertNotIn("unsafe-inline'; ", csp.split("style-src-attr")[0])
        self.assertEqual(header(response, "referrer-policy"), "no-referrer")
        self.assertEqual(header(response, "cache-control"), "no-store")
        self.assertEqual(header(response, "content-type"), "text/html; charset=utf-8")

    @defer.inlineCallbacks
    def test_shell_of_a_live_session_loads_hashed_assets_without_inline_script(self):
        link = str(self.host.link)
        path = link.split(self.url, 1)[1].split("#", 1)[0]
        response, body = yield fetch(self.url + path)
        self.assertEqual(response.code, 200)
        self.check_page_headers(response)
        scripts = SCRIPT.findall(body)
        self.assertEqual(len(scripts), 1, body)
        src = re.search(rb'src="([^"]+)"', scripts[0]).group(1).decode()
        css = re.search(rb'rel="stylesheet" href="([^"]+)"', body).group(1).decode()
        self.assertNotIn(b"</script>\n<script", body)
        nonce = re.search(rb'name="ct-csp-nonce" content="([^"]+)"', body).group(1).decode()
        self.assertIn(f"'nonce-{nonce}'", header(response, "content-security-policy"))
        for relative, source, ctype in ((src, "join.js", "text/javascript"),
                                        (css, "join.css", "text/css")):
            self.assertTrue(relative.startswith("../join-assets/"), relative)
            asset, content = yield fetch(self.url + "/join-assets/"
                                         + relative.rsplit("/", 1)[1])
            self.assertEqual(asset.code, 200)
            expected = (Path(STATIC_DIR) / source).read_bytes()
            self.assertEqual(content, expected)
            self.assertIn(hashlib.sha256(expected).hexdigest()[:16], relative)
            self.assertTrue(header(asset, "content-type").startswith(ctype))
            self.assertIn("immutable", header(asset, "cache-control"))
        # HEAD: the same headers, no body.
        agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
        head = yield treq.head(self.url + path, agent=agent)
        self.assertEqual((head.code, (yield head.content())), (200, b""))
        self.assertEqual(header(head, "cache-control"), "no-store")
        # A fresh nonce for every page.
        _, again = yield fetch(self.url + path)
        self.assertNotEqual(again.split(b"ct-csp-nonce")[1][:40], body.split(b"ct-csp-nonce")[1][:40])

    @defer.inlineCallbacks
    def test_unknown_assets_are_404_and_not_cached(self):
        for name in ("join.js", "join.0123456789abcdef.js", "..%2Fweb.py", "x/join.js"):
            response, _ = yield fetch(self.url + "/join-assets/" + name)
            self.assertEqual(response.code, 404, name)
            self.assertEqual(header(response, "cache-control"), "no-store")

    @defer.inlineCallbacks
    def test_the_link_sets_the_stickiness_cookie(self):
        response, _ = yield fetch(f"{self.url}/join/{self.session}?token=t&ctstickiness=abc-1")
        self.assertEqual(response.code, 200)
        self.assertEqual(header(response, "set-cookie"),
                         "ctstickiness=abc-1; Path=/; SameSite=Lax; HttpOnly")
        self.assertEqual(header(response, "ctstickiness"), "abc-1")
        # Junk is ignored: the edge's own value, as on every response.
        response, _ = yield fetch(f"{self.url}/join/{self.session}?token=t&ctstickiness=a%20b")
        self.assertEqual(response.code, 200)
        self.assertTrue(header(response, "set-cookie").startswith("ctstickiness=edge-"),
                        response.headers)

    @defer.inlineCallbacks
    def test_unknown_and_ended_sessions_get_a_clear_404_page(self):
        for path in ("/join/no-such-session?token=x", "/join/", "/join", "/join/%s/extra"
                     % self.session, "/join/" + "a" * 65):
            response, body = yield fetch(self.url + path)
            self.assertEqual(response.code, 404, path)
            self.check_page_headers(response)
            self.assertNotIn(b"<script", body)
            self.assertRegex(body, rb'data-ct-page="(not-found|no-session)"')
        yield self.host.end()
        response, body = yield fetch(f"{self.url}/join/{self.session}?token=x")
        self.assertEqual(response.code, 404)
        self.assertIn(b"This session is not here", body)

    @defer.inlineCallbacks
    def test_another_edges_session_comes_back_once_with_the_cookie(self):
        path = "/join/elsewhere?token=t&ctstickiness=s-9"
        response, _ = yield fetch(self.url + path)
        self.assertEqual(response.code, 302)
        self.assertEqual(header(response, "location"), "elsewhere?token=t&ctstickiness=s-9")
        self.assertEqual(header(response, "set-cookie"),
                         "ctstickiness=s-9; Path=/; SameSite=Lax; HttpOnly")
        # With the cookie (the balancer routed on it), this edge says it is not here.
        response, _ = yield fetch(self.url + path, headers={"Cookie": "ctstickiness=s-9"})
        self.assertEqual(response.code, 404)

    @defer.inlineCallbacks
    def test_plain_http_to_another_host_says_https_is_needed(self):
        path = f"/join/{self.session}?token=t"
        response, body = yield fetch(self.url + path, headers={"Host": "ct.example.com:8080"})
        self.assertEqual(response.code, 403)
        self.check_page_headers(response)
        self.assertIn(b'data-ct-page="insecure"', body)
        self.assertIn(b"HTTPS", body)
        self.assertNotIn(b"<script", body)
        for host in ("localhost:1", "127.0.0.1", "[::1]:80", "app.localhost"):
            response, _ = yield fetch(self.url + path, headers={"Host": host})
            self.assertEqual(response.code, 200, host)
        # A TLS-terminating proxy in front: the app, which checks for itself.
        for name, value in (("X-Forwarded-Proto", "https"), ("Forwarded", "for=1.2.3.4; proto=https")):
            response, _ = yield fetch(self.url + path, headers={"Host": "ct.example.com",
                                                                name: value})
            self.assertEqual(response.code, 200, name)
        response, _ = yield fetch(self.url + path, headers={"Host": "ct.example.com",
                                                            "X-Forwarded-Proto": "http"})
        self.assertEqual(response.code, 403)

    @defer.inlineCallbacks
    def test_an_edge_whose_public_url_is_https_leaves_the_check_to_the_app(self):
        _, url = start_edge(self, CT_SERVER_URL="https://ct.example.com")
        host = SessionClient(reactor, url, "alice")
        self.addCleanup(close_all, [host])
        yield host.host()
        response, body = yield fetch(f"{url}/join/{host.session}?token=t",
                                     headers={"Host": "ct.example.com"})
        self.assertEqual(response.code, 200)
        self.assertIn(b"<script", body)


class HTTPSTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_https_to_any_host_serves_the_app_with_a_secure_cookie(self):
        folder = Path(tempfile.mkdtemp(prefix="ct-webclient-tls-"))
        cert, key = write_self_signed(folder)
        edge, url = start_edge(self, CT_HTTPS_LISTEN="ssl:0:interface=127.0.0.1",
                               CT_TLS_CERT=str(cert), CT_TLS_KEY=str(key))
        host = SessionClient(reactor, url, "alice")
        self.addCleanup(close_all, [host])
        yield host.host()
        port = edge.listening.ports["SSL"].getHost().port
        agent = Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(
            trustRoot=ssl.Certificate.loadPEM(cert.read_bytes())),
            pool=HTTPConnectionPool(reactor, persistent=False))
        response = yield treq.get(
            f"https://127.0.0.1:{port}/join/{host.session}?token=t&ctstickiness=z",
            headers={"Host": "ct.example.com"}, agent=agent, allow_redirects=False)
        yield response.content()
        self.assertEqual(response.code, 200)
        self.assertEqual(header(response, "set-cookie"),
                         "ctstickiness=z; Path=/; SameSite=Lax; HttpOnly; Secure")
        self.assertIsNotNone(header(response, "strict-transport-security"))


def test_loopback_hosts():
    for host in ("localhost", "LOCALHOST.", "a.localhost", "127.0.0.1", "127.8.9.1", "[::1]"):
        assert loopback_host(host), host
    for host in ("example.com", "localhost.example.com", "10.0.0.1", "[2001:db8::1]",
                 "0.0.0.0", ""):
        assert not loopback_host(host), host


class FakeFind:
    """Answers of the locator's lookup, one per call (the last one repeats)."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = 0

    def __call__(self, session_id):
        self.calls += 1
        answer = self.answers[min(self.calls, len(self.answers)) - 1]
        if isinstance(answer, Exception):
            return defer.fail(answer)
        return defer.succeed({"server": answer, "session": session_id})


class LocatorRedirectTests(unittest.TestCase):
    def serve(self, find):
        self.clock = Clock()
        root = Resource()
        redirect.mount(root, Assets(), find, self.clock)
        return StubTreq(root)

    def get(self, http, path, advance=0.0):
        pending = http.get("http://locator.example" + path, allow_redirects=False)
        for _ in range(20):
            http.flush()
            self.clock.advance(advance)
        http.flush()
        response = self.successResultOf(pending)
        return response, self.successResultOf(response.content())

    def test_redirects_to_the_sessions_edge_keeping_the_query(self):
        http = self.serve(FakeFind("https://edge1.example:8443/"))
        response, _ = self.get(http, "/join/s%20id?token=a%2Bb&ctstickiness=x")
        self.assertEqual(response.code, 302)
        self.assertEqual(header(response, "location"),
                         "https://edge1.example:8443/join/s%20id?token=a%2Bb&ctstickiness=x")
        self.assertEqual(header(response, "referrer-policy"), "no-referrer")

    def test_a_session_not_yet_in_the_directory_is_looked_up_again(self):
        find = FakeFind(LocatorError(404, "not-found", "no"), "http://e:1")
        response, _ = self.get(self.serve(find), "/join/s?token=t", advance=0.5)
        self.assertEqual((response.code, find.calls), (302, 2))

    def test_unknown_session_page_after_the_retries(self):
        find = FakeFind(LocatorError(404, "not-found", "no"))
        response, body = self.get(self.serve(find), "/join/s?token=t", advance=0.5)
        self.assertEqual(response.code, 404)
        self.assertEqual(find.calls, redirect.NOT_FOUND_RETRIES + 1)
        self.assertIn(b'data-ct-page="not-found"', body)
        self.assertIn("default-src 'none'", header(response, "content-security-policy"))

    def test_edge_unavailable_and_database_away_pages(self):
        response, body = self.get(self.serve(FakeFind(
            LocatorError(410, "edge-unavailable", "gone"))), "/join/s?token=t")
        self.assertEqual(response.code, 410)
        self.assertIn(b'data-ct-page="edge-unavailable"', body)
        response, body = self.get(self.serve(FakeFind(DatabaseUnavailable("away"))),
                                  "/join/s?token=t")
        self.assertEqual(response.code, 503)
        self.assertEqual(header(response, "retry-after"), "5")
        self.assertIn(b'data-ct-page="unavailable"', body)

    def test_malformed_paths_are_not_looked_up(self):
        find = FakeFind("http://e:1")
        http = self.serve(find)
        for path in ("/join/", "/join", "/join/" + "a" * 65, "/join/a/b"):
            response, _ = self.get(http, path)
            self.assertEqual(response.code, 404, path)
        self.assertEqual(find.calls, 0)
        response, _ = self.get(http, "/join-assets/" + Assets().name_of("join.css"))
        self.assertEqual(response.code, 200)
