"""``twistd ctedge``: options and service construction. The only edge module that reads settings."""

from __future__ import annotations

import os
import uuid

from twisted.application import service
from twisted.application.internet import TimerService
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python import usage

from ct import __version__
from ct.settings import settings_for
from ct.common.catalog import ServerConfig, host_token_config, server_config
from ct.common.credentials import dashboard_credentials
from ct.common.web import ServerSite
from ct.common.listen import ListenersService, plain_http_url, server_listeners
from ct.common.settings import apply_time_zone, describe, make_options
from ct.dashboard.guard import DashboardConfig
from ct.dashboard.setup import LogCapture, edge_dashboard
from ct.edge.downloads import DownloadCounter
from ct.edge import stickiness
from ct.edge.integrations import EdgeIntegrations, Integrations, StatsdNaming
from ct.edge.relay import Limits
from ct.edge.server import EdgeConfig, Edge
from ct.edge.web import build_edge_root
from ct.edge.ws import PresenceProtocol, SessionProtocol, make_factory, rejection_log
from ct.metrics.definitions import AV_METRICS, EDGE_LINK_METRICS, TURN_METRICS
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
    """Starts the edge's timers; on stop, :meth:`drain` lets sessions end (the daemon runs
    it first, while everything else still works), then :meth:`stopService` ends the rest."""

    def __init__(self, edge: Edge, drain_timeout: float = 0.0, clock=None):
        self.edge = edge
        self.drain_timeout = drain_timeout
        self.clock = clock

    def startService(self):
        super().startService()
        self.edge.lag.start()
        self.edge.cpu.start()
        if self.edge.probe is not None:
            self.edge.probe.start()

    def stopService(self):
        super().stopService()
        self._finish()

    def drain(self):
        """Refuse new sessions (``shutting-down``) and wait up to ``drain_timeout`` s for
        the running ones to end; listeners, link and outbox keep working meanwhile, so
        participants can still resume and the sessions' audit entries reach the locator."""
        if self.edge.probe is not None:
            self.edge.probe.stop()
        relay = self.edge.relay
        if not relay.sessions or self.drain_timeout <= 0:
            return None
        _log.info("stopping: waiting up to {t:g} s for {n} sessions to end",
                  t=self.drain_timeout, n=len(relay.sessions))
        self.edge.start_draining(self.drain_timeout)  # the locator link tells the locator
        from twisted.internet import task

        deadline = self.clock.seconds() + self.drain_timeout

        def drained():
            return not relay.sessions or self.clock.seconds() >= deadline

        def poll():
            if drained():
                loop.stop()

        loop = task.LoopingCall(poll)
        loop.clock = self.clock
        return loop.start(0.5).addCallback(lambda _: None)

    def _finish(self):
        self.edge.lag.stop()
        self.edge.cpu.stop()
        if self.edge.relay.sessions:
            _log.info("ending {n} sessions: the edge is stopping", n=len(self.edge.relay.sessions))
        self.edge.relay.shutdown()


def edge_config(values) -> EdgeConfig:
    host_tokens = host_token_config(values)
    if values["host_auth"] == "sso" and host_tokens is None:
        raise usage.UsageError("CT_HOST_AUTH=sso needs CT_HOST_TOKEN_SECRET (the same value "
                               "as on the server running single sign-on)")
    if values["guest_auth"] == "sso" and host_tokens is None:
        raise usage.UsageError("CT_GUEST_AUTH=sso needs CT_HOST_TOKEN_SECRET (the same value "
                               "as on the server running single sign-on)")
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
        trusted_proxies=values["trusted_proxies"],
        edge_id=values["edge_id"],
        host_tokens=host_tokens if values["host_auth"] == "sso" else None,
        guest_tokens=host_tokens,
        guest_auth=values["guest_auth"] == "sso",
        cpu_interval=values["report_interval"],
    )


