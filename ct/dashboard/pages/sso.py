"""Sign-in through the identity provider (OpenID Connect, ``CT_SSO_*``).

``/dashboard/sso/start`` remembers a fresh ``state``, ``nonce`` and PKCE verifier on the
server (the browser holds only ``state``, in the ``ct_sso`` cookie) and sends the
browser to the provider; ``/dashboard/sso/callback`` checks the state against the
cookie, exchanges the code, verifies the ID token and starts a dashboard session with
the role the token's claims give. Refusals show the log-in page with the reason (403)
and leave one log line and an audit entry.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet import defer
from twisted.logger import Logger

from ct.common.oidc import OidcClient, SignInRefused
from ct.common.tokens import same_secret
from ct.dashboard.guard import COOKIE, LOGIN_COOKIE, SSO_COOKIE, RequestGuard
from ct.dashboard.html import tags
from ct.dashboard.pages.login import LoginPages, safe_next
from ct.dashboard.responses import arg, render

_log = Logger()

PENDING_LIFETIME = 600.0  # seconds a sign-in may take at the provider
MAX_PENDING = 1000
CALLBACK = "/dashboard/sso/callback"


@dataclass(frozen=True)
class Pending:
    verifier: str
    nonce: str
    next: str
    created: float


class SsoPages:
    def __init__(self, guard: RequestGuard, backend, oidc: OidcClient, login: LoginPages):
        self.guard = guard
        self.backend = backend
        self.oidc = oidc
        self.login = login
        self.clock = backend.clock
        self._pending: dict[str, Pending] = {}

    def _redirect_uri(self, request) -> str:
        return self.guard.config.base_url(request) + CALLBACK

    def _remember(self, state: str, pending: Pending) -> None:
        now = self.clock.seconds()
        for key in [k for k, p in self._pending.items()
                    if now - p.created > PENDING_LIFETIME]:
            del self._pending[key]
        while len(self._pending) >= MAX_PENDING:
            del self._pending[min(self._pending, key=lambda k: self._pending[k].created)]
        self._pending[state] = pending

    @defer.inlineCallbacks
    def start(self, request):
        try:
            url, state, nonce, verifier = yield self.oidc.start(self._redirect_uri(request))
        except SignInRefused as e:
            _log.warn("sso: cannot start a sign-in: {reason}", reason=str(e))
            result = yield self.login.form(request, f"Single sign-on is unavailable: {e}", 503)
            return result
        self._remember(state, Pending(verifier, nonce, safe_next(arg(request, "next")),
                                      self.clock.seconds()))
        self.guard.set_cookie(request, SSO_COOKIE, state, max_age=int(PENDING_LIFETIME),
                              same_site="lax")
        request.setResponseCode(303)
        request.setHeader(b"location", url.encode("utf-8"))
        return b""

    @defer.inlineCallbacks
    def callback(self, request):
        ip = self.guard.client_ip(request)
        state = (arg(request, "state") or "")[:256]
        cookie = (request.getCookie(SSO_COOKIE) or b"").decode("ascii", "replace")
        self.guard.set_cookie(request, SSO_COOKIE, "", max_age=0, same_site="lax")
        pending = self._pending.pop(state, None) if state else None
        try:
            if not cookie or not same_secret(state, cookie) or pending is None \
                    or self.clock.seconds() - pending.created > PENDING_LIFETIME:
                raise SignInRefused("this sign-in expired or was not started here; "
                                    "please sign in again")
            error = arg(request, "error")
            if error:
                raise SignInRefused(f"the identity provider refused: {error[:100]} "
                                    f"{(arg(request, 'error_description') or '')[:200]}")
            code = arg(request, "code")
            if not code or len(code) > 2048:
                raise SignInRefused("the identity provider sent no code")
            identity, raw = yield self.oidc.finish(code, self._redirect_uri(request),
                                                   pending.verifier, pending.nonce)
        except SignInRefused as e:
            _log.warn("sso: sign-in from {ip} refused: {reason}", ip=ip, reason=str(e))
            self.backend.record("dashboard_login_failed", None, ip=ip, reason=str(e)[:300],
                                method="sso").addErrback(
                lambda f: _log.failure("dashboard: could not store an audit entry", f))
            result = yield self.login.form(request, f"Sign-in refused: {e}", 403)
            return result
        session = self.guard.sessions.create(identity.name, identity.role, identity.teams,
                                             "sso", raw)
        self.guard.set_cookie(request, COOKIE, session.sid)
        self.guard.set_cookie(request, LOGIN_COOKIE, "", max_age=0)
        _log.info("dashboard: {user} ({role}) signed in through SSO from {ip}",
                  user=identity.name, role=identity.role, ip=ip)
        self.backend.record("dashboard_login", identity.name, ip=ip, method="sso",
                            role=identity.role, teams=list(identity.teams),
                            subject=identity.subject).addErrback(
            lambda f: _log.failure("dashboard: could not store an audit entry", f))
        # The session cookie is SameSite=Strict: a redirect continuing the provider's
        # cross-site navigation would not carry it, a navigation from this page does.
        target = pending.next
        page = tags.html(
            tags.head(tags.meta(charset="utf-8"),
                      tags.meta(**{"http-equiv": "refresh", "content": f"0;url={target}"}),
                      tags.title("Signed in · CodeTogether server"),
                      tags.link(rel="stylesheet", href="/dashboard/static/dashboard.css")),
            tags.body(tags.div(tags.p("Signed in as ", tags.strong(identity.name), "."),
                               tags.p(tags.a("Continue", href=target, id="continue")),
                               class_="login-card"), class_="login"), lang="en")
        result = yield render(request, page)
        return result
