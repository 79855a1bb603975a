"""``CT_PROXY`` and ``NO_PROXY`` (issue 15, item 1): the rules (pure), the settings, and
HTTP calls through a real proxy process (tinyproxy) on loopback."""

from __future__ import annotations

from twisted.internet import defer, reactor
from twisted.python import usage
from twisted.trial import unittest
from twisted.web import resource, server

from ct.common.catalog import server_config
from ct.common.http import health_checker, make_agent
from ct.common.proxy import (
    NoProxy,
    OutboundProxy,
    ProxyError,
    ProxySettingError,
    ProxyURL,
    TunnelEndpoint,
    connect_request,
    parse_connect_answer,
    parse_no_proxy,
    parse_proxy,
)
from ct.common.settings import describe
from ct.edge import tap as edge_tap
from ct.locator import tap as locator_tap
from tests.tinyproxy import MISSING, TinyProxy, free_port


def parse(options_class, **env):
    options = options_class(environ=env)
    options.parseOptions([])
    return options


class ProxyURLTests(unittest.TestCase):
    def test_forms(self):
        self.assertEqual(parse_proxy("http://proxy.example:8080"),
                         ProxyURL("proxy.example", 8080))
        self.assertEqual(parse_proxy("proxy.example"), ProxyURL("proxy.example", 3128))
        self.assertEqual(parse_proxy("http://[::1]:3"), ProxyURL("::1", 3))
        self.assertEqual(parse_proxy("http://bob:p%40ss@127.0.0.1:8888/"),
                         ProxyURL("127.0.0.1", 8888, "bob", "p@ss"))
        for unset in ("", " ", "none", "NONE"):
            self.assertIsNone(parse_proxy(unset))

    def test_bad_values_say_why(self):
        for raw, why in [("https://p:1", "only http:// proxies"), ("socks5://p:1", "only http"),
                         ("http://p:99999", "bad port"), ("http://p:1/path", "no path"),
                         ("http://:1", "expected a URL")]:
            with self.subTest(raw=raw):
                e = self.assertRaises(ProxySettingError, parse_proxy, raw)
                self.assertIn(why, str(e))

    def test_the_password_is_never_shown(self):
        proxy = parse_proxy("http://bob:s3cret@proxy:3128")
        for shown in (str(proxy), repr(proxy), f"{proxy}", repr({"p": proxy})):
            self.assertNotIn("s3cret", shown)
        self.assertEqual(str(proxy), "http://bob:****@proxy:3128")
        self.assertEqual(str(ProxyURL("::1", 3)), "http://[::1]:3")

    def test_connect_request(self):
        self.assertEqual(connect_request("locator", 443, ProxyURL("p", 1)),
                         b"CONNECT locator:443 HTTP/1.1\r\nHost: locator:443\r\n\r\n")
        self.assertEqual(connect_request("::1", 80, ProxyURL("p", 1, "bob", "pw")),
                         b"CONNECT [::1]:80 HTTP/1.1\r\nHost: [::1]:80\r\n"
                         b"Proxy-Authorization: Basic Ym9iOnB3\r\n\r\n")

    def test_connect_answer(self):
        self.assertEqual(parse_connect_answer(b"HTTP/1.1 200 Connection established\r\nX: y"),
                         (200, "Connection established"))
        self.assertEqual(parse_connect_answer(b"HTTP/1.0 407"), (407, ""))
        self.assertRaises(ProxyError, parse_connect_answer, b"SSH-2.0-OpenSSH")


class NoProxyTests(unittest.TestCase):
    RULES = "localhost, .example.com,10.0.0.0/8 ::1 [fe80::1]:8080 host.x:443,192.168.1.1"

    def test_matches(self):
        rules = parse_no_proxy(self.RULES)
        cases = [("localhost", 1, True), ("LOCALHOST.", 1, True), ("a.example.com", 1, True),
                 ("example.com", 2, True), ("badexample.com", 1, False),
                 ("10.2.3.4", 1, True), ("11.0.0.1", 1, False), ("::1", 5, True),
                 ("[::1]", 5, True), ("fe80::1", 8080, True), ("fe80::1", 80, False),
                 ("host.x", 443, True), ("host.x", 80, False), ("192.168.1.1", 9, True),
                 ("locator.internal", 443, False)]
        for host, port, bypass in cases:
            with self.subTest(host=host, port=port):
                self.assertEqual(rules.bypass(host, port), bypass)

    def test_star_and_empty(self):
        self.assertTrue(parse_no_proxy("*").bypass("anything", 1))
        self.assertFalse(parse_no_proxy("").bypass("anything", 1))
        self.assertFalse(NoProxy().bypass("localhost", 1))

    def test_bad_entries_say_which(self):
        for raw in ("10.0.0.0/33", "ok.example, b!d", "x:0", "x:http", "[::1", "[::1]x"):
            with self.subTest(raw=raw):
                e = self.assertRaises(ProxySettingError, parse_no_proxy, raw)
                self.assertIn("NO_PROXY entry", str(e))

    def test_outbound_choice(self):
        outbound = OutboundProxy(ProxyURL("proxy", 3128), parse_no_proxy("127.0.0.1"))
        self.assertIsNone(outbound.proxy_for("127.0.0.1", 1080))
        self.assertEqual(outbound.proxy_for("locator", 1080), ProxyURL("proxy", 3128))
        self.assertIsInstance(outbound.endpoint(reactor, "locator", 1080), TunnelEndpoint)
        self.assertNotIsInstance(outbound.endpoint(reactor, "127.0.0.1", 1080), TunnelEndpoint)
        self.assertIsNone(OutboundProxy().proxy_for("locator", 1080))


