"""Wiring used by the daemons' ``tap.py``: the dashboard on the locator or on a lone edge.

The taps pass plain values and frozen config objects; nothing here reads settings.
"""

from __future__ import annotations

from twisted.application import service
from twisted.application.internet import TimerService
from twisted.logger import globalLogPublisher

from ct.common.credentials import Credentials
from ct.common.http import make_agent
from ct.common.oidc import OidcClient
from ct.common.proxy import OutboundProxy
from ct.dashboard.app import Dashboard
from ct.dashboard.auth import LoginThrottle, SessionStore
from ct.dashboard.backend import EdgeBackend, LocatorBackend
from ct.dashboard.guard import DashboardConfig
from ct.dashboard.logs import LogRing, ServerLog, log_file_from_argv
from ct.dashboard.memory import AuditRing, MetricHistory
from ct.edge.integrations import Integrations


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


def oidc_client(config: DashboardConfig, reactor,
                outbound: OutboundProxy | None = None) -> OidcClient | None:
    """The identity provider's client when single sign-on is configured; its calls go
    through ``outbound`` (``CT_PROXY``/``NO_PROXY``)."""
    if config.sso is None:
        return None
    return OidcClient(config.sso, make_agent(reactor, outbound=outbound), reactor)


def locator_dashboard(locator, credentials: Credentials, config: DashboardConfig, reactor,
                      server_log: ServerLog, throttle: LoginThrottle | None = None,
                      tokens=None, outbound: OutboundProxy | None = None,
                      sessions: SessionStore | None = None) -> Dashboard:
    """``throttle``: shared with the operator API, which takes the same credentials;
    ``tokens``: the API tokens (:class:`~ct.storage.apitokens.ApiTokenStore`);
    ``outbound``: the proxy for calls to the identity provider; ``sessions``: the log-ins
    shared with other locators (None: in memory)."""
    return Dashboard(LocatorBackend(locator, tokens), credentials, reactor, server_log, config,
                     throttle=throttle, sessions=sessions,
                     oidc=oidc_client(config, reactor, outbound))


def edge_dashboard(edge, downloads, credentials: Credentials, config: DashboardConfig,
                   metrics_interval: float, integrations: Integrations, reactor,
                   parent: service.MultiService, server_log: ServerLog,
                   outbound: OutboundProxy | None = None) -> Dashboard:
    """Single-server: audit entries and metric history kept in memory by this edge, which
    samples its numbers every ``metrics_interval`` seconds (a timer child of ``parent``)."""
    audit = AuditRing()
    edge.audit_sinks.append(audit)
    history = MetricHistory(metrics_interval)

    def sample():
        total = sum(downloads.counts().values()) if downloads is not None else 0
        history.add(reactor.seconds(), edge.snapshot(), total)

    timer = TimerService(metrics_interval, sample)
    timer.clock = reactor
    timer.setServiceParent(parent)
    backend = EdgeBackend(edge, downloads, audit, history, integrations)
    return Dashboard(backend, credentials, reactor, server_log, config,
                     oidc=oidc_client(config, reactor, outbound))
