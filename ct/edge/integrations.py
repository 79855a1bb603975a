"""Deployment-wide metric integrations (set on the locator's dashboard) applied on an edge.

The locator pushes ``{"prometheus": bool, "statsdHost": str|None, "statsdPort": int,
"statsdProtocol": "UDP"|"TCP"}``, or ``None`` for "use each edge's own environment".
:class:`EdgeIntegrations` switches ``/metrics`` on or off and replaces the StatsD pusher.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from twisted.logger import Logger
from twisted.web import resource

from ct.metrics.prometheus import MetricsResource, make_registry
from ct.metrics.statsd import StatsdPusher

_log = Logger()

STATSD_PORT = 8125  # when a pushed message names no port


@dataclass(frozen=True, slots=True)
class Integrations:
    """Where an edge's metrics go: Prometheus ``/metrics`` on or off, and a StatsD target."""

    prometheus: bool
    statsd_host: str | None
    statsd_port: int
    statsd_protocol: str

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Integrations:
        """The form the locator pushes and stores."""
        return cls(prometheus=bool(value.get("prometheus")),
                   statsd_host=value.get("statsdHost") or None,
                   statsd_port=int(value.get("statsdPort") or STATSD_PORT),
                   statsd_protocol=(value.get("statsdProtocol") or "UDP").upper())

    def to_json(self) -> dict[str, Any]:
        return {"prometheus": self.prometheus, "statsdHost": self.statsd_host,
                "statsdPort": self.statsd_port, "statsdProtocol": self.statsd_protocol}

    def same_statsd(self, other: Integrations) -> bool:
        return ((self.statsd_host, self.statsd_port, self.statsd_protocol)
                == (other.statsd_host, other.statsd_port, other.statsd_protocol))


@dataclass(frozen=True, slots=True)
class StatsdNaming:
    """What a replacement StatsD pusher keeps from the edge's own settings."""

    prefix: str
    interval: float


class SwitchableMetrics(resource.Resource):
    """``/metrics`` that answers 404 while Prometheus is off."""

    isLeaf = True

    def __init__(self, metrics, enabled: bool):
        super().__init__()
        self.page = MetricsResource(make_registry(metrics))
        self.enabled = enabled

    def render(self, request):
        if not self.enabled:
            return resource.NoResource("Prometheus metrics are off").render(request)
        return self.page.render(request)


class EdgeIntegrations:
    """Applies pushed settings to an edge's ``/metrics`` and StatsD pusher (a child of
    ``parent``, available as ``parent.statsd``). ``environment``: the edge's own settings,
    in force until the locator pushes others and again when it pushes ``None``."""

    def __init__(self, reactor, metrics, parent, environment: Integrations,
                 naming: StatsdNaming):
        self.reactor = reactor
        self.metrics = metrics
        self.parent = parent
        self.naming = naming
        self.environment = self.current = environment
        self.resource = SwitchableMetrics(metrics, environment.prometheus)

    def on_config(self, message: Mapping[str, Any]) -> None:
        """A locator ``config`` message: apply its ``integrations`` (None: environment)."""
        if "integrations" not in message:
            return
        self.apply(message["integrations"])

    def apply(self, settings: Mapping[str, Any] | None) -> None:
        wanted = self.environment if settings is None else Integrations.from_json(settings)
        if wanted == self.current:
            return
        self.resource.enabled = wanted.prometheus
        if not wanted.same_statsd(self.current):
            self._replace_pusher(wanted)
        _log.info("metric integrations now: Prometheus /metrics {p}, StatsD {s} ({why})",
                  p="on" if wanted.prometheus else "off",
                  s=(f"{wanted.statsd_host}:{wanted.statsd_port} "
                     f"{wanted.statsd_protocol}") if wanted.statsd_host else "off",
                  why="environment" if settings is None else "set on the locator")
        self.current = wanted

    def _replace_pusher(self, wanted: Integrations) -> None:
        old = getattr(self.parent, "statsd", None)
        if old is not None:
            old.disownServiceParent()
            self.parent.statsd = None
        if not wanted.statsd_host:
            return
        try:
            pusher = StatsdPusher(self.reactor, self.metrics, wanted.statsd_host,
                                  port=wanted.statsd_port, protocol=wanted.statsd_protocol,
                                  prefix=self.naming.prefix, interval=self.naming.interval)
        except ValueError as e:
            _log.error("StatsD settings from the locator refused: {e}", e=e)
            return
        pusher.setName("statsd")
        pusher.setServiceParent(self.parent)
        self.parent.statsd = pusher
