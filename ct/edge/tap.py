"""``twistd ctedge``: options and service construction. The only edge module that reads settings."""

from __future__ import annotations

from twisted.application import service
from twisted.application.internet import TimerService
from twisted.logger import Logger
from twisted.web.server import Site

from ct import __version__
from ct.common.catalog import settings_for
from ct.common.listen import ListenersService, https_endpoint
from ct.common.settings import describe, make_options
from ct.edge.downloads import DownloadCounter
from ct.edge.relay import Limits
from ct.edge.server import EdgeConfig, EdgeServer
from ct.edge.web import build_edge_root
from ct.edge.ws import PresenceProtocol, SessionProtocol, make_factory
from ct.metrics.setup import edge_metric_set, setup_metrics

_log = Logger()

SETTINGS = settings_for("edge")
Options = make_options(
    SETTINGS,
    synopsis="[options]",
    description="Edge server: relays end-to-end-encrypted live coding sessions and team presence. "
    "Every option can also be set with the CT_* variable named in its help (see docs/settings.md).",
)

USAGE_LOG_INTERVAL = 300.0


class EdgeRuntime(service.Service):
    """Starts the edge's timers; on stop, closes every session connection with a resumable code."""

    def __init__(self, edge: EdgeServer):
        self.edge = edge

    def startService(self):
        super().startService()
        self.edge.lag.start()
        if self.edge.probe is not None:
            self.edge.probe.start()

    def stopService(self):
        super().stopService()
        self.edge.lag.stop()
        if self.edge.probe is not None:
            self.edge.probe.stop()
        self.edge.relay.shutdown()


def edge_config(values) -> EdgeConfig:
    limits = Limits(
        max_participants=values["max_participants"],
        max_sessions_per_host=values["max_sessions_per_host"],
        max_people=values["max_connections"],
        resume_window=values["resume_window"],
        replay_max_frames=values["replay_max_frames"],
        replay_max_bytes=values["replay_max_bytes"],
    )
    return EdgeConfig(
        limits=limits,
        team_secret=values["team_secret"],
        rate_limit=values["rate_limit"],
        rate_burst=values["rate_burst"],
        handshake_timeout=values["handshake_timeout"],
        region=values["region"],
    )


def makeService(options, reactor=None) -> service.MultiService:
    if reactor is None:
        from twisted.internet import reactor
    values = dict(options)
    _log.info("ct edge {version} starting; configuration:", version=__version__)
    for line in describe(values, SETTINGS):
        _log.info("  {line}", line=line)

    edge = EdgeServer(reactor, edge_config(values))
    top = service.MultiService()
    top.downloads = DownloadCounter()
    top.metrics = edge_metric_set(edge, top.downloads)
    metrics_page = setup_metrics(values, reactor, top.metrics, top)
    site = build_site(edge, values, reactor, top.downloads, metrics_page)

    listeners = []
    if values["http_listen"]:
        listeners.append(("HTTP", "CT_HTTP_LISTEN", values["http_listen"], site))
    if values["tls_cert"] and values["tls_key"] and values["https_listen"]:
        listeners.append(("SSL", "CT_HTTPS_LISTEN",
                          https_endpoint(values["https_listen"], values["tls_cert"],
                                         values["tls_key"]), site))
    elif values["tls_cert"] or values["tls_key"]:
        from twisted.python import usage

        raise usage.UsageError("HTTPS needs both CT_TLS_CERT and CT_TLS_KEY")
    if not listeners:
        from twisted.python import usage

        raise usage.UsageError("nothing to listen on: set CT_HTTP_LISTEN, or CT_TLS_CERT and "
                               "CT_TLS_KEY for HTTPS")
    listening = ListenersService(reactor, listeners)
    if values["probe_interval"] > 0:
        from ct.edge.probe import RelayProbe

        edge.probe = RelayProbe(reactor, edge, lambda: _probe_url(listening),
                                interval=values["probe_interval"])
    EdgeRuntime(edge).setServiceParent(top)
    listening.setServiceParent(top)
    usage_timer = TimerService(USAGE_LOG_INTERVAL, edge.usage_line)
    usage_timer.clock = reactor
    usage_timer.setServiceParent(top)
    top.edge = edge
    top.listening = listening
    return top


def build_site(edge: EdgeServer, values, reactor, downloads=None, metrics_page=None) -> Site:
    url = values["server_url"] or "ws://localhost"
    max_bytes = values["max_frame_bytes"]
    session_factory = make_factory(SessionProtocol, edge, _ws(url), max_bytes, reactor)
    presence_factory = make_factory(PresenceProtocol, edge, _ws(url), 64 * 1024, reactor)
    root = build_edge_root(edge, session_factory, presence_factory, values["clients_dir"],
                           values["no_clients"], downloads, metrics_page)
    site = Site(root, reactor=reactor)
    site.displayTracebacks = False
    return site


def _ws(url: str) -> str:
    return "ws" + url[4:] if url.startswith("http") else url


def _probe_url(listening: ListenersService) -> str | None:
    """The probe talks to this process over loopback, through the plain HTTP port."""
    port = listening.ports.get("HTTP")
    if port is None:
        return None
    host = port.getHost()
    address = host.host
    if address in ("0.0.0.0", ""):
        address = "127.0.0.1"
    elif address == "::":
        address = "::1"
    if ":" in address:
        address = f"[{address}]"
    return f"http://{address}:{host.port}"
