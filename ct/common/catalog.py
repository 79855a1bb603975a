"""The settings both servers read (listening, TLS, HTTP, dashboard login, metrics).

Component rows live next to their component (``ct/edge/settings.py``,
``ct/locator/settings.py``, ``ct/turn/settings.py``); ``ct/settings.py`` gathers them all.
:func:`server_config` turns these rows into the config objects of the shared modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlsplit

from twisted.python.usage import UsageError

from ct.common.listen import ListenConfig
from ct.common.hosttoken import DEFAULT_AUDIENCE, DEFAULT_LIFETIME, MIN_SECRET, HostTokenConfig
from ct.common.oidc import SsoConfig
from ct.common.proxy import NoProxy, OutboundProxy, ProxySettingError, parse_no_proxy, parse_proxy
from ct.common.settings import (
    Setting,
    SettingError,
    parse_bool,
    parse_choice,
    parse_endpoint,
    parse_existing_file,
    parse_float,
    parse_int,
    parse_list,
    parse_optional_str,
    parse_size,
    parse_str,
    parse_time_zone,
    parse_url,
)
from ct.common.web import DEFAULT_HSTS_MAX_AGE, DEFAULT_MAX_BODY, SiteConfig
from ct.metrics.setup import MetricsConfig
from ct.metrics.statsd import DEFAULT_INTERVAL, DEFAULT_PORT, DEFAULT_PREFIX

SERVERS = frozenset({"edge", "locator"})
MAX_LOCATOR_URLS = 16


def parse_locator_urls(raw: str) -> str | None:
    """One locator URL or a comma-separated list of them (kept as one comma-joined string)."""
    one = parse_url(("http", "https", "ws", "wss"), allow_none=True)
    parts = [p for p in raw.split(",") if p.strip()]
    if len(parts) <= 1:
        return one(raw)
    if len(parts) > MAX_LOCATOR_URLS:
        raise SettingError(f"at most {MAX_LOCATOR_URLS} locator URLs, got {len(parts)}")
    urls = [one(p) for p in parts]
    if None in urls:
        raise SettingError("`none` cannot be part of a list of locator URLs")
    return ",".join(urls)


def parse_issuer(raw: str) -> str | None:
    """An issuer URL kept exactly as given (it must equal the tokens' ``iss``): https, or
    http on a loopback address (tests, a provider on the same host)."""
    value = raw.strip()
    if not value or value.lower() == "none":
        return None
    parts = urlsplit(value)
    loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
    if not parts.hostname or parts.scheme != "https" and not (parts.scheme == "http"
                                                              and loopback):
        raise SettingError(f"expected an https:// issuer URL, got {raw!r}")
    return value


def parse_host_token_secret(raw: str) -> str | None:
    value = raw.strip()
    if value and len(value) < MIN_SECRET:
        raise SettingError(f"must be at least {MIN_SECRET} characters long")
    return value or None


def host_token_config(values: Mapping[str, Any]) -> HostTokenConfig | None:
    """The host-token rows as a :class:`HostTokenConfig` (None: no secret set)."""
    if not values["host_token_secret"]:
        return None
    return HostTokenConfig(secret=values["host_token_secret"],
                           audience=values["host_token_audience"],
                           lifetime=values["host_token_lifetime"])


def parse_domains(raw: str) -> tuple[str, ...]:
    return tuple(d.lower().lstrip("@") for d in parse_list(raw))

def _proxy_setting(parse):
    """A ``ct.common.proxy`` parser as a settings parser (its errors are setting errors)."""

    def parse_setting(raw: str):
        try:
            return parse(raw)
        except ProxySettingError as e:
            raise SettingError(str(e)) from None

    return parse_setting


COMMON_SETTINGS = [
    Setting("CT_SERVER_URL", "server-url", None, parse_url(("http", "https"), allow_none=True),
            "External URL of this server (used in join links); its host must match the "
            "TLS certificate. Unset: derived from the first listening port.", SERVERS),
    Setting("CT_LOCATOR", "locator", None, parse_locator_urls,
            "`none` for a single server; on an edge the locator's URL: one locator, a load "
            "balancer in front of several, or a comma-separated list of locators (tried in "
            "turn when the link drops).", SERVERS),
    Setting("CT_TRUST_ALL_CERTS", "trust-all-certs", False, parse_bool,
            "Accept self-signed certificates when calling other servers of the deployment.",
            SERVERS),
    Setting("CT_PROXY", "proxy", None, _proxy_setting(parse_proxy),
            "Outbound HTTP proxy, `http://[user:password@]host:port`, for every outbound "
            "HTTP(S) call: the edge's link to the locator, the locator's health probes of "
            "edges, the latency pings between locators, and the dashboard's calls to the "
            "identity provider (`CT_SSO_*`: discovery, JWKS, token endpoint) on a locator "
            "or a lone edge. Each is an HTTP CONNECT tunnel (websockets and TLS inside it "
            "end to end). Not StatsD (`CT_METRICS_STATSD_*`, not HTTP). Unset or `none`: "
            "direct. The password is masked in logs.", SERVERS),
    Setting("CT_NO_PROXY", "no-proxy", None, _proxy_setting(parse_no_proxy),
            "Destinations reached without `CT_PROXY`: comma-separated host names (a name "
            "also matches its subdomains; a leading dot is optional), IP addresses, CIDR "
            "networks, each optionally with `:port`, or `*` for all. Names are not "
            "resolved. Unset: `NO_PROXY`, then `no_proxy`.", SERVERS,
            also_env=("NO_PROXY", "no_proxy")),
    Setting("CT_HTTP_LISTEN", "http-listen", "tcp:1080", parse_endpoint,
            "Endpoint serving plain HTTP and websockets (`none` to disable).", SERVERS),
    Setting("CT_HTTPS_LISTEN", "https-listen", "ssl:1443", parse_endpoint,
            "Endpoint serving HTTPS and secure websockets; used only when a certificate "
            "and key are configured.", SERVERS),
    Setting("CT_TIME_ZONE", "time-zone", None, parse_time_zone,
            "Time zone of log timestamps (IANA name, e.g. Europe/Berlin). Unset: the "
            "host's.", SERVERS),
    Setting("CT_ACCESS_LOG", "access-log", False, parse_bool,
            "Log one line per HTTP request (health probes and API calls included).", SERVERS),
    Setting("CT_HTTP_MAX_BODY", "http-max-body", DEFAULT_MAX_BODY, parse_size(1024),
            "Largest HTTP request body accepted (e.g. 64k): a bigger Content-Length is "
            "refused with 413 before the body is read, a chunked body as soon as it passes "
            "the limit. The locator's regions routes accept max(this, 1MiB).", SERVERS),
    Setting("CT_HSTS_MAX_AGE", "hsts-max-age", DEFAULT_HSTS_MAX_AGE, parse_int(0),
            "Seconds of the Strict-Transport-Security header sent on HTTPS responses "
            "(browsers then use HTTPS only for this host); 0: no header.", SERVERS),
    Setting("CT_TLS_CERT", "tls-cert", None, parse_existing_file,
            "PEM certificate (chain) file for HTTPS.", SERVERS),
    Setting("CT_TLS_KEY", "tls-key", None, parse_existing_file,
            "PEM private key file for HTTPS.", SERVERS, secret=False),
    Setting("CT_DASHBOARD_USER", "dashboard-user", None, parse_optional_str,
            "Dashboard user name (falls back to CT_LOGS_USER, then `ctuser`).", SERVERS),
    Setting("CT_DASHBOARD_PASSWORD", "dashboard-password", None, parse_optional_str,
            "Dashboard password (falls back to CT_LOGS_PASSWORD; if none, one is generated "
            "once and kept in CT_DATA_DIR/dashboard-password, mode 0600).", SERVERS,
            secret=True),
    Setting("CT_DASHBOARD_PASSWORD_LOGIN", "dashboard-password-login", True, parse_bool,
            "Offer the log-in form of the local account (CT_DASHBOARD_USER) besides single "
            "sign-on; `false` turns it, and HTTP Basic on /logs and the operator API, off "
            "(always on while CT_SSO_ISSUER is unset). Keep it for break-glass access.",
            SERVERS),
    Setting("CT_SSO_ISSUER", "sso-issuer", None, parse_issuer,
            "OpenID Connect issuer URL of the identity provider (exactly as in its tokens' "
            "`iss`; its discovery document is ISSUER/.well-known/openid-configuration). "
            "Set: the dashboard offers single sign-on. See docs/sso.md.", SERVERS),
    Setting("CT_SSO_CLIENT_ID", "sso-client-id", None, parse_optional_str,
            "Client id of this server at the identity provider.", SERVERS),
    Setting("CT_SSO_CLIENT_SECRET", "sso-client-secret", None, parse_optional_str,
            "Client secret (client_secret_basic); unset for a public client (PKCE only).",
            SERVERS, secret=True),
    Setting("CT_SSO_SCOPES", "sso-scopes", ("openid", "email", "profile"), parse_list,
            "Scopes asked for, comma-separated (`openid` is added when missing); add the "
            "one that puts the groups claim in the ID token if the provider needs one.",
            SERVERS),
    Setting("CT_SSO_GROUPS_CLAIM", "sso-groups-claim", "groups", parse_str,
            "ID-token claim holding the user's groups or roles (a list of strings).", SERVERS),
    Setting("CT_SSO_ADMIN_GROUP", "sso-admin-group", "ct-admin", parse_str,
            "Value in the groups claim that makes a user an administrator.", SERVERS),
    Setting("CT_SSO_TEAM_PREFIX", "sso-team-prefix", "ct-team:", parse_str,
            "Prefix of the groups-claim values that make a user a team viewer: "
            "`ct-team:backend` sees the sessions and audit of team `backend`.", SERVERS),
    Setting("CT_SSO_ALLOWED_DOMAINS", "sso-allowed-domains", (), parse_domains,
            "E-mail domains allowed to sign in, comma-separated (the `email` claim; "
            "empty: any).", SERVERS),
    Setting("CT_SSO_CLOCK_SKEW", "sso-clock-skew", 120, parse_int(0, 3600),
            "Seconds of clock difference tolerated on ID-token times (exp, iat).", SERVERS),
    Setting("CT_HOST_TOKEN_SECRET", "host-token-secret", None, parse_host_token_secret,
            "Secret (at least 32 characters) signing the host tokens of CT_HOST_AUTH=sso: "
            "the server running single sign-on issues them, every edge checks them; the "
            "same value on all of them.", SERVERS, secret=True),
    Setting("CT_HOST_TOKEN_AUDIENCE", "host-token-audience", DEFAULT_AUDIENCE, parse_str,
            "Audience of host tokens: the name of this deployment. Edges refuse tokens "
            "issued for another audience.", SERVERS),
    Setting("CT_HOST_TOKEN_LIFETIME", "host-token-lifetime", DEFAULT_LIFETIME,
            parse_int(30, 86400),
            "Seconds a host token stays valid after sign-in (checked when hosting or "
            "subscribing to team presence; a running session goes on).", SERVERS),
    Setting("CT_LOGS_USER", "logs-user", None, parse_optional_str,
            "Older name for the dashboard user.", SERVERS),
    Setting("CT_LOGS_PASSWORD", "logs-password", None, parse_optional_str,
            "Older name for the dashboard password.", SERVERS, secret=True),
    Setting("CT_PROMETHEUS_ENABLED", "prometheus-enabled", False, parse_bool,
            "Expose Prometheus metrics at `/metrics`.", SERVERS),
    Setting("CT_METRICS_STATSD_HOST", "statsd-host", None, parse_optional_str,
            "StatsD host to push metrics to (unset: no StatsD).", SERVERS),
    Setting("CT_METRICS_STATSD_PORT", "statsd-port", DEFAULT_PORT, parse_int(1, 65535),
            "StatsD port.", SERVERS),
    Setting("CT_METRICS_STATSD_PROTOCOL", "statsd-protocol", "UDP", parse_choice("UDP", "TCP"),
            "StatsD transport, UDP or TCP.", SERVERS),
    Setting("CT_METRICS_STATSD_PREFIX", "statsd-prefix", DEFAULT_PREFIX, parse_str,
            "Prefix of StatsD metric names.", SERVERS),
    Setting("CT_METRICS_INTERVAL", "metrics-interval", DEFAULT_INTERVAL, parse_float(1.0),
            "Seconds between metric pushes and snapshots.", SERVERS),
]

def sso_config(values: Mapping[str, Any]) -> SsoConfig | None:
    """The ``CT_SSO_*`` rows as an :class:`SsoConfig` (None: single sign-on is off)."""
    if not values["sso_issuer"]:
        return None
    if not values["sso_client_id"]:
        raise UsageError("CT_SSO_CLIENT_ID is needed with CT_SSO_ISSUER")
    scopes = tuple(values["sso_scopes"])
    if "openid" not in scopes:
        scopes = ("openid",) + scopes
    return SsoConfig(issuer=values["sso_issuer"], client_id=values["sso_client_id"],
                     client_secret=values["sso_client_secret"], scopes=scopes,
                     groups_claim=values["sso_groups_claim"],
                     admin_group=values["sso_admin_group"],
                     team_prefix=values["sso_team_prefix"],
                     allowed_domains=tuple(values["sso_allowed_domains"]),
                     clock_skew=float(values["sso_clock_skew"]))


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The rows both servers read, as the objects the shared modules take."""

    listen: ListenConfig
    site: SiteConfig
    metrics: MetricsConfig
    dashboard_user: str | None
    dashboard_password: str | None
    websocket_url: str  # the URL the websocket factories serve: CT_SERVER_URL as ws(s)
    sso: SsoConfig | None = None
    password_login: bool = True
    host_tokens: HostTokenConfig | None = None
    outbound: OutboundProxy = OutboundProxy()  # CT_PROXY and CT_NO_PROXY


def server_config(values: Mapping[str, Any]) -> ServerConfig:
    """Read the rows above from a daemon's parsed options (called by its ``tap.py``)."""
    return ServerConfig(
        listen=ListenConfig(http=values["http_listen"], https=values["https_listen"],
                            tls_cert=values["tls_cert"], tls_key=values["tls_key"]),
        site=SiteConfig(access_log=values["access_log"], max_body=values["http_max_body"],
                        hsts_max_age=values["hsts_max_age"]),
        metrics=MetricsConfig(prometheus=values["prometheus_enabled"],
                              statsd_host=values["statsd_host"],
                              statsd_port=values["statsd_port"],
                              statsd_protocol=values["statsd_protocol"],
                              statsd_prefix=values["statsd_prefix"],
                              interval=values["metrics_interval"]),
        dashboard_user=values["dashboard_user"] or values["logs_user"],
        dashboard_password=values["dashboard_password"] or values["logs_password"],
        websocket_url=_websocket_url(values["server_url"]),
        sso=sso_config(values),
        # Without single sign-on the local account is the only way in: never off.
        password_login=values["dashboard_password_login"] or not values["sso_issuer"],
        host_tokens=host_token_config(values),
        outbound=OutboundProxy(values["proxy"], values["no_proxy"] or NoProxy()),
    )


def _websocket_url(server_url: str | None) -> str:
    """``http(s)://host`` as ``ws(s)://host``; unset: ``ws://localhost``."""
    url = server_url or "ws://localhost"
    return "ws" + url[4:] if url.startswith("http") else url
