"""The dashboard (Klein): the route table of ``/dashboard/...``, and ``/logs``.

Every page and action needs a log-in (a server-side session named by an HttpOnly,
SameSite=Strict cookie, Secure over TLS). Every POST must come from this origin
(``Origin``, else ``Referer``) and carry the session's CSRF token. Failed log-ins are
throttled per client address and per user name; log-ins, log-outs and actions are audited.
Routes are relative to where :meth:`Dashboard.mount` puts them. See ``docs/dashboard.md``.
"""

from __future__ import annotations

import os
from functools import partial

from klein import Klein
from twisted.web import resource
from twisted.web.static import File

from ct.common.credentials import Credentials
from ct.common.oidc import OidcClient
from ct.dashboard.auth import LoginGuard, LoginThrottle, SessionStore
from ct.dashboard.backend import Backend
from ct.dashboard.frame import Frame
from ct.dashboard.guard import DashboardConfig, RequestGuard
from ct.dashboard.logs import ServerLog
from ct.dashboard.pages.audit import AuditPages
from ct.dashboard.pages.edges import EdgePages
from ct.dashboard.pages.live import LivePages
from ct.dashboard.pages.login import LoginPages
from ct.dashboard.pages.logs import OlderLogs, log_page
from ct.dashboard.pages.settings import SettingsPages
from ct.dashboard.pages.sso import SsoPages
from ct.dashboard.pages.tokens import TokenPages
from ct.dashboard.pages.usage import UsagePages
from ct.dashboard.responses import refuse

STATIC_DIR = os.path.join(os.path.dirname(__file__), "static")


class StaticFiles(File):
    """The package's CSS and JavaScript; no directory listings."""

    def directoryListing(self):
        return resource.NoResource("no listing")


