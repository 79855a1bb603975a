"""Deployment-wide metric integrations (set on the locator's dashboard) applied on an edge.

The locator pushes ``{"prometheus": bool, "statsdHost": str|None, "statsdPort": int,
"statsdProtocol": "UDP"|"TCP"}``, or ``None`` for "use each edge's own environment".
:class:`EdgeIntegrations` switches ``/metrics`` on or off and replaces the StatsD pusher.
"""

from __future__ import annotations

from typing import Any, Mapping

from twisted.logger import Logger
from twisted.web import resource

from ct.metrics.prometheus import MetricsResource, make_registry
from ct.metrics.statsd import DEFAULT_PREFIX, StatsdPusher

_log = Logger()


def settings_from_environment(values: Mapping[str, Any]) -> dict[str, Any]:
    """The integrations an edge or a lone server has from its own ``CT_*`` settings."""
    return {"prometheus": bool(values.get("prometheus_enabled")),
            "statsdHost": values.get("statsd_host") or None,
            "statsdPort": int(values.get("statsd_port") or 8125),
            "statsdProtocol": values.get("statsd_protocol") or "UDP"}


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
    ``parent``, available as ``parent.statsd``)."""

    def __init__(self, reactor, metrics, parent, values: Mapping[str, Any]):
        self.reactor = reactor
        self.metrics = metrics
        self.parent = parent
        self.values = values
        self.environment = settings_from_environment(values)
        self.current = dict(self.environment)
        self.resource = SwitchableMetrics(metrics, self.current["prometheus"])

    def on_config(self, message: Mapping[str, Any]) -> None:
        """A locator ``config`` message: apply its ``integrations`` (None: environment)."""
        if "integrations" not in message:
            return
        self.apply(message["integrations"])

    def apply(self, settings: Mapping[str, Any] | None) -> None:
        wanted = dict(self.environment) if settings is None else {
            "prometheus": bool(settings.get("prometheus")),
            "statsdHost": settings.get("statsdHost") or None,
            "statsdPort": int(settings.get("statsdPort") or 8125),
            "statsdProtocol": (settings.get("statsdProtocol") or "UDP").upper()}
        if wanted == self.current:
            return
        self.resource.enabled = wanted["prometheus"]
        statsd_keys = ("statsdHost", "statsdPort", "statsdProtocol")
        if any(wanted[k] != self.current[k] for k in statsd_keys):
            self._replace_pusher(wanted)
        _log.info("metric integrations now: Prometheus /metrics {p}, StatsD {s} ({why})",
                  p="on" if wanted["prometheus"] else "off",
                  s=(f"{wanted['statsdHost']}:{wanted['statsdPort']} "
                     f"{wanted['statsdProtocol']}") if wanted["statsdHost"] else "off",
                  why="environment" if settings is None else "set on the locator")
        self.current = wanted

    def _replace_pusher(self, wanted) -> None:
        old = getattr(self.parent, "statsd", None)
        if old is not None:
            old.disownServiceParent()
            self.parent.statsd = None
        if not wanted["statsdHost"]:
            return
        try:
            pusher = StatsdPusher(self.reactor, self.metrics, wanted["statsdHost"],
                                  port=wanted["statsdPort"], protocol=wanted["statsdProtocol"],
                                  prefix=self.values.get("statsd_prefix") or DEFAULT_PREFIX,
                                  interval=self.values.get("metrics_interval") or 10.0)
        except ValueError as e:
            _log.error("StatsD settings from the locator refused: {e}", e=e)
            return
        pusher.setName("statsd")
        pusher.setServiceParent(self.parent)
        self.parent.statsd = pusher
