"""The dashboard (Klein): ``/dashboard/...`` pages and actions, and ``/logs``.

Every page and action needs a log-in (a server-side session named by an HttpOnly,
SameSite=Strict cookie, Secure over TLS). Every POST must come from this origin
(``Origin``, else ``Referer``) and carry the session's CSRF token. Failed log-ins are
throttled per client address and per user name; log-ins, log-outs and actions are audited.
See ``docs/dashboard.md``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time
from typing import Any, Callable
from urllib.parse import urlencode, urlsplit

from klein import Klein
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource
from twisted.web.static import File
from twisted.web.template import Tag, flattenString

from ct import __version__
from ct.common.credentials import Credentials, basic_auth
from ct.dashboard.auth import LoginGuard, LoginSession, LoginThrottle, SessionStore
from ct.dashboard.backend import ActionError, NotAvailable, audit_entry_dict
from ct.dashboard.charts import line_chart
from ct.dashboard.html import tags
from ct.dashboard.logs import ServerLog
from ct.locator.regions import client_ip
from ct.storage.store import AUDIT_KINDS

_log = Logger()

COOKIE = b"ct_dashboard"
LOGIN_COOKIE = b"ct_login"
STATIC_DIR = os.path.join(os.path.dirname(__file__), "static")
PAGE_SIZE = 50
EXPORT_MAX = 50_000
RANGES = {"hour": (3600.0, 60.0), "day": (86400.0, 1200.0), "week": (7 * 86400.0, 7200.0)}
CLIENT_NAMES = {"intellij": "IntelliJ", "vscode": "VS Code", "eclipse": "Eclipse"}
VERSION_RE = re.compile(r"^\d{1,6}(\.\d{1,6}){0,3}([-.][0-9A-Za-z]{1,20})?$")
HOST_RE = re.compile(r"^[A-Za-z0-9.:\-\[\]_]{1,253}$")
NAV = [("overview", "/dashboard", "Overview"), ("edges", "/dashboard/edges", "Edge servers"),
       ("sessions", "/dashboard/sessions", "Sessions"), ("regions", "/dashboard/regions",
                                                        "Regions"),
       ("advanced", "/dashboard/advanced", "Advanced"), ("audit", "/dashboard/audit",
                                                         "Audit log"),
       ("integrations", "/dashboard/integrations", "Integrations"),
       ("logs", "/dashboard/logs", "Logs")]
SECURITY_HEADERS = {
    b"content-security-policy": b"default-src 'none'; style-src 'self'; script-src 'self'; "
                                b"img-src 'self' data:; form-action 'self'; "
                                b"frame-ancestors 'none'; base-uri 'none'",
    b"x-frame-options": b"DENY",
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"same-origin",
    b"cache-control": b"no-store",
}


def utc(at: float | None, with_seconds: bool = True) -> str:
    if at is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S" if with_seconds else "%Y-%m-%d %H:%M",
                         time.gmtime(at)) + " UTC"


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} days ago"


def parse_utc(text: str | None) -> float | None:
    """``YYYY-MM-DDTHH:MM[:SS]`` (an HTML datetime-local value) read as UTC."""
    if not text:
        return None
    import calendar

    for fmt in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            return float(calendar.timegm(time.strptime(text.strip(), fmt)))
        except ValueError:
            continue
    return None


def _num(value: Any, digits: int = 0, unit: str = "") -> str:
    if value is None:
        return "—"
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "—"
    return (f"{value:.{digits}f}" if digits else f"{value:.0f}") + unit


class FromRoot(resource.Resource):
    """Mounts the Klein resource as a child while Klein still routes the whole path."""

    isLeaf = True

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def render(self, request):
        request.postpath = request.prepath + request.postpath
        request.prepath = []
        return self.inner.render(request)


class StaticFiles(File):
    """The package's CSS and JavaScript; no directory listings."""

    def directoryListing(self):
        return resource.NoResource("no listing")


