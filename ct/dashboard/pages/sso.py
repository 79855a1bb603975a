"""Sign-in through the identity provider (OpenID Connect, ``CT_SSO_*``).

``/dashboard/sso/start`` remembers a fresh ``state``, ``nonce`` and PKCE verifier on the
server (the browser holds only ``state``, in the ``ct_sso`` cookie) and sends the
browser to the provider; ``/dashboard/sso/callback`` checks the state against the
cookie, exchanges the code, verifies the ID token and starts a dashboard session with
the role the token's claims give. ``/dashboard/sso/host`` is the same sign-in for a host
(``ct-client login``, or a page of this server such as the browser client): it ends at
the client's loopback URL (token in the query) or at that page (token in the fragment)
with a host token, for any user of the allowed domains (no dashboard role needed). Refusals show the log-in page
with the reason (403) and leave one log line and an audit entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from twisted.internet import defer
from twisted.logger import Logger

from ct.common import hosttoken
from ct.common.hosttoken import HostIdentity, HostTokenConfig
from ct.common.oidc import (
    OidcClient,
    SignInRefused,
    check_domain,
    display_name,
    identity_from_claims,
)
from ct.common.tokens import same_secret
from ct.dashboard.guard import COOKIE, LOGIN_COOKIE, SSO_COOKIE, RequestGuard
from ct.dashboard.html import tags
from ct.dashboard.pages.login import LoginPages, safe_next
from ct.dashboard.responses import arg, refuse, render
from ct.protocol.wire import MAX_NAME

_log = Logger()

PENDING_LIFETIME = 600.0  # seconds a sign-in may take at the provider
MAX_PENDING = 1000
CALLBACK = "/dashboard/sso/callback"


@dataclass(frozen=True)
class Pending:
    """A sign-in under way. ``loopback``: set for a host sign-in (CT_HOST_AUTH=sso), the
    client's loopback URL that gets the host token and ``client_state`` back."""

    verifier: str
    nonce: str
    next: str
    created: float
    loopback: str | None = None
    client_state: str = ""


def page_redirect(raw: str | None) -> str | None:
    """``raw`` when it is a path on this server (``/app/``), where a browser client
    takes the host token from the fragment; else None."""
    if not raw or len(raw) > 512 or not raw.startswith("/") or raw.startswith("//") \
            or "\\" in raw or "#" in raw or any(c < " " or c == "\x7f" for c in raw):
        return None
    return raw


def loopback_redirect(raw: str | None) -> str | None:
    """``raw`` when it is a loopback ``http://127.0.0.1:PORT/...`` (or ``[::1]``,
    ``localhost``) URL a CLI listens on (RFC 8252), else None."""
    if not raw or len(raw) > 512:
        return None
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "::1", "localhost") \
            or not port or parts.username or parts.password or parts.fragment:
        return None
    return raw


class SsoPages:
    def __init__(self, guard: RequestGuard, backend, oidc: OidcClient, login: LoginPages,
                 host_tokens: HostTokenConfig | None = None):
        """``host_tokens``: set to issue host tokens (CT_HOST_AUTH=sso on the edges)."""
        self.host_tokens = host_tokens
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

    def host_start(self, request):
        """A host's sign-in: the host token goes with the client's ``state`` to its
        ``redirect_uri``: a loopback URL (``ct-client login``) or a page of this server."""
        if self.host_tokens is None:
            return refuse(request, 404, "host sign-in is not configured here "
                                        "(CT_HOST_TOKEN_SECRET)")
        raw = arg(request, "redirect_uri")
        loopback = loopback_redirect(raw) or page_redirect(raw)
        client_state = arg(request, "state") or ""
        if loopback is None or not 16 <= len(client_state) <= 128:
            return refuse(request, 400, "expected redirect_uri=http://127.0.0.1:PORT/... (or "
                                        "a path on this server) and a state of 16-128 "
                                        "characters")
        return self.start(request, loopback, client_state)

    @defer.inlineCallbacks
    def start(self, request, loopback: str | None = None, client_state: str = ""):
        try:
            url, state, nonce, verifier = yield self.oidc.start(self._redirect_uri(request))
        except SignInRefused as e:
            _log.warn("sso: cannot start a sign-in: {reason}", reason=str(e))
            result = yield self.login.form(request, f"Single sign-on is unavailable: {e}", 503)
            return result
        self._remember(state, Pending(verifier, nonce, safe_next(arg(request, "next")),
                                      self.clock.seconds(), loopback, client_state))
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
            claims, _ = yield self.oidc.finish_claims(code, self._redirect_uri(request),
                                                        pending.verifier, pending.nonce)
            if pending.loopback is not None:
                return self._host_token(request, claims, pending, ip)
            identity = identity_from_claims(claims, self.oidc.config)
        except SignInRefused as e:
            _log.warn("sso: sign-in from {ip} refused: {reason}", ip=ip, reason=str(e))
            self.backend.record("dashboard_login_failed", None, ip=ip, reason=str(e)[:300],
                                method="sso").addErrback(
                lambda f: _log.failure("dashboard: could not store an audit entry", f))
            result = yield self.login.form(request, f"Sign-in refused: {e}", 403)
            return result
        session = self.guard.sessions.create(identity.name, identity.role, identity.teams,
                                             "sso")
        yield self.guard.sessions.stored(session)  # every locator can find it
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

    def _host_token(self, request, claims, pending: Pending, ip: str) -> bytes:
        """A signed-in host: 303 to its loopback URL (query) or page (fragment) with a
        fresh host token."""
        email = check_domain(claims, self.oidc.config)
        identity = HostIdentity(str(claims["sub"]), display_name(claims)[:MAX_NAME], email)
        token = hosttoken.issue(identity, self.host_tokens, self.clock.seconds())
        _log.info("sso: host token for {name} ({sub}) from {ip}", name=identity.name,
                  sub=identity.subject, ip=ip)
        self.backend.record("host_signed_in", identity.name, ip=ip, subject=identity.subject,
                            audience=self.host_tokens.audience).addErrback(
            lambda f: _log.failure("dashboard: could not store an audit entry", f))
        answer = urlencode({"state": pending.client_state, "token": token})
        if pending.loopback.startswith("/"):  # a page here: never sent back to a server
            target = f"{pending.loopback}#{answer}"
        else:
            target = pending.loopback + ("&" if "?" in pending.loopback else "?") + answer
        request.setResponseCode(303)
        request.setHeader(b"location", target.encode("utf-8"))
        request.setHeader(b"cache-control", b"no-store")
        return b""