class Dashboard:
    """The route table: each route names its page (navigation key, title, refresh) and
    the producer of its body, or its action, where to go back, and the performer."""

    app = Klein()

    def __init__(self, backend: Backend, credentials: Credentials, clock,
                 server_log: ServerLog, config: DashboardConfig = DashboardConfig(),
                 throttle: LoginThrottle | None = None, sessions: SessionStore | None = None,
                 oidc: OidcClient | None = None):
        """``throttle``: shared with another log-in (the locator's operator API);
        ``oidc``: the identity provider's client when ``config.sso`` is set."""
        self.backend = backend
        login = LoginGuard(credentials, clock, self._record_failure, "dashboard",
                           throttle=throttle)
        self.guard = RequestGuard(sessions if sessions is not None else SessionStore(clock),
                                  login, config)
        self.frame = Frame(self.guard, backend.mode)
        self.login = LoginPages(self.guard, backend)
        self.sso = SsoPages(self.guard, backend, oidc, self.login,
                            config.host_tokens) if oidc else None
        self.live = LivePages(backend, clock)
        self.edges = EdgePages(backend, clock)
        self.settings = SettingsPages(backend, clock)
        self.audit = AuditPages(backend, clock)
        self.usage = UsagePages(backend, clock)
        self.tokens = TokenPages(backend, clock)
        self.server_log = log_page(server_log)
        self.older_logs = OlderLogs(self.guard, server_log)
        self._static = StaticFiles(STATIC_DIR)

    def mount(self, root: resource.Resource) -> None:
        """Serve the dashboard at ``/dashboard`` and the older ``/logs`` under ``root``."""
        root.putChild(b"dashboard", self.app.resource())
        root.putChild(b"logs", self.older_logs.app.resource())

    def _record_failure(self, user: str, ip: str, reason: str, unreported: int):
        return self.backend.record("dashboard_login_failed", user, ip=ip, reason=reason,
                                   unreported=unreported)

    @app.route("/static/", branch=True)
    def static(self, request):
        return self._static

    @app.route("/login", methods=["GET"])
    def login_form(self, request):
        return self.login.form(request)

    @app.route("/login", methods=["POST"])
    def log_in(self, request):
        return self.login.login(request)

    @app.route("/sso/start", methods=["GET"])
    def sso_start(self, request):
        if self.sso is None:
            return refuse(request, 404, "single sign-on is not configured (CT_SSO_ISSUER)")
        return self.sso.start(request)

    @app.route("/sso/host", methods=["GET"])
    def sso_host(self, request):
        if self.sso is None:
            return refuse(request, 404, "single sign-on is not configured (CT_SSO_ISSUER)")
        return self.sso.host_start(request)

    @app.route("/sso/callback", methods=["GET"])
    def sso_callback(self, request):
        if self.sso is None:
            return refuse(request, 404, "single sign-on is not configured (CT_SSO_ISSUER)")
        return self.sso.callback(request)

    @app.route("/logout", methods=["POST"])
    def log_out(self, request):
        return self.frame.action(request, self.login.logout, "/dashboard/login", viewer=True)

    @app.route("/", methods=["GET"], strict_slashes=False)  # /dashboard and /dashboard/
    def overview_page(self, request):
        return self.frame.page(request, "overview", "Overview", self.live.overview,
                               refresh=15, viewer=True)

    @app.route("/usage", methods=["GET"])
    def usage_page(self, request):
        return self.frame.page(request, "usage", "Usage", self.usage.usage, viewer=True)

    @app.route("/sessions", methods=["GET"])
    def sessions_page(self, request):
        return self.frame.page(request, "sessions", "Active sessions", self.live.sessions,
                               refresh=15, viewer=True)

    @app.route("/sessions/<string:sid>/end", methods=["POST"])
    def end_session(self, request, sid):
        return self.frame.action(request, partial(self.live.end_session, sid),
                                 "/dashboard/sessions")

    @app.route("/sessions/<string:sid>/participants/<int:pid>/remove", methods=["POST"])
    def remove_participant(self, request, sid, pid):
        return self.frame.action(request, partial(self.live.remove_participant, sid, pid),
                                 "/dashboard/sessions")

    @app.route("/edges", methods=["GET"])
    def edges_page(self, request):
        return self.frame.page(request, "edges", "Edge servers", self.edges.edges,
                               refresh=10)

    @app.route("/edges/<string:edge_id>/log", methods=["GET"])
    def edge_log_page(self, request, edge_id):
        return self.frame.page(request, "edges", f"Log of edge {edge_id}",
                               partial(self.edges.edge_log, edge_id), refresh=10)

    @app.route("/edges/<string:edge_id>/suspend", methods=["POST"])
    def suspend(self, request, edge_id):
        return self.frame.action(request, partial(self.edges.suspend, edge_id, True),
                                 "/dashboard/edges")

    @app.route("/edges/<string:edge_id>/resume", methods=["POST"])
    def resume(self, request, edge_id):
        return self.frame.action(request, partial(self.edges.suspend, edge_id, False),
                                 "/dashboard/edges")

    @app.route("/regions", methods=["GET"])
    def regions_page(self, request):
        return self.frame.page(request, "regions", "Regions", self.settings.regions)

    @app.route("/regions", methods=["POST"])
    def save_regions(self, request):
        return self.frame.action(request, self.settings.save_regions, "/dashboard/regions")

    @app.route("/advanced", methods=["GET"])
    def advanced_page(self, request):
        return self.frame.page(request, "advanced", "Advanced", self.settings.advanced)

    @app.route("/advanced", methods=["POST"])
    def save_advanced(self, request):
        return self.frame.action(request, self.settings.save_advanced, "/dashboard/advanced")

    @app.route("/integrations", methods=["GET"])
    def integrations_page(self, request):
        return self.frame.page(request, "integrations", "Integrations",
                               self.settings.integrations)

    @app.route("/integrations", methods=["POST"])
    def save_integrations(self, request):
        return self.frame.action(request, self.settings.save_integrations,
                                 "/dashboard/integrations")

    @app.route("/audit", methods=["GET"])
    def audit_page(self, request):
        return self.frame.page(request, "audit", "Audit log", self.audit.audit, viewer=True)

    @app.route("/audit.csv", methods=["GET"])
    def audit_csv(self, request):
        return self.frame.download(request, partial(self.audit.export, "csv"), viewer=True)

    @app.route("/audit.json", methods=["GET"])
    def audit_json(self, request):
        return self.frame.download(request, partial(self.audit.export, "json"), viewer=True)

    @app.route("/logs", methods=["GET"])
    def logs_page(self, request):
        return self.frame.page(request, "logs", "Server log", self.server_log, refresh=10)

    @app.route("/tokens", methods=["GET"])
    def tokens_page(self, request):
        return self.frame.page(request, "tokens", "API tokens", self.tokens.tokens)

    @app.route("/tokens", methods=["POST"])
    def create_token(self, request):
        return self.frame.action(request, self.tokens.create, "/dashboard/tokens")

    @app.route("/tokens/<string:token_id>/revoke", methods=["POST"])
    def revoke_token(self, request, token_id):
        return self.frame.action(request, partial(self.tokens.revoke, token_id),
                                 "/dashboard/tokens")
