"""Wiring used by the daemons' ``tap.py``: Prometheus resource and StatsD pusher from settings."""

from __future__ import annotations

from typing import Any, Mapping

from twisted.application import service
from twisted.web import resource

from ct.metrics.definitions import DOWNLOAD_METRICS, EDGE_METRICS
from ct.metrics.model import MetricSet
from ct.metrics.prometheus import MetricsResource, make_registry
from ct.metrics.statsd import DEFAULT_PREFIX, StatsdPusher


def edge_metric_set(edge, downloads=None) -> MetricSet:
    """The edge's metrics: ``edge.snapshot()`` and, when given, ``downloads.snapshot()``."""
    metrics = MetricSet()
    metrics.add_source("edge", edge.snapshot, EDGE_METRICS)
    if downloads is not None:
        metrics.add_source("downloads", downloads.snapshot, DOWNLOAD_METRICS)
    return metrics


def setup_metrics(values: Mapping[str, Any], reactor, metrics: MetricSet,
                  parent: service.MultiService, clock=None) -> resource.Resource | None:
    """Start exporting ``metrics`` as the settings say.

    With CT_METRICS_STATSD_HOST set, a :class:`StatsdPusher` becomes a child of ``parent``
    (available as ``parent.statsd``; otherwise that attribute is None). Returns the
    ``/metrics`` resource when CT_PROMETHEUS_ENABLED is true, else None (no route: 404).
    """
    parent.statsd = None
    if values.get("statsd_host"):
        pusher = StatsdPusher(reactor, metrics, values["statsd_host"],
                              port=values.get("statsd_port") or 8125,
                              protocol=values.get("statsd_protocol") or "UDP",
                              prefix=values.get("statsd_prefix") or DEFAULT_PREFIX,
                              interval=values.get("metrics_interval") or 10.0, clock=clock)
        pusher.setName("statsd")
        pusher.setServiceParent(parent)
        parent.statsd = pusher
    if values.get("prometheus_enabled"):
        return MetricsResource(make_registry(metrics))
    return None