class Dashboard:
    app = Klein()

    def __init__(self, backend, credentials: Credentials, clock, server_log: ServerLog,
                 trusted_proxies=(), allowed_origins=(), throttle: LoginThrottle | None = None,
                 sessions: SessionStore | None = None, public_https: bool = False):
        """``public_https``: clients reach us over HTTPS (``CT_SERVER_URL`` is https, e.g.
        behind a TLS-terminating proxy), so cookies are ``Secure`` even over plain HTTP."""
        self.backend = backend
        self.credentials = credentials
        self.clock = clock
        self.server_log = server_log
        self.trusted_proxies = tuple(trusted_proxies)
        self.allowed_netlocs = {urlsplit(o).netloc.lower() for o in allowed_origins if o}
        self.public_https = public_https
        self.guard = LoginGuard(credentials, clock, self._record_failure, "dashboard",
                                throttle=throttle)
        self.throttle = self.guard.throttle
        self.sessions = sessions or SessionStore(clock)
        self._static = StaticFiles(STATIC_DIR)

    def resource(self):
        """The resource to mount at ``/dashboard`` and ``/logs`` of the root."""
        return FromRoot(self.app.resource())

    # ------------------------------------------------------------------ plumbing

    def client_ip(self, request) -> str:
        host = getattr(request.getClientAddress(), "host", "") or ""
        forwarded = [h.decode("latin-1") for h in
                     request.requestHeaders.getRawHeaders(b"x-forwarded-for", [])]
        return client_ip(host, forwarded or None, self.trusted_proxies)

    def current(self, request) -> LoginSession | None:
        raw = request.getCookie(COOKIE)
        return self.sessions.get(raw.decode("ascii", "replace")) if raw else None

    def same_origin(self, request) -> bool:
        """POSTs must come from our own pages: Origin (else Referer) names this host."""
        origin = request.getHeader("origin")
        if origin is None:
            origin = request.getHeader("referer")
        if not origin or origin == "null":
            return False
        netloc = urlsplit(origin).netloc.lower()
        host = (request.getHeader("host") or "").lower()
        return bool(netloc) and (netloc == host or netloc in self.allowed_netlocs)

    @staticmethod
    def arg(request, name: str) -> str | None:
        values = request.args.get(name.encode())
        if not values:
            return None
        return values[0].decode("utf-8", errors="replace")

    def _headers(self, request, content_type: bytes = b"text/html; charset=utf-8"):
        request.setHeader(b"content-type", content_type)
        for k, v in SECURITY_HEADERS.items():
            request.setHeader(k, v)

    def _render(self, request, tag: Tag, status: int = 200) -> defer.Deferred:
        request.setResponseCode(status)
        self._headers(request)
        return flattenString(None, tag).addCallback(lambda body: b"<!DOCTYPE html>\n" + body)

    def _refuse(self, request, status: int, message: str) -> bytes:
        request.setResponseCode(status)
        self._headers(request, b"text/plain; charset=utf-8")
        return message.encode() + b"\n"

    def _to_login(self, request, path: str | None = None) -> bytes:
        target = path or request.path.decode("latin-1", "replace")
        request.setResponseCode(303)
        self._headers(request, b"text/plain; charset=utf-8")
        request.setHeader(b"location", ("/dashboard/login?" + urlencode({"next": target}))
                          .encode())
        return b"log in first\n"

    def _set_cookie(self, request, name: bytes, value: str, max_age: int | None = None):
        request.addCookie(name, value.encode("ascii"), path=b"/", httpOnly=True,
                          secure=request.isSecure() or self.public_https or None,
                          sameSite="strict",
                          max_age=None if max_age is None else str(max_age).encode())

    # ------------------------------------------------------------------ page frame

    def layout(self, request, session: LoginSession, active: str, title: str, *body,
               refresh: int | None = None) -> Tag:
        nav = tags.nav(class_="nav")
        for key, href, label in NAV:
            nav(tags.a(label, href=href, class_="active" if key == active else ""))
        flashes = tags.div(class_="flashes")
        for kind, text in session.flash:
            flashes(tags.div(text, class_=f"flash flash-{kind}", role="status"))
        session.flash = []
        logout = tags.form(tags.input(type="hidden", name="csrf", value=session.csrf),
                           tags.button("Log out", type="submit", class_="link"),
                           method="post", action="/dashboard/logout", class_="logout")
        attrs = {"data-refresh": str(refresh)} if refresh else {}
        return tags.html(
            tags.head(tags.meta(charset="utf-8"),
                      tags.meta(name="viewport", content="width=device-width, initial-scale=1"),
                      tags.title(f"{title} · CodeTogether server"),
                      tags.link(rel="stylesheet", href="/dashboard/static/dashboard.css"),
                      tags.script(src="/dashboard/static/dashboard.js", defer="defer")),
            tags.body(
                tags.header(
                    tags.div(tags.span("CodeTogether", class_="brand-name"),
                             tags.span("server", class_="brand-sub"), class_="brand"),
                    tags.span(self.backend.mode, class_="mode", id="mode"),
                    tags.div(tags.span(session.user, class_="who", id="who"), logout,
                             class_="user"),
                    class_="top"),
                tags.div(nav, tags.main(tags.h1(title), flashes, *body, class_="content"),
                         class_="frame"),
                tags.footer(f"ct {__version__}"), **attrs),
            lang="en")

    def page(self, request, active: str, title: str, produce: Callable,
             refresh: int | None = None):
        """A logged-in GET page: ``produce(request, session)`` yields the body."""
        session = self.current(request)
        if session is None:
            return self._to_login(request)

        @defer.inlineCallbacks
        def build():
            try:
                body = yield produce(request, session)
            except NotAvailable:
                body = [tags.div(
                    tags.p("This page needs the locator: this server runs in single-server "
                           "mode (CT_LOCATOR is not set), so there is only this one edge."),
                    class_="note", id="needs-locator")]
            if not isinstance(body, (list, tuple)):
                body = [body]
            result = yield self._render(request, self.layout(request, session, active, title,
                                                             *body, refresh=refresh))
            return result

        return build()

    def action(self, request, perform: Callable, back: str):
        """A logged-in, same-origin, CSRF-checked POST: ``perform(session)``; then back."""
        session = self.current(request)
        if session is None:
            return self._refuse(request, 403, "not logged in")
        if not self.same_origin(request):
            _log.warn("dashboard: cross-site POST to {path} refused (origin {origin})",
                      path=request.path, origin=request.getHeader("origin"))
            return self._refuse(request, 403, "cross-site request refused")
        if not session.csrf_ok(self.arg(request, "csrf")):
            return self._refuse(request, 403, "missing or wrong CSRF token; reload the page")

        @defer.inlineCallbacks
        def run():
            try:
                message = yield perform(session)
                if message:
                    session.flash.append(("ok", message))
            except (ActionError, NotAvailable, ValueError) as e:
                text = str(e) or "this needs the locator (multi-server mode)"
                session.flash.append(("error", text))
            request.setResponseCode(303)
            request.setHeader(b"location", back.encode())
            return b""

        return run()

    # ------------------------------------------------------------------ log-in

    @app.route("/dashboard/static/", branch=True)
    def static(self, request):
        return self._static

    @app.route("/dashboard/login", methods=["GET"])
    def login_form(self, request, error: str | None = None, status: int = 200):
        token = self.sessions._token(24)
        self._set_cookie(request, LOGIN_COOKIE, token, max_age=3600)
        nxt = self.arg(request, "next") or "/dashboard"
        form = tags.form(
            tags.input(type="hidden", name="csrf", value=token),
            tags.input(type="hidden", name="next", value=nxt),
            tags.label("User", tags.input(name="user", id="user", autocomplete="username",
                                          required="required", autofocus="autofocus")),
            tags.label("Password", tags.input(name="password", id="password",
                                              type="password", required="required",
                                              autocomplete="current-password")),
            tags.button("Log in", type="submit", class_="primary", id="login"),
            method="post", action="/dashboard/login")
        hint = tags.p("Use CT_DASHBOARD_USER and CT_DASHBOARD_PASSWORD. If none is set, the "
                      "password generated at the first start is in the file "
                      "dashboard-password of the server's data directory (CT_DATA_DIR; user "
                      "ctuser).", class_="hint")
        body = tags.div(tags.h1("CodeTogether server"), tags.p("Dashboard log-in",
                                                                class_="sub"),
                        tags.div(error, class_="flash flash-error", role="alert",
                                 id="login-error") if error else "",
                        form, hint, class_="login-card")
        page = tags.html(
            tags.head(tags.meta(charset="utf-8"),
                      tags.meta(name="viewport", content="width=device-width, initial-scale=1"),
                      tags.title("Log in · CodeTogether server"),
                      tags.link(rel="stylesheet", href="/dashboard/static/dashboard.css")),
            tags.body(body, class_="login"), lang="en")
        return self._render(request, page, status)

    @app.route("/dashboard/login", methods=["POST"])
    def login(self, request):
        if not self.same_origin(request):
            return self._refuse(request, 403, "cross-site request refused")
        form_token = self.arg(request, "csrf") or ""
        cookie_token = (request.getCookie(LOGIN_COOKIE) or b"").decode("ascii", "replace")
        from ct.common.tokens import same_secret

        if not cookie_token or not same_secret(form_token, cookie_token):
            return self.login_form(request, "The log-in form expired; please try again.", 403)
        user = (self.arg(request, "user") or "")[:64]
        password = self.arg(request, "password") or ""
        ip = self.client_ip(request)
        verdict = self.guard.check(ip, user, password)
        if verdict.locked:
            request.setHeader(b"retry-after", verdict.retry_after_header)
            return self.login_form(request, f"Too many failed log-ins: try again in "
                                            f"{verdict.retry_after:.0f} s.", 429)
        if not verdict.ok:
            message = "Wrong user or password."
            if verdict.retry_after > 0:
                message += f" Too many failures: try again in {verdict.retry_after:.0f} s."
            return self.login_form(request, message, 401)
        session = self.sessions.create(user)
        self._set_cookie(request, COOKIE, session.sid)
        self._set_cookie(request, LOGIN_COOKIE, "", max_age=0)
        _log.info("dashboard: {user} logged in from {ip}", user=user, ip=ip)
        d = self.backend.record("dashboard_login", user, ip=ip)
        d.addErrback(self._audit_failed)
        nxt = self.arg(request, "next") or "/dashboard"
        if not (nxt.startswith("/dashboard") or nxt == "/logs") or "//" in nxt or "\\" in nxt:
            nxt = "/dashboard"
        request.setResponseCode(303)
        request.setHeader(b"location", nxt.encode("utf-8"))
        return b""

    def _record_failure(self, user: str, ip: str, reason: str, unreported: int):
        return self.backend.record("dashboard_login_failed", user, ip=ip, reason=reason,
                                   unreported=unreported)

    def _audit_failed(self, failure):
        _log.failure("dashboard: could not store an audit entry", failure)

    @app.route("/dashboard/logout", methods=["POST"])
    def logout(self, request):
        def perform(s):
            self.sessions.end(s.sid)
            self._set_cookie(request, COOKIE, "", max_age=0)
            return self.backend.record("dashboard_logout", s.user).addCallback(lambda _: None)

        return self.action(request, perform, "/dashboard/login")

    # ------------------------------------------------------------------ overview

    @app.route("/dashboard", methods=["GET"])
    @app.route("/dashboard/", methods=["GET"])
    def overview(self, request):
        return self.page(request, "overview", "Overview", self._overview, refresh=15)

    @defer.inlineCallbacks
    def _overview(self, request, session):
        now = yield self.backend.overview()
        which = self.arg(request, "range") or "hour"
        if which not in RANGES:
            which = "hour"
        span, bucket = RANGES[which]
        until = self.clock.seconds()
        since = until - span
        history = yield self.backend.history(since, until, bucket)
        downloads = now["downloads"]
        dl_detail = tags.div(class_="detail")
        for kind in ("intellij", "vscode", "eclipse"):
            dl_detail(tags.span(CLIENT_NAMES[kind], " ",
                                tags.strong(str(downloads.get(kind, 0)), id=f"dl-{kind}"),
                                class_="pill"))
        cards = tags.div(
            self._card("Users online", _num(now["users_online"]), "users-online"),
            self._card("Active sessions", _num(now["sessions"]), "sessions"),
            self._card("Connections", _num(now["connections"]), "connections"),
            self._card("Average lag", _num(now["lag_ms"], 1, " ms"), "lag"),
            self._card("Sessions hosted", _num(now["sessions_hosted"]), "sessions-hosted"),
            self._card("Downloads", _num(sum(downloads.values())), "downloads", dl_detail),
            class_="cards")
        parts = [cards]
        if now.get("edges") is not None:
            e = now["edges"]
            parts.append(tags.p(
                tags.a(f"{e['online']} edges online", href="/dashboard/edges"),
                f", {e['suspended']} suspended, {e['link-lost']} with a lost link, "
                f"{e['unavailable']} unavailable.", class_="summary", id="edge-summary"))
        ranges = tags.div(tags.span("Charts for the last ", class_="muted"),
                          class_="ranges")
        for key in RANGES:
            ranges(tags.a(key, href=f"/dashboard?range={key}",
                          class_="active" if key == which else ""))
        series = [("Users online", lambda b: b.users_online),
                  ("Active sessions", lambda b: b.sessions),
                  ("Connections", lambda b: b.connections),
                  ("Lag (ms, highest edge mean)", lambda b: b.lag_ms),
                  ("Sessions hosted (total)", lambda b: b.sessions_hosted_total),
                  ("Downloads (total)", lambda b: b.downloads_total)]
        charts = tags.div(class_="charts")
        for label, get in series:
            points = [(b.start + bucket / 2, get(b)) for b in history]
            charts(line_chart(points, since, until, label))
        parts += [tags.h2("Over time"), ranges, charts,
                  tags.p("Charts come from snapshots every CT_METRICS_INTERVAL seconds; "
                         "per edge the peak in each interval, summed over edges. Times UTC.",
                         class_="hint")]
        return parts

    @staticmethod
    def _card(label: str, value: str, key: str, extra: Any = "") -> Tag:
        return tags.div(tags.div(label, class_="label"),
                        tags.div(value, class_="value", id=f"stat-{key}"), extra,
                        class_="card")

    # ------------------------------------------------------------------ edges

    @app.route("/dashboard/edges", methods=["GET"])
    def edges_page(self, request):
        return self.page(request, "edges", "Edge servers", self._edges, refresh=10)

    @defer.inlineCallbacks
    def _edges(self, request, session):
        try:
            edges = yield self.backend.edges()
        except NotAvailable:
            own = self.backend.this_edge()
            return [tags.div(tags.p("Single-server mode: this edge serves the dashboard "
                                    "itself and there is no locator, so edges cannot be "
                                    "suspended."), class_="note", id="needs-locator"),
                    self._edge_table([own], session, actions=False)]
        if not edges:
            return [tags.p("No edge has connected to this locator yet. Edges connect with "
                           "CT_LOCATOR and CT_EDGE_SECRET.", class_="note")]
        return [self._edge_table(edges, session, actions=True),
                tags.p("Suspended edges get no new sessions while another edge can take "
                       "them; their running sessions go on.", class_="hint")]

    def _edge_table(self, edges, session, actions: bool) -> Tag:
        head = ["Edge", "Status", "Region", "Version", "Load", "Lag", "Connections",
                "Sessions", "Last seen", ""]
        table = tags.table(tags.thead(tags.tr(*[tags.th(h) for h in head])),
                           class_="grid", id="edges")
        body = tags.tbody()
        for e in sorted(edges, key=lambda e: e["edge"]):
            state = e.get("state", "unavailable")
            cell = ""
            if actions:
                suspended = bool(e.get("suspended"))
                verb = "resume" if suspended else "suspend"
                cell = tags.form(
                    tags.input(type="hidden", name="csrf", value=session.csrf),
                    tags.button("Resume" if suspended else "Suspend", type="submit",
                                class_="small" if suspended else "small warn",
                                id=f"{verb}-{e['edge']}"),
                    method="post", action=f"/dashboard/edges/{e['edge']}/{verb}",
                    **({"data-confirm": f"Suspend edge {e['edge']}? New sessions will go "
                                        "to other edges."} if not suspended else {}))
            load = e.get("load")
            last = e.get("lastSeenAgo")
            if last is None and e.get("lastReport"):
                last = self.clock.seconds() - float(e["lastReport"])
            body(tags.tr(
                tags.td(tags.strong(e["edge"]), tags.div(e.get("url") or "", class_="muted")),
                tags.td(tags.span(state, class_=f"badge badge-{state}",
                                  id=f"state-{e['edge']}")),
                tags.td(e.get("region") or "—"), tags.td(e.get("version") or "—"),
                tags.td("—" if load is None else f"{float(load) * 100:.0f} %"),
                tags.td(_num(e.get("lagMs"), 1, " ms")),
                tags.td(_num(e.get("connections"))), tags.td(_num(e.get("sessions"))),
                tags.td(ago(last)), tags.td(cell, class_="actions"),
                id=f"edge-{e['edge']}"))
        return table(body)

    @app.route("/dashboard/edges/<string:edge_id>/suspend", methods=["POST"])
    def suspend(self, request, edge_id):
        return self.action(request, lambda s: self.backend.suspend(edge_id, True, s.user)
                           .addCallback(lambda _: f"Edge {edge_id} suspended."),
                           "/dashboard/edges")

    @app.route("/dashboard/edges/<string:edge_id>/resume", methods=["POST"])
    def resume(self, request, edge_id):
        return self.action(request, lambda s: self.backend.suspend(edge_id, False, s.user)
                           .addCallback(lambda _: f"Edge {edge_id} resumed."),
                           "/dashboard/edges")

    # ------------------------------------------------------------------ sessions

    @app.route("/dashboard/sessions", methods=["GET"])
    def sessions_page(self, request):
        return self.page(request, "sessions", "Active sessions", self._sessions, refresh=15)

    @defer.inlineCallbacks
    def _sessions(self, request, session):
        sessions = yield self.backend.sessions()
        intro = tags.p("Who is in which session. The server never sees what they edit "
                       "(sessions are end-to-end encrypted).", class_="hint")
        if not sessions:
            return [intro, tags.p("No active sessions.", class_="note", id="no-sessions")]
        now = self.clock.seconds()
        table = tags.table(tags.thead(tags.tr(*[tags.th(h) for h in (
            "Session", "Edge", "Since", "Participants", "")])), class_="grid", id="sessions")
        body = tags.tbody()
        for s in sessions:
            sid = s["session"]
            people = tags.ul(class_="people")
            if s.get("participants") is None:
                people(tags.li("unknown: the edge does not answer", class_="muted"))
            for p in s.get("participants") or []:
                remove = ""
                if p.get("role") != "host":
                    remove = self._post_button(
                        session, f"/dashboard/sessions/{sid}/participants/{p['id']}/remove",
                        "Remove", f"remove-{sid}-{p['id']}",
                        f"Remove {p.get('name')} from this session?")
                people(tags.li(
                    tags.span(class_="dot on" if p.get("connected") else "dot off",
                              title="connected" if p.get("connected") else "away"),
                    tags.strong(p.get("name") or "?"), " ",
                    tags.span(p.get("role") or "", class_="muted"), " ",
                    tags.span(p.get("client") or "", class_="muted"), remove))
            end = self._post_button(session, f"/dashboard/sessions/{sid}/end", "End session",
                                    f"end-{sid}", "End this session for everyone?", "warn")
            started = s.get("started")
            body(tags.tr(
                tags.td(tags.code(sid), tags.div(s.get("team") and f"team {s['team']}" or "",
                                                 class_="muted")),
                tags.td(s.get("edge") or "this edge"),
                tags.td(ago(now - started if started else None),
                        tags.div(utc(started), class_="muted")),
                tags.td(people), tags.td(end, class_="actions"), id=f"session-{sid}"))
        return [intro, table(body)]

    def _post_button(self, session, action: str, label: str, ident: str, confirm: str,
                     kind: str = "") -> Tag:
        return tags.form(tags.input(type="hidden", name="csrf", value=session.csrf),
                         tags.button(label, type="submit", class_=f"small {kind}", id=ident),
                         method="post", action=action, class_="inline",
                         **{"data-confirm": confirm})

    @app.route("/dashboard/sessions/<string:sid>/end", methods=["POST"])
    def end_session(self, request, sid):
        return self.action(request, lambda s: self.backend.end_session(sid, s.user)
                           .addCallback(lambda _: f"Session {sid} ended."),
                           "/dashboard/sessions")

    @app.route("/dashboard/sessions/<string:sid>/participants/<int:pid>/remove",
               methods=["POST"])
    def remove_participant(self, request, sid, pid):
        return self.action(request, lambda s: self.backend.remove_participant(sid, pid, s.user)
                           .addCallback(lambda _: f"Participant #{pid} removed from {sid}."),
                           "/dashboard/sessions")

    # ------------------------------------------------------------------ regions

    @app.route("/dashboard/regions", methods=["GET"])
    def regions_page(self, request):
        return self.page(request, "regions", "Regions", self._regions)

    @defer.inlineCallbacks
    def _regions(self, request, session):
        stored = yield self.backend.regions()
        reported = self.backend.reported_regions()
        names = sorted(set(stored) | set(reported))
        form = tags.form(tags.input(type="hidden", name="csrf", value=session.csrf),
                         method="post", action="/dashboard/regions", id="regions-form")
        table = tags.table(tags.thead(tags.tr(tags.th("Region"), tags.th("Edges"),
                                              tags.th("Client networks (CIDR, one a line)"))),
                           class_="grid")
        body = tags.tbody()
        for name in names:
            spec = stored.get(name, [])
            cidrs = spec.get("cidrs", []) if isinstance(spec, dict) else spec
            body(tags.tr(tags.td(tags.strong(name)),
                         tags.td(", ".join(sorted(reported.get(name, []))) or "none"),
                         tags.td(tags.textarea("\n".join(cidrs), name=f"region:{name}",
                                               rows="3", id=f"region-{name}"))))
        body(tags.tr(tags.td(tags.input(name="new_region", placeholder="new region",
                                        id="new-region")),
                     tags.td("—"), tags.td(tags.textarea("", name="new_cidrs", rows="2",
                                                         id="new-cidrs"))))
        form(table(body), tags.div(tags.button("Save regions", type="submit",
                                               class_="primary", id="save-regions"),
                                   class_="buttons"))
        return [tags.p("A client's address picks its region (longest matching CIDR); new "
                       "sessions go to an edge of that region when one can take them. Edges "
                       "name their region with CT_REGION. Empty a region's list to remove it.",
                       class_="hint"), form]

    @app.route("/dashboard/regions", methods=["POST"])
    def save_regions(self, request):
        @defer.inlineCallbacks
        def perform(s):
            stored = yield self.backend.regions()
            value: dict[str, Any] = {}
            for key, values in request.args.items():
                key = key.decode("utf-8", "replace")
                if not key.startswith("region:"):
                    continue
                name = key[len("region:"):]
                cidrs = _lines(values[0].decode("utf-8", "replace"))
                old = stored.get(name)
                if isinstance(old, dict):
                    if cidrs or old.get("countries") or old.get("continents"):
                        value[name] = {**old, "cidrs": cidrs}
                elif cidrs:
                    value[name] = cidrs
            new = (self.arg(request, "new_region") or "").strip()
            if new:
                value[new] = _lines(self.arg(request, "new_cidrs") or "")
            yield self.backend.set_regions(value, s.user)
            return "Regions saved."

        return self.action(request, perform, "/dashboard/regions")

    # ------------------------------------------------------------------ advanced

    @app.route("/dashboard/advanced", methods=["GET"])
    def advanced_page(self, request):
        return self.page(request, "advanced", "Advanced", self._advanced)

    @defer.inlineCallbacks
    def _advanced(self, request, session):
        value = yield self.backend.advanced()
        form = tags.form(
            tags.input(type="hidden", name="csrf", value=session.csrf),
            tags.label("Minimum client version to host a session",
                       tags.input(name="min_client_version", id="min-client-version",
                                  value=value.get("minClientVersion") or "",
                                  placeholder="any version, e.g. 2024.2.0")),
            tags.p("Hosts with an older IDE plugin are refused with 'client-too-old'; "
                   "joining is not affected. Empty: any version.", class_="hint"),
            tags.div(tags.button("Save", type="submit", class_="primary", id="save-advanced"),
                     class_="buttons"),
            method="post", action="/dashboard/advanced", class_="stack")
        where = ("Stored by the locator and applied by every edge at once."
                 if self.backend.mode == "multi-server" else
                 "Applies to this edge until it restarts (single-server mode keeps no "
                 "stored configuration).")
        return [tags.p(where, class_="hint"), form]

    @app.route("/dashboard/advanced", methods=["POST"])
    def save_advanced(self, request):
        def perform(s):
            version = (self.arg(request, "min_client_version") or "").strip()
            if version and not VERSION_RE.match(version):
                raise ActionError(f"not a version number: {version!r} (e.g. 2024.2.0)")
            d = self.backend.set_advanced({"minClientVersion": version or None}, s.user)
            return d.addCallback(lambda _: "Minimum client version: " + (version or "any") + ".")

        return self.action(request, perform, "/dashboard/advanced")

    # ------------------------------------------------------------------ integrations

    @app.route("/dashboard/integrations", methods=["GET"])
    def integrations_page(self, request):
        return self.page(request, "integrations", "Integrations", self._integrations)

    @defer.inlineCallbacks
    def _integrations(self, request, session):
        value = yield self.backend.integrations()
        multi = self.backend.mode == "multi-server"
        v = value or {}
        disabled = {} if multi else {"disabled": "disabled"}
        protocol = tags.select(name="statsd_protocol", id="statsd-protocol", **disabled)
        for p in ("UDP", "TCP"):
            protocol(tags.option(p, value=p, **({"selected": "selected"}
                                                if (v.get("statsdProtocol") or "UDP") == p
                                                else {})))
        fields = tags.fieldset(
            tags.legend("Prometheus"),
            tags.label(tags.input(type="checkbox", name="prometheus", value="on",
                                  id="prometheus",
                                  **({"checked": "checked"} if v.get("prometheus") else {}),
                                  **disabled),
                       " Serve /metrics on every edge", class_="check"),
            **disabled)
        statsd = tags.fieldset(
            tags.legend("StatsD"),
            tags.label("Host (empty: no StatsD)", tags.input(
                name="statsd_host", id="statsd-host", value=v.get("statsdHost") or "",
                **disabled)),
            tags.label("Port", tags.input(name="statsd_port", id="statsd-port", type="number",
                                          min="1", max="65535",
                                          value=str(v.get("statsdPort") or 8125), **disabled)),
            tags.label("Protocol", protocol), **disabled)
        if not multi:
            return [tags.div(tags.p("Single-server mode: these settings come from the "
                                    "environment (CT_PROMETHEUS_ENABLED, "
                                    "CT_METRICS_STATSD_HOST, _PORT, _PROTOCOL); change them "
                                    "there and restart."), class_="note"),
                    tags.form(fields, statsd, class_="stack")]
        state = ("Edges use their own environment settings (CT_PROMETHEUS_ENABLED, "
                 "CT_METRICS_STATSD_*) until settings are saved here."
                 if value is None else
                 "These settings are stored by the locator and pushed to every edge; they "
                 "replace the edges' own environment settings.")
        form = tags.form(
            tags.input(type="hidden", name="csrf", value=session.csrf), fields, statsd,
            tags.div(tags.button("Save and push to edges", type="submit", class_="primary",
                                 id="save-integrations"),
                     tags.button("Use the edges' environment", type="submit", name="reset",
                                 value="1", class_="secondary", id="reset-integrations"),
                     class_="buttons"),
            method="post", action="/dashboard/integrations", class_="stack")
        return [tags.p(state, class_="hint", id="integrations-state"), form]

    @app.route("/dashboard/integrations", methods=["POST"])
    def save_integrations(self, request):
        def perform(s):
            if self.arg(request, "reset"):
                return self.backend.set_integrations(None, s.user).addCallback(
                    lambda _: "Edges use their own environment settings again.")
            host = (self.arg(request, "statsd_host") or "").strip()
            if host and not HOST_RE.match(host):
                raise ActionError(f"not a host name or address: {host!r}")
            try:
                port = int(self.arg(request, "statsd_port") or 8125)
                if not 0 < port < 65536:
                    raise ValueError
            except ValueError:
                raise ActionError("the StatsD port must be 1-65535") from None
            protocol = self.arg(request, "statsd_protocol") or "UDP"
            if protocol not in ("UDP", "TCP"):
                raise ActionError("the StatsD protocol is UDP or TCP")
            value = {"prometheus": self.arg(request, "prometheus") == "on",
                     "statsdHost": host or None, "statsdPort": port,
                     "statsdProtocol": protocol}
            return self.backend.set_integrations(value, s.user).addCallback(
                lambda _: "Integrations saved and pushed to the edges.")

        return self.action(request, perform, "/dashboard/integrations")

    # ------------------------------------------------------------------ audit

    def _audit_query(self, request) -> dict[str, Any]:
        query: dict[str, Any] = {}
        since = parse_utc(self.arg(request, "since"))
        until = parse_utc(self.arg(request, "until"))
        if since is not None:
            query["since"] = since
        if until is not None:
            query["until"] = until
        for name, key in (("kind", "kind"), ("user", "user"), ("edge", "edge"),
                          ("session", "session")):
            value = (self.arg(request, name) or "").strip()
            if value:
                query[key] = value[:255]
        return query

    def _filters(self, request) -> dict[str, str]:
        return {k: self.arg(request, k) for k in ("since", "until", "kind", "user", "edge",
                                                   "session") if self.arg(request, k)}

    @app.route("/dashboard/audit", methods=["GET"])
    def audit_page(self, request):
        return self.page(request, "audit", "Audit log", self._audit)

    @defer.inlineCallbacks
    def _audit(self, request, session):
        try:
            page = max(1, int(self.arg(request, "page") or 1))
        except ValueError:
            page = 1
        query = self._audit_query(request)
        entries = yield self.backend.audit(**query, limit=PAGE_SIZE + 1,
                                           offset=(page - 1) * PAGE_SIZE)
        more = len(entries) > PAGE_SIZE
        entries = entries[:PAGE_SIZE]
        filters = self._filters(request)
        kind_select = tags.select(tags.option("any kind", value=""), name="kind", id="kind")
        for kind in sorted(AUDIT_KINDS | {"session_ended_by_admin", "dashboard_logout"}):
            kind_select(tags.option(kind, value=kind, **({"selected": "selected"}
                                                         if filters.get("kind") == kind
                                                         else {})))
        form = tags.form(
            tags.label("From (UTC)", tags.input(type="datetime-local", name="since",
                                                value=filters.get("since", ""))),
            tags.label("To (UTC)", tags.input(type="datetime-local", name="until",
                                              value=filters.get("until", ""))),
            tags.label("Kind", kind_select),
            tags.label("User", tags.input(name="user", value=filters.get("user", ""))),
            tags.label("Edge", tags.input(name="edge", value=filters.get("edge", ""))),
            tags.label("Session", tags.input(name="session",
                                             value=filters.get("session", ""))),
            tags.button("Filter", type="submit", class_="primary"),
            method="get", action="/dashboard/audit", class_="filters")
        qs = urlencode(filters)
        exports = tags.div(
            tags.span("Export what matches: ", class_="muted"),
            tags.a("CSV", href="/dashboard/audit.csv" + (f"?{qs}" if qs else ""),
                   id="export-csv", class_="button small", download="download"),
            tags.a("JSON", href="/dashboard/audit.json" + (f"?{qs}" if qs else ""),
                   id="export-json", class_="button small", download="download"),
            class_="exports")
        table = tags.table(tags.thead(tags.tr(*[tags.th(h) for h in (
            "Time (UTC)", "Kind", "User", "Edge", "Session", "Details")])), class_="grid",
            id="audit")
        body = tags.tbody()
        for e in entries:
            details = ", ".join(f"{k}={v}" for k, v in sorted(dict(e.details).items())
                                if v is not None and k != "value")
            if "value" in e.details:
                details = (details + ", " if details else "") + "value=" + json.dumps(
                    e.details["value"], sort_keys=True)[:300]
            body(tags.tr(tags.td(utc(e.at), class_="nowrap"),
                         tags.td(tags.span(e.kind, class_=f"kind kind-{e.kind}")),
                         tags.td(e.user or ""), tags.td(e.edge_id or ""),
                         tags.td(tags.code(e.session_id) if e.session_id else ""),
                         tags.td(details, class_="details")))
        if not entries:
            body(tags.tr(tags.td("No entries match.", colspan="6", class_="muted")))
        pager = tags.div(class_="pager")
        if page > 1:
            pager(tags.a("← Newer", href="/dashboard/audit?" + urlencode(
                {**filters, "page": page - 1}), id="newer"))
        pager(tags.span(f"Page {page}", class_="muted"))
        if more:
            pager(tags.a("Older →", href="/dashboard/audit?" + urlencode(
                {**filters, "page": page + 1}), id="older"))
        note = ("" if self.backend.mode == "multi-server" else
                tags.p("Single-server mode: the newest entries are kept in memory only "
                       "(lost on restart).", class_="hint"))
        return [form, exports, note, table(body), pager]

    @defer.inlineCallbacks
    def _export_entries(self, request):
        query = self._audit_query(request)
        out = []
        while len(out) < EXPORT_MAX:
            batch = yield self.backend.audit(**query, limit=1000, offset=len(out))
            out.extend(batch)
            if len(batch) < 1000:
                break
        return out

    def _export(self, request, fmt: str):
        if self.current(request) is None:
            return self._refuse(request, 403, "not logged in")

        @defer.inlineCallbacks
        def build():
            entries = yield self._export_entries(request)
            stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(self.clock.seconds()))
            if fmt == "json":
                self._headers(request, b"application/json")
                body = json.dumps({"entries": [audit_entry_dict(e) for e in entries]},
                                  indent=1, sort_keys=True).encode() + b"\n"
            else:
                self._headers(request, b"text/csv; charset=utf-8")
                buf = io.StringIO()
                writer = csv.writer(buf)
                writer.writerow(["time_utc", "time", "kind", "user", "edge", "session",
                                 "details"])
                for e in entries:
                    writer.writerow([_cell(utc(e.at)), f"{e.at:.3f}", _cell(e.kind),
                                     _cell(e.user), _cell(e.edge_id), _cell(e.session_id),
                                     _cell(json.dumps(dict(e.details), sort_keys=True))])
                body = buf.getvalue().encode("utf-8")
            request.setHeader(b"content-disposition",
                              f'attachment; filename="ct-audit-{stamp}.{fmt}"'.encode())
            return body

        return build()

    @app.route("/dashboard/audit.csv", methods=["GET"])
    def audit_csv(self, request):
        return self._export(request, "csv")

    @app.route("/dashboard/audit.json", methods=["GET"])
    def audit_json(self, request):
        return self._export(request, "json")

    # ------------------------------------------------------------------ logs

    @app.route("/dashboard/logs", methods=["GET"])
    def logs_page(self, request):
        def produce(request, session):
            source = self.server_log.source()
            where = ("kept in memory since start-up" if source == "memory"
                     else f"file {source}")
            return self.server_log.lines().addCallback(lambda lines: [
                tags.p(f"The last {len(lines)} lines of the server log ({where}). Times are "
                       "the server's local time.", class_="hint"),
                tags.pre("\n".join(lines), class_="log", id="log")])

        return self.page(request, "logs", "Server log", produce, refresh=10)

    @app.route("/logs", methods=["GET"])
    @app.route("/logs/", methods=["GET"])
    def logs_compat(self, request):
        """Older releases' ``/logs``: plain text with HTTP Basic, or the page when logged in."""
        if self.current(request) is not None:
            request.setResponseCode(303)
            request.setHeader(b"location", b"/dashboard/logs")
            return b""
        given = basic_auth(request)
        if given is None:
            return self._to_login(request, "/dashboard/logs")
        verdict = self.guard.check(self.client_ip(request), given[0][:64], given[1])
        if verdict.locked:
            request.setHeader(b"retry-after", verdict.retry_after_header)
            return self._refuse(request, 429, "too many failed log-ins; try again later")
        if not verdict.ok:
            request.setHeader(b"www-authenticate", b'Basic realm="ct logs", charset="UTF-8"')
            return self._refuse(request, 401, "wrong user or password")
        self._headers(request, b"text/plain; charset=utf-8")
        return self.server_log.lines().addCallback(
            lambda lines: ("\n".join(lines) + "\n").encode("utf-8"))


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]


def _cell(value: Any) -> str:
    """A CSV cell a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