class EdgeDaemon(service.MultiService):
    """The ``ctedge`` service: its children run the edge; these attributes name its parts."""

    def __init__(self, edge: Edge, downloads: DownloadCounter, metrics):
        super().__init__()
        self.edge = edge
        self.downloads = downloads
        self.metrics = metrics
        self.listening: ListenersService | None = None
        self.statsd = None  # StatsdPusher while pushing (the locator may switch it)
        self.turn = None  # the bundled TURN relay's service (CT_TURN_ENABLED)
        self.link = None  # LocatorLink (multi-server)
        self.outbox = None
        self.data_lock = None  # the lock file held on CT_DATA_DIR/edge
        self.dashboard = None  # single-server

    def stopService(self):
        """Drain first, with every child still running; then stop the children (in
        reverse order: listeners, the remaining sessions, the link, the outbox last)."""
        drained = defer.gatherResults([defer.maybeDeferred(child.drain) for child in self
                                       if isinstance(child, EdgeRuntime)])
        drained.addErrback(lambda f: _log.failure("draining failed", f))
        return drained.addCallback(lambda _: service.MultiService.stopService(self))


def makeService(options, reactor=None) -> EdgeDaemon:
    if reactor is None:
        from twisted.internet import reactor
    values = dict(options)
    apply_time_zone(values["time_zone"])
    # The log from here on: single-server, for the dashboard and /logs; under a locator,
    # for the locator's dashboard (over the link).
    log_capture = LogCapture(reactor)
    _log.info("ct edge {version} starting; configuration:", version=__version__)
    for line in describe(values, SETTINGS):
        _log.info("  {line}", line=line)

    server = server_config(values)
    edge = Edge(reactor, edge_config(values))
    downloads = DownloadCounter()
    top = EdgeDaemon(edge, downloads, edge_metric_set(edge, downloads))
    metrics_page, top.statsd = setup_metrics(server.metrics, reactor, top.metrics, top)
    own_integrations = Integrations(
        prometheus=values["prometheus_enabled"], statsd_host=values["statsd_host"],
        statsd_port=values["statsd_port"], statsd_protocol=values["statsd_protocol"])
    integrations = None
    if values["locator"]:  # the locator may switch /metrics and StatsD at run time
        integrations = EdgeIntegrations(
            reactor, top.metrics, top, own_integrations,
            StatsdNaming(values["statsd_prefix"], values["metrics_interval"]))
        metrics_page = integrations.resource
    site = build_site(edge, values, server, reactor, top.downloads, metrics_page)

    listening = server_listeners(reactor, server.listen, site)
    add_audio_video(top, edge, values, reactor)
    if values["probe_interval"] > 0:
        from ct.edge.probe import RelayProbe

        edge.probe = RelayProbe(reactor, edge, lambda: plain_http_url(listening),
                                interval=values["probe_interval"])
    # Children stop in reverse order: listeners, then sessions end (their audit entries
    # still reach the outbox), then the link, and the outbox is flushed last.
    if values["locator"]:
        top.link = add_locator_link(top, edge, values, listening, reactor)
        top.link.downloads = top.downloads
        top.link.server_log = log_capture.server_log
        top.link.config_listeners.append(integrations.on_config)
    else:
        credentials = dashboard_credentials(server.dashboard_user, server.dashboard_password,
                                            values["data_dir"])
        top.dashboard = edge_dashboard(
            edge, top.downloads, credentials,
            DashboardConfig.for_server(values["server_url"], values["trusted_proxies"],
                                       server.sso, server.password_login,
                                       server.host_tokens),
            values["metrics_interval"], own_integrations, reactor, top, log_capture.server_log,
            outbound=server.outbound)
        top.dashboard.mount(site.resource)
    log_capture.setServiceParent(top)
    EdgeRuntime(edge, values["drain_timeout"], reactor).setServiceParent(top)
    listening.setServiceParent(top)
    usage_timer = TimerService(USAGE_LOG_INTERVAL, edge.usage_line)
    usage_timer.clock = reactor
    usage_timer.setServiceParent(top)
    top.listening = listening
    return top


