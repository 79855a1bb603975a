"""The frame around every logged-in page (header, navigation, flash messages), and the two
shapes of request the pages are made of: a GET page and a POST action."""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.template import Tag

from ct import __version__
from ct.dashboard.backend import ActionError, NotAvailable
from ct.dashboard.guard import RequestGuard
from ct.dashboard.html import tags
from ct.dashboard.responses import refuse, render, see_other, to_login

_log = Logger()

NAV = [("overview", "/dashboard", "Overview"), ("usage", "/dashboard/usage", "Usage"),
       ("edges", "/dashboard/edges", "Edge servers"),
       ("sessions", "/dashboard/sessions", "Sessions"), ("regions", "/dashboard/regions",
                                                        "Regions"),
       ("advanced", "/dashboard/advanced", "Advanced"), ("audit", "/dashboard/audit",
                                                         "Audit log"),
       ("integrations", "/dashboard/integrations", "Integrations"),
       ("logs", "/dashboard/logs", "Logs"), ("tokens", "/dashboard/tokens", "API tokens")]
# What a team viewer sees in the navigation (each filtered to its teams).
VIEWER_PAGES = ("overview", "usage", "sessions", "audit")
NEEDS_LOCATOR = ("This page needs the locator: this server runs in single-server mode "
                 "(CT_LOCATOR is not set), so there is only this one edge.")


def csrf_field(session) -> Tag:
    return tags.input(type="hidden", name="csrf", value=session.csrf)


def post_button(session, action: str, label: str, ident: str, confirm: str,
                kind: str = "") -> Tag:
    """A one-button form that asks ``confirm`` before posting to ``action``."""
    return tags.form(csrf_field(session),
                     tags.button(label, type="submit", class_=f"small {kind}", id=ident),
                     method="post", action=action, class_="inline",
                     **{"data-confirm": confirm})


class Frame:
    """Wraps page bodies in the layout and actions in the POST checks."""

    def __init__(self, guard: RequestGuard, mode: str, nav=tuple(NAV)):
        self.guard = guard
        self.mode = mode
        self.nav = list(nav)

    def refuse_role(self, request, session, viewer: bool) -> bytes | None:
        """A 403 when ``session``'s role may not use this route (``viewer``: team viewers
        may); every refusal is one log line naming the user."""
        if session.is_admin or viewer:
            return None
        _log.warn("dashboard: {user} ({role}) refused {method} {path}: administrators only",
                  user=session.user, role=session.role,
                  method=request.method.decode("latin-1"),
                  path=request.path.decode("latin-1", "replace"))
        return refuse(request, 403, f"forbidden: {session.user} is a {session.role}; this "
                                    "needs the admin role")

    def layout(self, session, active: str, title: str, *body,
               refresh: int | None = None) -> Tag:
        nav = tags.nav(class_="nav")
        for key, href, label in self.nav:
            if not session.is_admin and key not in VIEWER_PAGES:
                continue
            nav(tags.a(label, href=href, class_="active" if key == active else ""))
        flashes = tags.div(class_="flashes")
        for kind, text in session.flash:
            flashes(tags.div(text, class_=f"flash flash-{kind}", role="status"))
        session.flash = []
        logout = tags.form(csrf_field(session),
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
                    tags.span(self.mode, class_="mode", id="mode"),
                    tags.div(tags.span(session.user, class_="who", id="who"),
                             tags.span(_role_text(session), class_="role", id="role"),
                             logout, class_="user"),
                    class_="top"),
                tags.div(nav, tags.main(tags.h1(title), flashes, *body, class_="content"),
                         class_="frame"),
                tags.footer(f"ct {__version__}"), **attrs),
            lang="en")

    def page(self, request, active: str, title: str, produce: Callable,
             refresh: int | None = None, viewer: bool = False):
        """A logged-in GET page: ``produce(request, session)`` yields the body;
        ``viewer``: team viewers may see it (the producer filters by their teams)."""
        return self.guard.resolved(request, lambda: self._page(request, active, title,
                                                               produce, refresh, viewer))

    def _page(self, request, active, title, produce, refresh, viewer):
        session = self.guard.current(request)
        if session is None:
            return to_login(request)
        refusal = self.refuse_role(request, session, viewer)
        if refusal is not None:
            return refusal

        @defer.inlineCallbacks
        def build():
            try:
                body: Any = yield produce(request, session)
            except NotAvailable:
                body = [tags.div(tags.p(NEEDS_LOCATOR), class_="note", id="needs-locator")]
            if not isinstance(body, (list, tuple)):
                body = [body]
            result = yield render(request, self.layout(session, active, title, *body,
                                                       refresh=refresh))
            return result

        return build()

    def action(self, request, perform: Callable, back: str, viewer: bool = False):
        """A logged-in, same-origin, CSRF-checked POST: ``perform(request, session)``
        (a message to flash, or a Deferred of one); then 303 to ``back``. Administrators
        only unless ``viewer``."""
        return self.guard.resolved(request, lambda: self._action(request, perform, back,
                                                                 viewer))

    def _action(self, request, perform, back, viewer):
        session = self.guard.current(request)
        refusal = self.guard.refuse_post(request, session)
        if refusal is None:
            refusal = self.refuse_role(request, session, viewer)
        if refusal is not None:
            return refusal

        @defer.inlineCallbacks
        def run():
            try:
                message = yield perform(request, session)
                if message:
                    session.flash.append(("ok", message))
            except (ActionError, NotAvailable, ValueError) as e:
                text = str(e) or "this needs the locator (multi-server mode)"
                session.flash.append(("error", text))
            return see_other(request, back)

        return run()

    def download(self, request, produce: Callable, viewer: bool = False):
        """A logged-in GET answered by ``produce(request, session)`` itself (not a page)."""
        return self.guard.resolved(request, lambda: self._download(request, produce, viewer))

    def _download(self, request, produce, viewer):
        session = self.guard.current(request)
        if session is None:
            return refuse(request, 403, "not logged in")
        refusal = self.refuse_role(request, session, viewer)
        if refusal is not None:
            return refusal
        return produce(request, session)


def _role_text(session) -> str:
    if session.is_admin:
        return "admin"
    return f"team viewer: {', '.join(session.teams)}"


class PageGroup:
    """Pages and actions over one backend: producers ``(request, session)`` of a page body
    for :meth:`Frame.page`, and performers ``(request, session)`` for :meth:`Frame.action`."""

    def __init__(self, backend, clock):
        self.backend = backend
        self.clock = clock
