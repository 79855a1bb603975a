"""``setup_metrics`` from a ``MetricsConfig``, in memory: the page and the StatsD pusher."""

from __future__ import annotations

from twisted.application import service
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from ct.metrics.model import MetricSet
from ct.metrics.prometheus import MetricsResource
from ct.metrics.setup import MetricsConfig, setup_metrics
from ct.metrics.statsd import DEFAULT_INTERVAL, DEFAULT_PORT, DEFAULT_PREFIX, StatsdPusher


class SetupMetricsTests(unittest.TestCase):
    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.parent = service.MultiService()

    def test_defaults_export_nothing(self):
        self.assertEqual(MetricsConfig(), MetricsConfig(
            prometheus=False, statsd_host=None, statsd_port=DEFAULT_PORT,
            statsd_protocol="UDP", statsd_prefix=DEFAULT_PREFIX, interval=DEFAULT_INTERVAL))
        page, pusher = setup_metrics(MetricsConfig(), self.reactor, MetricSet(), self.parent)
        self.assertEqual((page, pusher, list(self.parent)), (None, None, []))

    def test_prometheus_and_statsd(self):
        config = MetricsConfig(prometheus=True, statsd_host="stats.example", statsd_port=9125,
                               statsd_protocol="TCP", statsd_prefix="ct.", interval=2.0)
        clock = Clock()
        page, pusher = setup_metrics(config, self.reactor, MetricSet(), self.parent, clock)
        self.assertIsInstance(page, MetricsResource)
        self.assertIsInstance(pusher, StatsdPusher)
        self.assertIs(self.parent.getServiceNamed("statsd"), pusher)
        self.assertEqual((pusher.host, pusher.port, pusher.protocol, pusher.prefix,
                          pusher.interval, pusher.clock),
                         ("stats.example", 9125, "TCP", "ct.", 2.0, clock))
