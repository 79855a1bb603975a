"""Wiring used by the daemons' ``tap.py``: the dashboard on the locator or on a lone edge."""

from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import urlsplit

from twisted.application import service
from twisted.application.internet import TimerService
from twisted.logger import globalLogPublisher

from ct.common.credentials import Credentials
from ct.dashboard.app import Dashboard
from ct.dashboard.auth import LoginThrottle
from ct.dashboard.backend import EdgeBackend, LocatorBackend
from ct.dashboard.integrations import settings_from_environment
from ct.dashboard.logs import LogRing, ServerLog, log_file_from_argv
from ct.dashboard.memory import AuditRing, MetricHistory


class LogCapture(service.Service):
    """Keeps recent log events in memory from creation until the service stops;
    ``server_log`` is what ``/logs`` shows (the twistd log file when there is one)."""

    def __init__(self, reactor, publisher=globalLogPublisher):
        self.ring = LogRing()
        self.publisher = publisher
        self.server_log = ServerLog(self.ring, log_file_from_argv(), reactor)
        publisher.addObserver(self.ring)

    def stopService(self):
        super().stopService()
        self.publisher.removeObserver(self.ring)


def _web_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """Dashboard arguments that come from the common settings."""
    server_url = values.get("server_url")
    return {"trusted_proxies": values.get("trusted_proxies") or (),
            "allowed_origins": [server_url],
            "public_https": urlsplit(server_url or "").scheme == "https"}


def locator_dashboard(locator, credentials: Credentials, values: Mapping[str, Any], reactor,
                      server_log: ServerLog, throttle: LoginThrottle | None = None) -> Dashboard:
    """``throttle``: shared with the operator API, which takes the same credentials."""
    return Dashboard(LocatorBackend(locator), credentials, reactor, server_log,
                     throttle=throttle, **_web_options(values))


def edge_dashboard(edge, downloads, values: Mapping[str, Any], reactor,
                   parent: service.MultiService, server_log: ServerLog,
                   credentials: Credentials) -> Dashboard:
    """Single-server: audit entries and metric history kept in memory by this edge."""
    audit = AuditRing()
    edge.audit_sinks.append(audit)
    interval = float(values.get("metrics_interval") or 10.0)
    history = MetricHistory(interval)

    def sample():
        total = sum(downloads.counts().values()) if downloads is not None else 0
        history.add(reactor.seconds(), edge.snapshot(), total)

    timer = TimerService(interval, sample)
    timer.clock = reactor
    timer.setServiceParent(parent)
    backend = EdgeBackend(edge, downloads, audit, history, settings_from_environment(values))
    return Dashboard(backend, credentials, reactor, server_log, **_web_options(values))