class OutboxService(service.Service):
    """Opens the outbox before the link needs it; flushes and closes it last."""

    def __init__(self, outbox):
        self.outbox = outbox

    def startService(self):
        super().startService()
        self.outbox.open().addErrback(
            lambda f: _log.failure("cannot open the outbox {path}", f, path=self.outbox.path))

    def stopService(self):
        super().stopService()
        return self.outbox.close()


def edge_data_dir(values) -> str:
    """``CT_DATA_DIR/edge``, created; holds the edge id, the outbox and a lock file."""
    path = os.path.join(values["data_dir"], "edge")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise usage.UsageError(f"CT_DATA_DIR: cannot create {path}: {e}") from None
    return path


def lock_data_dir(path: str):
    """Hold an exclusive lock so two edges never share an id and an outbox."""
    import fcntl

    handle = open(os.path.join(path, "lock"), "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise usage.UsageError(f"CT_DATA_DIR: {path} is in use by another edge; give each "
                               "edge its own CT_DATA_DIR") from None
    return handle


def stable_edge_id(path: str) -> str:
    id_file = os.path.join(path, "edge-id")
    try:
        with open(id_file) as f:
            edge_id = f.read().strip()
        if edge_id:
            return edge_id
    except FileNotFoundError:
        pass
    edge_id = uuid.uuid4().hex[:12]
    with open(id_file, "w") as f:
        f.write(edge_id + "\n")
    return edge_id


def add_locator_link(top, edge: Edge, values, listening, reactor):
    from ct.edge.link import LocatorLink, metric_record
    from ct.edge.outbox import Outbox

    if not values["edge_secret"]:
        raise usage.UsageError("CT_LOCATOR is set, so CT_EDGE_SECRET must be set too (the "
                               "same value as on the locator)")
    data = edge_data_dir(values)
    top.data_lock = lock_data_dir(data)
    if not values["edge_id"]:
        edge.edge_id = stable_edge_id(data)
    outbox = Outbox(reactor, os.path.join(data, "outbox.sqlite3"), values["outbox_max"],
                    values["outbox_memory_max"])
    edge.outbox = outbox  # its write health shows in /health
    edge.audit_sinks.append(lambda entry: outbox.add("audit", entry))
    OutboxService(outbox).setServiceParent(top)

    def snapshot():
        outbox.add("metrics", metric_record(edge, top.downloads, reactor).to_json())

    snapshots = TimerService(values["metrics_interval"], snapshot)
    snapshots.clock = reactor
    snapshots.setServiceParent(top)

    def public_url():
        return values["server_url"] or plain_http_url(listening, external=True)

    link = LocatorLink(reactor, edge, outbox, values["locator"], values["edge_secret"],
                       public_url, report_interval=values["report_interval"],
                       trust_all=values["trust_all_certs"],
                       max_connections=values["max_connections"],
                       outbound=server_config(values).outbound)
    link.setServiceParent(top)
    top.outbox = outbox
    top.metrics.add_source("edge-link", lambda: {
        "connected": 1 if link.registered else 0, "outbox_depth": outbox.depth,
        "outbox_dropped_total": outbox.dropped, "outbox_unwritten": outbox.unwritten,
        "outbox_write_failures_total": outbox.write_failures}, EDGE_LINK_METRICS)
    _log.info("edge {edge} will register with the locator at {url}{via}", edge=edge.edge_id,
              url=values["locator"],
              via=f" through the proxy {link.proxy}" if link.proxy is not None else "")
    return link


