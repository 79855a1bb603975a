"""The settings every daemon reads, in one catalogue (see ``docs/settings.md``).

Component-specific rows live next to their component (``ct/turn/settings.py``,
``ct/locator/settings.py``); this module gathers them so the docs table and the
option parsers come from one place.
"""

from __future__ import annotations

from ct.common.settings import (
    Setting,
    parse_bool,
    parse_choice,
    parse_directory,
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

ALL = frozenset({"edge", "locator", "turn"})
SERVERS = frozenset({"edge", "locator"})
EDGE = frozenset({"edge"})

COMMON_SETTINGS = [
    Setting("CT_SERVER_URL", "server-url", None, parse_url(("http", "https"), allow_none=True),
            "External URL of this server (used in join links); its host must match the "
            "TLS certificate. Unset: derived from the first listening port.", SERVERS),
    Setting("CT_LOCATOR", "locator", None, parse_url(("http", "https", "ws", "wss"), allow_none=True),
            "`none` for a single server; on an edge the locator's URL.", SERVERS),
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
    Setting("CT_HTTP_MAX_BODY", "http-max-body", 64 * 1024, parse_size(1024),
            "Largest HTTP request body accepted (e.g. 64k): a bigger Content-Length is "
            "refused with 413 before the body is read, a chunked body as soon as it passes "
            "the limit. The locator's regions routes accept max(this, 1MiB).", SERVERS),
    Setting("CT_HSTS_MAX_AGE", "hsts-max-age", 365 * 86400, parse_int(0),
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
    Setting("CT_METRICS_STATSD_PORT", "statsd-port", 8125, parse_int(1, 65535),
            "StatsD port.", SERVERS),
    Setting("CT_METRICS_STATSD_PROTOCOL", "statsd-protocol", "UDP", parse_choice("UDP", "TCP"),
            "StatsD transport, UDP or TCP.", SERVERS),
    Setting("CT_METRICS_STATSD_PREFIX", "statsd-prefix", "codetogether.", parse_str,
            "Prefix of StatsD metric names.", SERVERS),
    Setting("CT_METRICS_INTERVAL", "metrics-interval", 10.0, parse_float(1.0),
            "Seconds between metric pushes and snapshots.", SERVERS),
]

EDGE_SETTINGS = [
    Setting("CT_REGION", "region", "default", parse_str,
            "Region this edge serves (multi-server).", EDGE),
    Setting("CT_MAXCONNECTIONS", "max-connections", 0, parse_int(0),
            "Cap on simultaneous people in sessions on this edge, hosts and guests "
            "(0: no cap).", EDGE),
    Setting("CT_MAX_PARTICIPANTS", "max-participants", 50, parse_int(2, 10000),
            "Participants per session, host included.", EDGE),
    Setting("CT_MAX_SESSIONS_PER_HOST", "max-sessions-per-host", 20, parse_int(1),
            "Sessions one client address may host at once.", EDGE),
    Setting("CT_MAX_FRAME_BYTES", "max-frame-bytes", 1024 * 1024, parse_size(1024),
            "Largest websocket message accepted (e.g. 1MiB).", EDGE),
    Setting("CT_RATE_LIMIT", "rate-limit", 500.0, parse_float(1.0),
            "Messages per second one connection may send, sustained.", EDGE),
    Setting("CT_RATE_BURST", "rate-burst", 5000, parse_int(1),
            "Messages one connection may send in a burst above the sustained rate.", EDGE),
    Setting("CT_RESUME_WINDOW", "resume-window", 60.0, parse_float(0.0),
            "Seconds a participant whose connection dropped may resume before it is "
            "dropped (the host: before the session ends).", EDGE),
    Setting("CT_REPLAY_MAX_FRAMES", "replay-max-frames", 4096, parse_int(16),
            "Frames a session keeps for participants to resume from.", EDGE),
    Setting("CT_REPLAY_MAX_BYTES", "replay-max-bytes", 8 * 1024 * 1024, parse_size(1024),
            "Bytes a session keeps for participants to resume from.", EDGE),
    Setting("CT_TEAM_SECRET", "team-secret", None, parse_optional_str,
            "Secret from which team presence tokens are derived (`ctctl team-token`). "
            "Unset: team presence and team sessions are refused.", EDGE, secret=True),
    Setting("CT_NOCLIENTS", "no-clients", False, parse_bool,
            "Hide the `/clients` downloads.", EDGE),
    Setting("CT_CLIENTS_DIR", "clients-dir", None, parse_directory,
            "Directory served at `/clients/` (sub-folders eclipse/, intellij/, vscode/).", EDGE),
    Setting("CT_HANDSHAKE_TIMEOUT", "handshake-timeout", 10.0, parse_float(0.1),
            "Seconds a new websocket has to send its first message.", EDGE),
    Setting("CT_BAD_INPUT_LOG_LIMIT", "bad-input-log-limit", 20, parse_int(0),
            "Warning lines per minute about rejected websocket clients (bad messages, "
            "refused handshakes, rate limits); the rest are counted in one 'suppressed N "
            "similar' line. 0: log every one.", EDGE),
    Setting("CT_EDGE_ID", "edge-id", None, parse_optional_str,
            "This edge's id towards the locator. Unset: generated once and kept in "
            "CT_DATA_DIR/edge/edge-id.", EDGE),
    Setting("CT_REPORT_INTERVAL", "report-interval", 2.0, parse_float(0.2),
            "Seconds between load reports to the locator.", EDGE),
    Setting("CT_OUTBOX_MAX", "outbox-max", 100_000, parse_int(100),
            "Audit entries and metric snapshots kept on disk while the locator is "
            "unreachable; past it the oldest snapshots, then the oldest entries, are dropped "
            "(counted and logged).", EDGE),
    Setting("CT_OUTBOX_MEMORY_MAX", "outbox-memory-max", 10_000, parse_int(100),
            "Audit entries and metric snapshots held in memory while the outbox file cannot "
            "be written (a full disk), retried with back-off up to every 30 s; past it the "
            "oldest snapshots, then the oldest entries, are dropped (counted, logged, shown "
            "in /health).", EDGE),
    Setting("CT_DRAIN_TIMEOUT", "drain-timeout", 0.0, parse_float(0.0),
            "On stop, seconds to wait for sessions to end by themselves (no new sessions "
            "meanwhile) before ending the rest.", EDGE),
    Setting("CT_PROBE_INTERVAL", "probe-interval", 15.0, parse_float(0.0),
            "Seconds between self-probes of the relay path reported by `/health` (0: off).",
            EDGE),
]


def settings_for(role: str) -> list[Setting]:
    """All rows a daemon of this role reads, in catalogue order."""
    return [s for s in all_settings() if role in s.roles]


def all_settings() -> list[Setting]:
    from ct.locator.settings import LOCATOR_SETTINGS
    from ct.turn.settings import TURN_SETTINGS

    return COMMON_SETTINGS + EDGE_SETTINGS + LOCATOR_SETTINGS + TURN_SETTINGS


def __getattr__(name):
    if name == "ALL_SETTINGS":
        return all_settings()
    raise AttributeError(name)
