"""Wiring used by the daemons' ``tap.py``: Prometheus resource and StatsD pusher from a config."""

from __future__ import annotations

from dataclasses import dataclass

from twisted.application import service
from twisted.web import resource

from ct.metrics.definitions import DOWNLOAD_METRICS, EDGE_METRICS
from ct.metrics.model import MetricSet
from ct.metrics.prometheus import MetricsResource, make_registry
from ct.metrics.statsd import DEFAULT_INTERVAL, DEFAULT_PORT, DEFAULT_PREFIX, StatsdPusher


def edge_metric_set(edge, downloads=None) -> MetricSet:
    """The edge's metrics: ``edge.snapshot()`` and, when given, ``downloads.snapshot()``."""
    metrics = MetricSet()
    metrics.add_source("edge", edge.snapshot, EDGE_METRICS)
    if downloads is not None:
        metrics.add_source("downloads", downloads.snapshot, DOWNLOAD_METRICS)
    return metrics


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """How a server exports its metrics: ``CT_PROMETHEUS_ENABLED``, ``CT_METRICS_STATSD_*``
    (no host: no StatsD) and ``CT_METRICS_INTERVAL``."""

    prometheus: bool = False
    statsd_host: str | None = None
    statsd_port: int = DEFAULT_PORT
    statsd_protocol: str = "UDP"
    statsd_prefix: str = DEFAULT_PREFIX
    interval: float = DEFAULT_INTERVAL


def setup_metrics(config: MetricsConfig, reactor, metrics: MetricSet,
                  parent: service.MultiService, clock=None
                  ) -> tuple[resource.Resource | None, StatsdPusher | None]:
    """Start exporting ``metrics`` as ``config`` says: ``(page, pusher)``.

    With a StatsD host, the :class:`StatsdPusher` becomes a child of ``parent``. The page is
    the ``/metrics`` resource when Prometheus is on, else None (no route: 404).
    """
    pusher = None
    if config.statsd_host:
        pusher = StatsdPusher(reactor, metrics, config.statsd_host, port=config.statsd_port,
                              protocol=config.statsd_protocol, prefix=config.statsd_prefix,
                              interval=config.interval, clock=clock)
        pusher.setName("statsd")
        pusher.setServiceParent(parent)
    page = MetricsResource(make_registry(metrics)) if config.prometheus else None
    return page, pusher
