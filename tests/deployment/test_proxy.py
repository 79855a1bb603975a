"""``CT_PROXY`` end to end (issue 15, item 1): an edge's link to the locator through a real
tinyproxy process, ``NO_PROXY`` bypassing it, and a proxy that dies and comes back."""

from __future__ import annotations

import re

from twisted.internet import defer
from twisted.trial import unittest

from tests.deployment.util import Deployment
from tests.edge.util import wait_for
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
