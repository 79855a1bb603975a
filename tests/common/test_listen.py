"""``server_listeners`` from a ``ListenConfig``, ``ServerSite`` from a ``SiteConfig``: in memory."""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial import unittest
from twisted.web.resource import Resource

from ct.common.listen import ListenConfig, ListenersService, StartupError, server_listeners
from ct.common.web import DEFAULT_MAX_BODY, ServerSite, SiteConfig


class ServerListenersTests(unittest.TestCase):
    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.site = ServerSite(Resource(), self.reactor)

    def test_http_only(self):
        config = ListenConfig(http="tcp:1080:interface=127.0.0.1", https="ssl:1443")
        listening = server_listeners(self.reactor, config, self.site)
        self.assertIsInstance(listening, ListenersService)
        listening.startService()
        self.addCleanup(listening.stopService)
        [(port, factory, _backlog, interface)] = self.reactor.tcpServers
        self.assertEqual((port, factory, interface), (1080, self.site, "127.0.0.1"))
        self.assertEqual(list(listening.ports), ["HTTP"])

    def test_certificate_without_key_is_refused(self):
        e = self.assertRaises(usage.UsageError, server_listeners, self.reactor,
                              ListenConfig(http="tcp:1080", tls_cert="cert.pem"), self.site)
        self.assertEqual(str(e), "HTTPS needs both CT_TLS_CERT and CT_TLS_KEY")

    def test_nothing_to_listen_on(self):
        e = self.assertRaises(usage.UsageError, server_listeners, self.reactor,
                              ListenConfig(http=None, https="ssl:1443"), self.site)
        self.assertIn("nothing to listen on", str(e))

    def test_a_port_that_cannot_open_names_the_setting(self):
        listening = ListenersService(self.reactor, [("HTTP", "CT_HTTP_LISTEN", "tcp:1080",
                                                     self.site)])
        self.reactor.listenTCP = lambda *a, **kw: 1 / 0
        e = self.assertRaises(StartupError, listening.startService)
        self.assertIn("cannot listen on tcp:1080 (HTTP, setting CT_HTTP_LISTEN)", str(e))


class SiteConfigTests(unittest.TestCase):
    def test_the_site_takes_its_limits_from_the_config(self):
        reactor = MemoryReactorClock()
        site = ServerSite(Resource(), reactor, SiteConfig(access_log=True, max_body=2048,
                                                          hsts_max_age=60),
                          body_limits={b"/big": 4096})
        self.assertEqual((site.access_log, site.hsts_header), (True, b"max-age=60"))
        self.assertEqual((site.body_limit(b"/x"), site.body_limit(b"/big/y?z")), (2048, 4096))
        plain = ServerSite(Resource(), reactor, SiteConfig(hsts_max_age=0))
        self.assertEqual((plain.access_log, plain.max_body, plain.hsts_header),
                         (False, DEFAULT_MAX_BODY, None))
