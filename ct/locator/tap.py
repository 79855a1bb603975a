"""``twistd ctlocator``: options and service construction. The only locator module that reads settings.

Start-up order: open the database and run migrations, then listen. A database that is
unreachable or has a newer schema stops the process with one clear message and exit
status 1, before any port is opened.
"""

from __future__ import annotations

import os
import uuid

from autobahn.twisted.resource import WebSocketResource
from twisted.application import service
from twisted.application.internet import TimerService
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python import usage
from twisted.web import pages, resource

from ct import __version__
from ct.settings import settings_for
from ct.common.catalog import server_config
from ct.common.credentials import dashboard_credentials
from ct.common.http import health_checker, make_agent
from ct.common.web import ServerSite
from ct.common.listen import ListenersService, plain_http_url, server_listeners
from ct.common.ratelimit import KeyedLimiter
from ct.common.settings import apply_time_zone, describe, make_options
from ct.dashboard.auth import LoginThrottle
from ct.dashboard.guard import DashboardConfig
from ct.dashboard.setup import LogCapture, locator_dashboard
from ct.dashboard.shared_logins import SharedSessionStore
from ct.locator.api import LocatorAPI
from ct.locator.cluster import Cluster, make_listener, peer_pinger
from ct.locator.edges import EdgeDirectory
from ct.locator.link import EdgeLinkFactory
from ct.locator.service import HEALTH_PROBE_TIMEOUT, Locator
from ct.metrics.definitions import LOCATOR_METRICS
from ct.metrics.model import MetricSet
from ct.metrics.setup import setup_metrics
from ct.storage.apitokens import ApiTokenStore
from ct.storage.cluster import ClusterStore
from ct.storage.config import ConfigError, load_locator_config
from ct.storage.database import Database
from ct.storage.logins import LoginStore
from ct.storage.migrations import prepare_database
from ct.storage.store import LocatorStore
from ct.webclient import redirect as join_redirect
from ct.webclient.assets import Assets

_log = Logger()

SETTINGS = settings_for("locator")
REGIONS_MAX_BODY = 1024 * 1024  # a regions table with many CIDRs is the one large body
Options = make_options(
    SETTINGS,
    synopsis="[options]",
    description="Locator: assigns sessions and team presence to edges; stores audit entries, "
    "metrics and configuration. Every option can also be set with the CT_* variable named in "
    "its help (see docs/settings.md).",
)


class LocatorRoot(resource.Resource):
    """``/``: no page of its own; ``/ws/edge`` for edges, other children mounted on it."""

    def __init__(self, link_factory):
        super().__init__()
        ws = resource.Resource()
        ws.putChild(b"edge", WebSocketResource(link_factory))
        self.putChild(b"ws", ws)

    def getChild(self, path, request):
        return pages.notFound("Not found", "no such route on this server")


class LocatorRuntime(service.MultiService):
    """Prepares the database, starts the locator, then its listeners (children)."""

    def __init__(self, reactor, db: Database, locator: Locator, cluster: Cluster | None = None):
        super().__init__()
        self.reactor = reactor
        self.db = db
        self.locator = locator
        self.cluster = cluster
        self.logins: SharedSessionStore | None = None  # dashboard log-ins, PostgreSQL
        self.metrics = MetricSet()
        self.metrics.add_source("locator", locator.snapshot, LOCATOR_METRICS)
        self.statsd = None  # StatsdPusher when CT_METRICS_STATSD_HOST is set
        self.api: LocatorAPI | None = None
        self.dashboard = None
        self.listening: ListenersService | None = None
        self.ready: defer.Deferred = defer.Deferred()
        self.failed = False

    def startService(self):
        service.Service.startService(self)  # children start once the database is ready
        d = self._prepare()
        d.addCallbacks(self._ready, self._fail)

    @defer.inlineCallbacks
    def _prepare(self):
        _log.info("opening {db}", db=self.db.describe())
        version = yield prepare_database(self.db, self.reactor)
        _log.info("{db} ready (schema version {version})", db=self.db.describe(),
                  version=version)
        cluster = self.cluster
        if cluster is not None:
            yield cluster.start(make_listener(self.reactor, cluster) if cluster.shared else None)
            _log.info("locator {id} registered ({mode})", id=cluster.locator_id,
                      mode="several locators may share this database" if cluster.shared
                      else f"the only locator on {self.db.dialect}")
        yield self.locator.start()
        if cluster is not None and cluster.shared:
            yield self.locator.shared_edges_changed(None)
        if self.logins is not None:
            yield self.logins.start()

    def _ready(self, _):
        try:
            for child in self:
                child.startService()
        except Exception as e:
            self._fail(e)
            return
        self.ready.callback(None)

    def _fail(self, reason):
        message = reason.getErrorMessage() if hasattr(reason, "getErrorMessage") else str(reason)
        _log.critical("locator cannot start: {message}", message=message)
        self.failed = True
        if not self.ready.called:
            self.ready.errback(reason)
            self.ready.addErrback(lambda _: None)
        self.reactor.addSystemEventTrigger("after", "shutdown", os._exit, 1)
        if self.reactor.running:
            self.reactor.stop()
        else:
            self.reactor.callWhenRunning(self.reactor.stop)

    def stopService(self):
        self.locator.stop()
        d = defer.maybeDeferred(super().stopService)
        if self.logins is not None and not self.failed:
            d.addBoth(lambda result: self.logins.stop().addBoth(lambda _: result))
        if self.cluster is not None and not self.failed:
            d.addBoth(lambda result: self.cluster.stop().addBoth(lambda _: result))

        def close(result):
            self.db.close()
            return result

        return d.addBoth(close)


