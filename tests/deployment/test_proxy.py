"""``CT_PROXY`` end to end (issue 15, item 1): an edge's link to the locator through a real
tinyproxy process, ``NO_PROXY`` bypassing it, and a proxy that dies and comes back."""

from __future__ import annotations

import re
from pathlib import Path

from twisted.internet import defer
from twisted.trial import unittest

from tests.deployment.util import Deployment
from tests.edge.util import wait_for
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
