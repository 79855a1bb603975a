"""Who is asking, and whether to believe them: the session cookie, the origin of a POST,
its CSRF token, the client's address behind trusted proxies, and throttled log-ins."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

from twisted.logger import Logger

from ct.dashboard.auth import LoginGuard, LoginSession, SessionStore, Verdict
from ct.dashboard.responses import arg, refuse
from ct.common.addresses import parse_networks, request_client_ip
from ct.common.hosttoken import HostTokenConfig
from ct.common.oidc import SsoConfig

_log = Logger()

COOKIE = b"ct_dashboard"
LOGIN_COOKIE = b"ct_login"
SSO_COOKIE = b"ct_sso"


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    """``public_https``: clients reach us over HTTPS (``CT_SERVER_URL`` is https, e.g.
    behind a TLS-terminating proxy), so cookies are ``Secure`` even over plain HTTP.
    ``allowed_origins``: URLs whose POSTs are accepted besides the ``Host`` itself."""

    trusted_proxies: tuple[Any, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    public_https: bool = False
    server_url: str | None = None
    sso: SsoConfig | None = None  # OpenID Connect sign-in (CT_SSO_*), or None
    password_login: bool = True  # the local account's form (CT_DASHBOARD_PASSWORD_LOGIN)
    host_tokens: HostTokenConfig | None = None  # issue host tokens at /dashboard/sso/host

    @classmethod
    def for_server(cls, server_url: str | None, trusted_proxies=(),
                   sso: SsoConfig | None = None, password_login: bool = True,
                   host_tokens: HostTokenConfig | None = None) -> DashboardConfig:
        """The dashboard of a server reached at ``server_url`` (None: not configured)."""
        return cls(trusted_proxies=parse_networks(trusted_proxies or (), "trusted proxy"),
                   allowed_origins=(server_url,) if server_url else (),
                   public_https=urlsplit(server_url or "").scheme == "https",
                   server_url=server_url.rstrip("/") if server_url else None, sso=sso,
                   password_login=password_login or sso is None, host_tokens=host_tokens)

    def base_url(self, request) -> str:
        """This dashboard's origin as the browser sees it: ``CT_SERVER_URL``, else the
        request's own scheme and ``Host``."""
        if self.server_url:
            return self.server_url
        scheme = "https" if request.isSecure() else "http"
        return f"{scheme}://{(request.getHeader('host') or 'localhost')}"


class RequestGuard:
    """Checks a request against the log-in sessions and this server's origin."""

    def __init__(self, sessions: SessionStore, login: LoginGuard, config: DashboardConfig):
        self.sessions = sessions
        self.login = login
        self.config = config
        self.allowed_netlocs = {urlsplit(o).netloc.lower() for o in config.allowed_origins}

    def client_ip(self, request) -> str:
        return request_client_ip(request, self.config.trusted_proxies)

    def check_login(self, ip: str, user: str, password: str) -> Verdict:
        """A log-in attempt from the client at ``ip``, behind the throttle."""
        return self.login.check(ip, user, password)

    def current(self, request) -> LoginSession | None:
        """The logged-in session named by the cookie, or None."""
        raw = request.getCookie(COOKIE)
        return self.sessions.get(raw.decode("ascii", "replace")) if raw else None

    def resolved(self, request, then: Callable[[], Any]):
        """``then()``, once the cookie's session is known here: a log-in made on another
        locator a moment ago is looked for in the database first (once per cookie)."""
        raw = request.getCookie(COOKIE)
        pending = self.sessions.lookup(raw.decode("ascii", "replace")) if raw else None
        if pending is None:
            return then()
        return pending.addCallback(lambda _: then())

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

    def refuse_post(self, request, session: LoginSession | None) -> bytes | None:
        """A 403 body when this POST is not a logged-in, same-origin, CSRF-checked one."""
        if session is None:
            return refuse(request, 403, "not logged in")
        if not self.same_origin(request):
            _log.warn("dashboard: cross-site POST to {path} refused (origin {origin})",
                      path=request.path, origin=request.getHeader("origin"))
            return refuse(request, 403, "cross-site request refused")
        if not session.csrf_ok(arg(request, "csrf")):
            return refuse(request, 403, "missing or wrong CSRF token; reload the page")
        return None

    def set_cookie(self, request, name: bytes, value: str, max_age: int | None = None,
                   same_site: str = "strict"):
        """``same_site="lax"`` only for the sign-in state, which must come back with the
        identity provider's (cross-site) redirect."""
        request.addCookie(name, value.encode("ascii"), path=b"/", httpOnly=True,
                          secure=request.isSecure() or self.config.public_https or None,
                          sameSite=same_site,
                          max_age=None if max_age is None else str(max_age).encode())
