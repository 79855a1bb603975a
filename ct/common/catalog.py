"""The settings both servers read (listening, TLS, HTTP, dashboard login, metrics).

Component rows live next to their component (``ct/edge/settings.py``,
``ct/locator/settings.py``, ``ct/turn/settings.py``); ``ct/settings.py`` gathers them all.
:func:`server_config` turns these rows into the config objects of the shared modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ct.common.listen import ListenConfig
from ct.common.settings import (
    Setting,
    SettingError,
    parse_bool,
    parse_choice,
    parse_endpoint,
    parse_existing_file,
    parse_float,
    parse_int,
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

@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The rows both servers read, as the objects the shared modules take."""

    listen: ListenConfig
    site: SiteConfig
    metrics: MetricsConfig
    dashboard_user: str | None
    dashboard_password: str | None
    websocket_url: str  # the URL the websocket factories serve: CT_SERVER_URL as ws(s)


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
    )


def _websocket_url(server_url: str | None) -> str:
    """``http(s)://host`` as ``ws(s)://host``; unset: ``ws://localhost``."""
    url = server_url or "ws://localhost"
    return "ws" + url[4:] if url.startswith("http") else url
