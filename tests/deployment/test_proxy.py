"""``CT_PROXY`` end to end (issue 15, item 1), through a real tinyproxy process: an edge's
link to the locator, locator↔locator latency pings, and the dashboards' calls to the
identity provider (single sign-on); ``NO_PROXY`` bypassing it; a proxy that dies and comes
back."""

from __future__ import annotations

import re
from pathlib import Path

from twisted.internet import defer
from twisted.trial import unittest

from tests.deployment.util import Deployment
from tests.edge.util import sleep, wait_for
from tests.tlsutil import write_self_signed
from tests.tinyproxy import MISSING, TinyProxy, free_port

PASSWORD = "pr0xy-s3cret"


class EdgeLinkThroughProxyTests(unittest.TestCase):
    skip = MISSING
    timeout = 180

    @defer.inlineCallbacks
    def test_link_through_the_proxy_survives_its_restart(self):
        proxy = TinyProxy(self, user="edge", password=PASSWORD)
        proxy.start()
        dep = Deployment(self)
        port = dep.start_locator()
        dep.start_edge("proxied", CT_PROXY=proxy.url)
        # NO_PROXY names the locator: this edge ignores its (dead) proxy.
        dep.start_edge("direct", CT_PROXY=f"http://127.0.0.1:{free_port()}",
                       NO_PROXY="localhost,127.0.0.0/8")
        yield dep.wait_online(["proxied", "direct"])

        proxied, direct = dep.edges["proxied"], dep.edges["direct"]
        self.assertEqual(proxy.tunnels_to(port), 1, proxy.log())
        self.assertIn('Established connection to host "127.0.0.1"', proxy.log())
        self.assertIn(f"will register with the locator at {dep.locator_url} through the "
                      f"proxy http://edge:****@127.0.0.1:{proxy.port}", proxied.log())
        self.assertIn(f"CT_PROXY='http://edge:****@127.0.0.1:{proxy.port}'", proxied.log())
        self.assertNotIn("through the proxy", direct.log())
        self.assertIn("CT_NO_PROXY='localhost,127.0.0.0/8' (NO_PROXY)", direct.log())

        # The proxy dies: the link drops, the edge says why, once, and keeps trying.
        proxy.stop()
        yield dep.wait_edges(lambda s: s.get("proxied") == "link-lost")
        line = (f"cannot connect to the locator at {dep.locator_url} through the proxy "
                f"http://edge:****@127.0.0.1:{proxy.port}: cannot reach the proxy "
                f"http://edge:****@127.0.0.1:{proxy.port}: ")
        yield wait_for(lambda: line in proxied.log(), timeout=30, step=0.1)
        self.assertEqual(proxied.log().count(line), 1)

        # Back on the same port: the edge reconnects through it by itself.
        proxy.start()
        yield dep.wait_online(["proxied"], timeout=40)
        yield wait_for(lambda: len(re.findall("registered with the locator",
                                              proxied.log())) == 2, timeout=10, step=0.1)
        self.assertGreaterEqual(proxy.tunnels_to(port), 1)
        self.assertEqual(dep.edges["direct"].log().count("registered with the locator"), 1)
        for daemon in (proxied, direct, dep.locator):
            self.assertNotIn(PASSWORD, daemon.log())

    @defer.inlineCallbacks
    def test_wss_through_the_proxy_keeps_tls_end_to_end(self):
        """The tunnel carries TLS: the certificate is checked by the edge, not the proxy."""
        directory = Path(self.mktemp()).resolve()
        directory.mkdir(parents=True)
        cert, key = write_self_signed(directory)
        proxy = TinyProxy(self)
        proxy.start()
        dep = Deployment(self, locator_env={"CT_HTTPS_LISTEN": "ssl:0:interface=127.0.0.1",
                                            "CT_TLS_CERT": str(cert), "CT_TLS_KEY": str(key)})
        dep.start_locator()
        tls_port = dep.locator.port("SSL")
        https = f"https://127.0.0.1:{tls_port}"
        dep.start_edge("trusting", CT_LOCATOR=https, CT_TRUST_ALL_CERTS="true",
                       CT_PROXY=proxy.url)
        dep.start_edge("careful", CT_LOCATOR=https, CT_PROXY=proxy.url)
        yield dep.wait_online(["trusting"])
        dep.edges["careful"].wait_for_log(r"the locator's TLS certificate is not trusted "
                                          r"\(.*certificate verify failed", timeout=30)
        self.assertGreaterEqual(proxy.tunnels_to(tls_port), 2, proxy.log())
        self.assertIn(f"will register with the locator at {https} through the proxy",
                      dep.edges["trusting"].log())