class ProxySettingsTests(unittest.TestCase):
    def test_unset_by_default(self):
        for options in (edge_tap.Options, locator_tap.Options):
            config = server_config(parse(options))
            self.assertEqual(config.outbound, OutboundProxy())

    def test_read_by_both_servers(self):
        for options in (edge_tap.Options, locator_tap.Options):
            values = parse(options, CT_PROXY="http://bob:s3cret@proxy:3128",
                           CT_NO_PROXY="localhost,10.0.0.0/8")
            outbound = server_config(values).outbound
            self.assertEqual(outbound.proxy, ProxyURL("proxy", 3128, "bob", "s3cret"))
            self.assertTrue(outbound.no_proxy.bypass("10.1.1.1", 1))
            shown = "\n".join(describe(values, options.settings))
            self.assertIn("CT_PROXY='http://bob:****@proxy:3128' (CT_PROXY)", shown)
            self.assertIn("CT_NO_PROXY='localhost,10.0.0.0/8' (CT_NO_PROXY)", shown)
            self.assertNotIn("s3cret", shown)

    def test_no_proxy_falls_back_to_the_usual_variables(self):
        values = parse(edge_tap.Options, NO_PROXY="a.example", no_proxy="b.example")
        self.assertEqual(values["_sources"]["no_proxy"], "NO_PROXY")
        self.assertTrue(values["no_proxy"].bypass("a.example", 1))
        values = parse(edge_tap.Options, no_proxy="b.example")
        self.assertTrue(values["no_proxy"].bypass("b.example", 1))
        values = parse(edge_tap.Options, CT_NO_PROXY="c.example", NO_PROXY="a.example")
        self.assertEqual(values["_sources"]["no_proxy"], "CT_NO_PROXY")
        self.assertFalse(values["no_proxy"].bypass("a.example", 1))

    def test_a_bad_value_is_one_clear_error_without_the_password(self):
        e = self.assertRaises(usage.UsageError, parse, edge_tap.Options,
                              CT_PROXY="https://bob:s3cret@proxy:3128")
        self.assertIn("invalid setting CT_PROXY (--proxy) = 'https://bob:****@proxy:3128' "
                      "from CT_PROXY: only http:// proxies", str(e))
        self.assertNotIn("s3cret", str(e))
        e = self.assertRaises(usage.UsageError, parse, locator_tap.Options, no_proxy="10.0.0.0/40")
        self.assertIn("invalid setting CT_NO_PROXY (--no-proxy) = '10.0.0.0/40' from no_proxy",
                      str(e))


class _Hello(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"ok"


class ThroughTinyproxyTests(unittest.TestCase):
    """HTTP calls (the locator's health probes) through a real tinyproxy on loopback."""

    skip = MISSING
    timeout = 60

    def setUp(self):
        site = server.Site(_Hello())
        self.port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.target = self.port.getHost().port
        self.url = f"http://127.0.0.1:{self.target}"

    def outbound(self, proxy: TinyProxy, no_proxy: str = "") -> OutboundProxy:
        return OutboundProxy(parse_proxy(proxy.url), parse_no_proxy(no_proxy))

    @defer.inlineCallbacks
    def test_health_probe_goes_through_the_proxy(self):
        proxy = TinyProxy(self, user="bob", password="s3cret")
        proxy.start()
        check = health_checker(reactor, timeout=5.0, outbound=self.outbound(proxy))
        self.assertTrue((yield check(self.url)))
        self.assertEqual(proxy.tunnels_to(self.target), 1)
        self.assertTrue((yield check(self.url)))
        self.assertEqual(proxy.tunnels_to(self.target), 2)

    @defer.inlineCallbacks
    def test_no_proxy_bypasses_it(self):
        proxy = TinyProxy(self)
        proxy.start()
        through = health_checker(reactor, timeout=5.0, outbound=self.outbound(proxy, "localhost"))
        self.assertTrue((yield through(self.url)))
        self.assertEqual(proxy.tunnels_to(self.target), 1)  # the proxy's log shows tunnels
        for rule in ("127.0.0.0/8", "127.0.0.1", f"127.0.0.1:{self.target}", "*"):
            direct = health_checker(reactor, timeout=5.0, outbound=self.outbound(proxy, rule))
            self.assertTrue((yield direct(self.url)))
        self.assertEqual(proxy.tunnels_to(self.target), 1)

    @defer.inlineCallbacks
    def test_refusals_are_clear(self):
        proxy = TinyProxy(self, user="bob", password="s3cret")
        proxy.start()
        agent = make_agent(reactor, timeout=5.0, outbound=OutboundProxy(
            parse_proxy(f"http://127.0.0.1:{proxy.port}")))  # no credentials
        e = yield self.assertFailure(agent.request(b"GET", self.url.encode()), ProxyError)
        self.assertIn(f"refused CONNECT 127.0.0.1:{self.target}: 407", str(e))
        self.assertIn("check the user and password in CT_PROXY", str(e))

    @defer.inlineCallbacks
    def test_a_dead_proxy_is_named(self):
        dead = ProxyURL("127.0.0.1", free_port(), "bob", "s3cret")
        endpoint = TunnelEndpoint(reactor, dead, "127.0.0.1", self.target, timeout=5.0)
        e = yield self.assertFailure(endpoint.connect(server.Site(_Hello())), ProxyError)
        self.assertIn(f"cannot reach the proxy http://bob:****@127.0.0.1:{dead.port}", str(e))
        self.assertNotIn("s3cret", str(e))
