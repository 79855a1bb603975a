"""Each tap reads its settings once and hands on config objects: the services it builds,
in memory (``MemoryReactorClock``: nothing listens, nothing starts)."""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from ct.dashboard.setup import LogCapture
from ct.edge import tap as edge_tap
from ct.edge.downloads import DownloadCounter
from ct.locator import tap as locator_tap
from ct.metrics.statsd import StatsdPusher


def build(case, tap, **env):
    options = tap.Options(environ=env)
    options.parseOptions([])
    service = tap.makeService(options, MemoryReactorClock())
    for capture in [child for child in service if isinstance(child, LogCapture)]:
        case.addCleanup(capture.publisher.removeObserver, capture.ring)
    return service


class EdgeTapTests(unittest.TestCase):
    def test_single_server_parts(self):
        data = self.mktemp()
        service = build(self, edge_tap, CT_HTTP_LISTEN="tcp:0:interface=127.0.0.1",
                        CT_DATA_DIR=data, CT_LOGS_PASSWORD="older-name")
        self.assertIsInstance(service, edge_tap.EdgeDaemon)
        [(label, setting, endpoint, _site)] = service.listening.listeners
        self.assertEqual((label, setting, endpoint),
                         ("HTTP", "CT_HTTP_LISTEN", "tcp:0:interface=127.0.0.1"))
        self.assertEqual((service.statsd, service.turn, service.link, service.outbox),
                         (None, None, None, None))
        self.assertIsInstance(service.downloads, DownloadCounter)
        self.assertEqual(service.metrics.source_names(), ["edge", "downloads"])
        self.assertEqual(service.dashboard.guard.login.credentials.password, "older-name")

    def test_statsd_from_settings(self):
        service = build(self, edge_tap, CT_HTTP_LISTEN="tcp:0", CT_DATA_DIR=self.mktemp(),
                        CT_DASHBOARD_PASSWORD="pw", CT_METRICS_STATSD_HOST="stats",
                        CT_METRICS_STATSD_PREFIX="ct.", CT_METRICS_INTERVAL="3")
        self.assertIsInstance(service.statsd, StatsdPusher)
        self.assertIs(service.getServiceNamed("statsd"), service.statsd)
        self.assertEqual((service.statsd.host, service.statsd.prefix, service.statsd.interval),
                         ("stats", "ct.", 3.0))


class LocatorTapTests(unittest.TestCase):
    def test_parts(self):
        service = build(self, locator_tap, CT_HTTP_LISTEN="tcp:8080", CT_DATA_DIR=self.mktemp(),
                        CT_DASHBOARD_USER="ops", CT_DASHBOARD_PASSWORD="pw",
                        CT_METRICS_STATSD_HOST="stats")
        self.assertIsInstance(service, locator_tap.LocatorRuntime)
        [(label, setting, endpoint, _site)] = service.listening.listeners
        self.assertEqual((label, setting, endpoint), ("HTTP", "CT_HTTP_LISTEN", "tcp:8080"))
        self.assertIs(service.getServiceNamed("statsd"), service.statsd)
        self.assertEqual((service.api.credentials.user, service.api.credentials.password),
                         ("ops", "pw"))
        self.assertEqual(service.metrics.source_names(), ["locator"])