class LocatorPeerPingsThroughProxyTests(unittest.TestCase):
    """Two locators on one PostgreSQL schema measure their latency to each other by
    ``GET /api/v1/locator/ping``: through ``CT_PROXY`` unless ``NO_PROXY`` names the peer."""

    skip = MISSING
    timeout = 120

    @defer.inlineCallbacks
    def test_peer_pings_go_through_the_proxy_unless_no_proxy_names_the_peer(self):
        from tests.deployment.test_locator_ha import LocatorCluster

        proxy = TinyProxy(self, user="loc", password=PASSWORD)
        proxy.start()
        cluster = LocatorCluster(self, CT_PROXY=proxy.url)
        cluster.start_locator("a")
        port_a = cluster.ports["a"]
        cluster.env["CT_NO_PROXY"] = f"127.0.0.1:{port_a}"  # b reaches a directly
        cluster.start_locator("b")
        port_b = cluster.ports["b"]

        @defer.inlineCallbacks
        def peer_latency(name: str, peer_port: int):
            """The latency ``name``'s ``/health`` shows for the peer on ``peer_port``."""
            body = yield get_json(cluster.url(name) + "/health")
            return next((loc["latencyMs"] for loc in body.get("locators", [])
                         if loc["url"] == f"http://127.0.0.1:{peer_port}"), None)

        @defer.inlineCallbacks
        def both_measured():
            a_to_b = yield peer_latency("a", port_b)
            b_to_a = yield peer_latency("b", port_a)
            return a_to_b is not None and b_to_a is not None

        yield wait_until(both_measured, timeout=60)
        self.assertGreaterEqual(proxy.tunnels_to(port_b), 1, proxy.log())  # a → b, proxied
        self.assertEqual(proxy.tunnels_to(port_a), 0, proxy.log())  # b → a, direct

        # The proxy goes away: a's pings of b fail, and a says why, naming the proxy.
        proxy.stop()
        masked = f"http://loc:****@127.0.0.1:{proxy.port}"
        line = (f"does not answer its latency ping at http://127.0.0.1:{port_b}: "
                f"cannot reach the proxy {masked}")
        yield wait_for(lambda: line in cluster.locators["a"].log(), timeout=30, step=0.2)
        # Back on the same port: the pings go through it again.
        tunnels = proxy.tunnels_to(port_b)
        proxy.start()
        yield wait_for(lambda: "answers its latency ping again" in cluster.locators["a"].log(),
                       timeout=30, step=0.2)
        self.assertGreater(proxy.tunnels_to(port_b), tunnels)
        for daemon in cluster.locators.values():
            self.assertNotIn(PASSWORD, daemon.log())


def get_json(url: str) -> defer.Deferred:
    """GET ``url`` (direct, not through any proxy); fires with its JSON body."""
    import json

    import treq
    from twisted.internet import reactor
    from twisted.web.client import HTTPConnectionPool

    d = treq.get(url, pool=HTTPConnectionPool(reactor, persistent=False), timeout=10)
    d.addCallback(treq.content)
    return d.addCallback(json.loads)


@defer.inlineCallbacks
def wait_until(check, timeout: float, step: float = 0.5):
    """Until the Deferred-returning ``check()`` fires true (bounded); fails on time-out."""
    waited = 0.0
    while True:
        try:
            if (yield check()):
                return
        except Exception:
            pass
        if waited >= timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        yield sleep(step)
        waited += step


class SsoThroughProxyTests(unittest.TestCase):
    """The dashboard's calls to the identity provider (discovery, token endpoint, JWKS),
    on a locator and on a lone edge, through ``CT_PROXY``; ``NO_PROXY`` naming the provider
    bypasses it. The browser reaches the provider directly; the servers only by the proxy."""

    skip = MISSING
    timeout = 300

    @defer.inlineCallbacks
    def test_oidc_calls_of_locator_and_lone_edge_go_through_the_proxy(self):
        from tests.dashboard.browser import Browser, missing, run
        from tests.procutil import Daemon
        from tests.sso.provider import Provider, sign_in

        reason = missing()
        if reason:
            raise unittest.SkipTest(reason)
        provider = Provider(self)
        yield provider.start()
        proxy = TinyProxy(self, user="sso", password=PASSWORD)
        proxy.start()
        dep = Deployment(self, locator_env=provider.locator_env(CT_PROXY=proxy.url))
        dep.start_locator()

        def lone_edge(name: str, **env) -> str:
            daemon = Daemon("ctedge", provider.locator_env(
                CT_HTTP_LISTEN="tcp:0:interface=127.0.0.1", CT_PROBE_INTERVAL="0",
                CT_EDGE_ID=name, CT_DATA_DIR=str(Path(self.mktemp()).resolve()), **env))
            self.addCleanup(daemon.stop)
            return f"http://127.0.0.1:{daemon.port('HTTP')}"

        edge = lone_edge("proxied", CT_PROXY=proxy.url)
        # A dead proxy, but NO_PROXY names the provider: this edge reaches it directly.
        direct = lone_edge("direct", CT_PROXY=f"http://127.0.0.1:{free_port()}",
                           NO_PROXY=f"localhost,127.0.0.1:{provider.port}")
        browser = yield run(Browser, self)

        def signed_in(base: str) -> str:
            sign_in(browser, base, "ada@example.com")
            browser.wait(lambda: browser.driver.find_elements("css selector", "#who"),
                         what=f"signed in on {base}")
            return browser.text("#who")

        self.assertEqual((yield run(signed_in, dep.locator_url)), "ada@example.com")
        # One tunnel each: discovery, token endpoint, JWKS.
        self.assertEqual(proxy.tunnels_to(provider.port), 3, proxy.log())
        self.assertEqual((yield run(signed_in, edge)), "ada@example.com")
        self.assertEqual(proxy.tunnels_to(provider.port), 6, proxy.log())
        self.assertEqual((yield run(signed_in, direct)), "ada@example.com")
        self.assertEqual(proxy.tunnels_to(provider.port), 6, proxy.log())
