"""Prometheus exposition: a custom collector over a :class:`MetricSet` and a ``/metrics`` leaf."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from twisted.web import resource

from ct.metrics.model import COUNTER, MetricSet


class SnapshotCollector:
    """Reads the live values of a :class:`MetricSet` at scrape time."""

    def __init__(self, metrics: MetricSet):
        self.metrics = metrics

    def collect(self):
        for family in self.metrics.read():
            d = family.definition
            labels = list(family.label_names)
            if family.kind == COUNTER:
                out = CounterMetricFamily(family.name, d.help, labels=labels)
            else:
                out = GaugeMetricFamily(family.name, d.help, labels=labels)
            for label_values, value in family.samples:
                out.add_metric(list(label_values), value)
            yield out


def make_registry(metrics: MetricSet) -> CollectorRegistry:
    """A registry of its own (never the process-global one) holding one snapshot collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(metrics))
    return registry


class MetricsResource(resource.Resource):
    """``/metrics`` in the Prometheus text exposition format."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry):
        super().__init__()
        self.registry = registry

    def render_GET(self, request):
        body = generate_latest(self.registry)
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        request.setHeader(b"cache-control", b"no-store")
        return body

    def render_HEAD(self, request):
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        return b""
