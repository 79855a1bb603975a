"""Log-in form, log-in and log-out. The form carries a token also set as a cookie, so a
log-in cannot be posted from another site; log-ins and log-outs are audited."""

from __future__ import annotations

from urllib.parse import urlencode

from twisted.logger import Logger

from ct.common.tokens import same_secret
from ct.dashboard.guard import COOKIE, LOGIN_COOKIE, RequestGuard
from ct.dashboard.html import tags
from ct.dashboard.responses import arg, refuse, render, see_other

_log = Logger()


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a dashboard page (or ``/logs``), never elsewhere."""
    target = target or "/dashboard"
    if not (target.startswith("/dashboard") or target == "/logs") or "//" in target \
            or "\\" in target or any(c < " " or c == "\x7f" for c in target):
        return "/dashboard"
    return target


class LoginPages:
    def __init__(self, guard: RequestGuard, backend):
        self.guard = guard
        self.backend = backend

    def form(self, request, error: str | None = None, status: int = 200):
        token = self.guard.sessions.token(24)
        self.guard.set_cookie(request, LOGIN_COOKIE, token, max_age=3600)
        nxt = arg(request, "next") or "/dashboard"
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
        config = self.guard.config
        sso = ""
        if config.sso is not None:
            sso = tags.p(tags.a("Sign in with single sign-on", class_="button primary",
                                id="sso-login",
                                href="/dashboard/sso/start?" + urlencode({"next": nxt})))
        if not config.password_login:
            form = hint = ""
        body = tags.div(tags.h1("CodeTogether server"), tags.p("Dashboard log-in",
                                                                class_="sub"),
                        tags.div(error, class_="flash flash-error", role="alert",
                                 id="login-error") if error else "",
                        sso, form, hint, class_="login-card")
        page = tags.html(
            tags.head(tags.meta(charset="utf-8"),
                      tags.meta(name="viewport", content="width=device-width, initial-scale=1"),
                      tags.title("Log in · CodeTogether server"),
                      tags.link(rel="stylesheet", href="/dashboard/static/dashboard.css")),
            tags.body(body, class_="login"), lang="en")
        return render(request, page, status)

    def login(self, request):
        if not self.guard.config.password_login:
            return refuse(request, 403, "password log-in is turned off "
                                        "(CT_DASHBOARD_PASSWORD_LOGIN); sign in with SSO")
        if not self.guard.same_origin(request):
            return refuse(request, 403, "cross-site request refused")
        form_token = arg(request, "csrf") or ""
        cookie_token = (request.getCookie(LOGIN_COOKIE) or b"").decode("ascii", "replace")
        if not cookie_token or not same_secret(form_token, cookie_token):
            return self.form(request, "The log-in form expired; please try again.", 403)
        user = (arg(request, "user") or "")[:64]
        password = arg(request, "password") or ""
        ip = self.guard.client_ip(request)
        verdict = self.guard.check_login(ip, user, password)
        if verdict.locked:
            request.setHeader(b"retry-after", verdict.retry_after_header)
            return self.form(request, f"Too many failed log-ins: try again in "
                                      f"{verdict.retry_after:.0f} s.", 429)
        if not verdict.ok:
            message = "Wrong user or password."
            if verdict.retry_after > 0:
                message += f" Too many failures: try again in {verdict.retry_after:.0f} s."
            return self.form(request, message, 401)
        session = self.guard.sessions.create(user)
        _log.info("dashboard: {user} logged in from {ip}", user=user, ip=ip)
        self.backend.record("dashboard_login", user, ip=ip, method="password",
                            role=session.role).addErrback(
            lambda f: _log.failure("dashboard: could not store an audit entry", f))

        def answer(_):  # once every locator can find the log-in
            self.guard.set_cookie(request, COOKIE, session.sid)
            self.guard.set_cookie(request, LOGIN_COOKIE, "", max_age=0)
            return see_other(request, safe_next(arg(request, "next")))

        return self.guard.sessions.stored(session).addCallback(answer)

    def logout(self, request, session):
        """An action: ends the session (on every locator) and clears its cookie."""
        ended = self.guard.sessions.end_key(session.key)
        self.guard.set_cookie(request, COOKIE, "", max_age=0)
        return ended.addCallback(lambda _: self.backend.record(
            "dashboard_logout", session.user)).addCallback(lambda _: None)