def add_audio_video(top, edge: Edge, values, reactor) -> None:
    """The bundled TURN relay (CT_TURN_ENABLED) and ICE servers for participants (CT_AV_ENABLED)."""
    turn = None
    if values["turn_enabled"]:
        from ct.turn.tap import make_turn_service

        turn = make_turn_service(values, reactor)  # turn.secret: generated when unset
        turn.setServiceParent(top)
        top.turn = turn
        top.metrics.add_source("turn", turn.turn_server.stats.snapshot, TURN_METRICS)
    if not values["av_enabled"]:
        return
    from ct.turn.credentials import participant_user, revoke_on_departure
    from ct.turn.tap import ice_server_config

    ice = ice_server_config(values, turn.secret if turn is not None else None)
    if ice is None:
        raise usage.UsageError("CT_AV_ENABLED needs a TURN server: CT_TURN_ENABLED=true (with "
                               "CT_TURN_HOST or CT_SERVER_URL naming this host), or "
                               "CT_AV_COTURN_SERVER and CT_AV_COTURN_SECRET")

    def hand_ice_servers(conn, participant):
        # Fresh short-lived credentials scoped to this participant.
        user = participant_user(participant.session.id, participant.id)
        conn.send_control({"type": "ice-servers",
                           "iceServers": ice.servers_for(user, reactor.seconds())})

    def hand_everyone_fresh_ones():
        for session in list(edge.relay.sessions.values()):
            for participant in list(session.participants.values()):
                if participant.conn is not None and not session.internal:
                    hand_ice_servers(participant.conn, participant)

    edge.handshake_hooks.append(hand_ice_servers)  # at every join and resume
    from ct.edge.av import AvReports

    edge.av_reports = AvReports(reactor.seconds)  # the clients' call counters
    edge.relay.add_listener(edge.av_reports.on_relay_event)
    top.metrics.add_source("av", edge.av_reports.snapshot, AV_METRICS)
    refresher = TimerService(ice.ttl / 2, hand_everyone_fresh_ones)  # and before they expire
    refresher.clock = reactor
    refresher.setServiceParent(top)
    if turn is not None and not values["av_coturn_server"]:
        # The bundled relay ends a session's and a departed participant's allocations.
        edge.relay.add_listener(revoke_on_departure(turn.turn_server, ice.ttl, reactor.seconds))


SIGN_IN_PATH = "/dashboard/sso/host"


def guest_sign_in_address(values, server: ServerConfig) -> str | None:
    """Where the browser app sends guests to sign in: ``CT_GUEST_SIGN_IN_URL``; else, with
    a locator, the first ``CT_LOCATOR`` URL's; else this edge's own dashboard when it runs
    single sign-on with host tokens (relative to ``/join/<session>``); else None."""
    if values["guest_sign_in_url"]:
        return values["guest_sign_in_url"].rstrip("/") + SIGN_IN_PATH
    if values["locator"]:
        first = values["locator"].split(",")[0].strip().rstrip("/")
        return first.replace("ws://", "http://", 1).replace("wss://", "https://", 1) + SIGN_IN_PATH
    if server.sso is not None and server.host_tokens is not None:
        return ".." + SIGN_IN_PATH
    return None


def build_site(edge: Edge, values, server: ServerConfig, reactor, downloads=None,
               metrics_page=None) -> ServerSite:
    max_bytes = values["max_frame_bytes"]
    rejections = rejection_log(reactor, values["bad_input_log_limit"])
    session_factory = make_factory(SessionProtocol, edge, server.websocket_url, max_bytes,
                                   reactor, rejections)
    presence_factory = make_factory(PresenceProtocol, edge, server.websocket_url, 64 * 1024,
                                    reactor, rejections)
    root = build_edge_root(edge, session_factory, presence_factory, values["clients_dir"],
                           values["no_clients"], downloads, metrics_page,
                           public_https=(values["server_url"] or "").startswith("https:"),
                           sign_in=guest_sign_in_address(values, server))
    site = ServerSite(root, reactor, server.site)
    site.requestFactory = stickiness.request_factory(edge, site.requestFactory)
    site.displayTracebacks = False
    return site