def makeService(options, reactor=None) -> LocatorRuntime:
    if reactor is None:
        from twisted.internet import reactor
    values = dict(options)
    server = server_config(values)
    apply_time_zone(values["time_zone"])
    log_capture = LogCapture(reactor)  # /logs shows the log from here on
    _log.info("ct locator {version} starting; configuration:", version=__version__)
    for line in describe(values, SETTINGS):
        _log.info("  {line}", line=line)
    try:
        os.makedirs(values["data_dir"], exist_ok=True)
        config = load_locator_config(values["locator_config"], values["data_dir"])
    except ConfigError as e:
        raise usage.UsageError(f"CT_LOCATOR_CONFIG: {e}") from None
    except OSError as e:
        raise usage.UsageError(f"CT_DATA_DIR: {e}") from None
    if not values["edge_secret"]:
        _log.warn("CT_EDGE_SECRET is not set: every edge will be refused")

    db = Database(config.database, reactor)
    store = LocatorStore(db, reactor)
    listening_holder: list[ListenersService] = []

    def relay_url() -> str | None:
        if values["locator_relay_url"] or values["server_url"]:
            return values["locator_relay_url"] or values["server_url"]
        return plain_http_url(listening_holder[0], external=True) if listening_holder else None

    cluster = Cluster(reactor, db, ClusterStore(db, reactor), stable_locator_id(values["data_dir"]),
                      relay_url, __version__,
                      peer_ping=peer_pinger(reactor, make_agent(reactor, values["trust_all_certs"],
                                                                timeout=2.0,
                                                                outbound=server.outbound)))
    directory = EdgeDirectory(reactor, dead_after=values["edge_dead_after"],
                              link_grace=values["link_grace"])
    reader = None
    if values.get("maxmind_db"):
        from ct.locator.regions import open_maxmind

        reader = open_maxmind(values["maxmind_db"])
    locator = Locator(reactor, store, directory, values["edge_secret"],
                      health_check=health_checker(reactor, values["trust_all_certs"],
                                                  outbound=server.outbound,
                                                  timeout=HEALTH_PROBE_TIMEOUT),
                      reader=reader,
                      placement_limiter=KeyedLimiter(values["placement_rate"],
                                                     values["placement_burst"],
                                                     reactor.seconds),
                      cluster=cluster)
    # Several locators on PostgreSQL share dashboard log-ins; elsewhere they stay in memory.
    logins = (SharedSessionStore(reactor, LoginStore(db),
                                 lambda keys: cluster.announce(logins=keys))
              if cluster.shared else None)
    cluster.logins = logins
    credentials = dashboard_credentials(server.dashboard_user, server.dashboard_password,
                                        values["data_dir"])
    throttle = LoginThrottle(reactor)  # one for the operator API and the dashboard
    tokens = ApiTokenStore(db, reactor)
    api = LocatorAPI(locator, credentials, values["trusted_proxies"], throttle, tokens,
                     server.password_login)
    link_factory = EdgeLinkFactory(server.websocket_url, locator, reactor,
                                   link_timeout=values["edge_link_timeout"],
                                   register_timeout=values["edge_register_timeout"])
    runtime = LocatorRuntime(reactor, db, locator, cluster)
    runtime.logins = logins
    runtime.api = api
    metrics_page, runtime.statsd = setup_metrics(server.metrics, reactor, runtime.metrics,
                                                 runtime)
    root = LocatorRoot(link_factory)
    api.mount(root)
    join_redirect.mount(root, Assets(), locator.find_session, reactor)
    if metrics_page is not None:
        root.putChild(b"metrics", metrics_page)
    dashboard = locator_dashboard(
        locator, credentials,
        DashboardConfig.for_server(values["server_url"], values["trusted_proxies"],
                                   server.sso, server.password_login,
                                   server.host_tokens), reactor,
        log_capture.server_log, throttle, tokens, outbound=server.outbound, sessions=logins)
    dashboard.mount(root)
    log_capture.setServiceParent(runtime)
    regions_body = max(server.site.max_body, REGIONS_MAX_BODY)
    site = ServerSite(root, reactor, server.site,
                      body_limits={b"/api/v1/regions": regions_body,
                                   b"/dashboard/regions": regions_body})

    retention = TimerService(3600, lambda: locator.prune(
        values["audit_retention_days"], values["metrics_retention_days"]).addErrback(
            lambda f: _log.failure("retention pruning failed", f)))
    retention.clock = reactor
    retention.setServiceParent(runtime)
    runtime.listening = server_listeners(reactor, server.listen, site)
    listening_holder.append(runtime.listening)
    runtime.listening.setServiceParent(runtime)
    runtime.dashboard = dashboard
    return runtime


def stable_locator_id(data_dir: str) -> str:
    """This locator's id among the others: generated once, kept in ``CT_DATA_DIR/locator-id``
    (a restarted locator is the same one)."""
    path = os.path.join(data_dir, "locator-id")
    try:
        with open(path) as f:
            locator_id = f.read().strip()
        if locator_id:
            return locator_id[:64]
    except FileNotFoundError:
        pass
    locator_id = "loc-" + uuid.uuid4().hex[:12]
    with open(path, "w") as f:
        f.write(locator_id + "\n")
    return locator_id


