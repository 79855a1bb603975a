"""Settings of the edge (``CT_REGION``, ``CT_MAX_*``, the outbox, the probe...).

Rows for the catalogue (``ct/settings.py``); ``ct/edge/tap.py`` reads them into an
:class:`EdgeConfig`, whose defaults (and those of its :class:`Limits`) are the rows' defaults.
"""

from __future__ import annotations

from ct.common.settings import (
    Setting,
    parse_bool,
    parse_choice,
    parse_directory,
    parse_float,
    parse_int,
    parse_optional_str,
    parse_size,
    parse_str,
    parse_url,
)
from ct.edge.relay import Limits
from ct.edge.server import EdgeConfig
from ct.edge.ws import DEFAULT_REJECTION_LOG_LIMIT

EDGE = frozenset({"edge"})

EDGE_SETTINGS = [
    Setting("CT_REGION", "region", EdgeConfig.region, parse_str,
            "Region this edge serves (multi-server).", EDGE),
    Setting("CT_MAXCONNECTIONS", "max-connections", Limits.max_people, parse_int(0),
            "Cap on simultaneous people in sessions on this edge, hosts and guests "
            "(0: no cap).", EDGE),
    Setting("CT_MAX_PARTICIPANTS", "max-participants", Limits.max_participants, parse_int(2, 10000),
            "Participants per session, host included.", EDGE),
    Setting("CT_MAX_SESSIONS_PER_HOST", "max-sessions-per-host", Limits.max_sessions_per_host,
            parse_int(1),
            "Sessions one client address may host at once.", EDGE),
    Setting("CT_MAX_FRAME_BYTES", "max-frame-bytes", 1024 * 1024, parse_size(1024),
            "Largest websocket message accepted (e.g. 1MiB).", EDGE),
    Setting("CT_RATE_LIMIT", "rate-limit", EdgeConfig.rate_limit, parse_float(1.0),
            "Messages per second one connection may send, sustained.", EDGE),
    Setting("CT_RATE_BURST", "rate-burst", EdgeConfig.rate_burst, parse_int(1),
            "Messages one connection may send in a burst above the sustained rate.", EDGE),
    Setting("CT_RESUME_WINDOW", "resume-window", Limits.resume_window, parse_float(0.0),
            "Seconds a participant whose connection dropped may resume before it is "
            "dropped (the host: before the session ends).", EDGE),
    Setting("CT_REPLAY_MAX_FRAMES", "replay-max-frames", Limits.replay_max_frames, parse_int(16),
            "Frames a session keeps for participants to resume from.", EDGE),
    Setting("CT_REPLAY_MAX_BYTES", "replay-max-bytes", Limits.replay_max_bytes, parse_size(1024),
            "Bytes a session keeps for participants to resume from.", EDGE),
    Setting("CT_TEAM_SECRET", "team-secret", None, parse_optional_str,
            "Secret from which team presence tokens are derived (`ctctl team-token`). "
            "Unset: team presence and team sessions are refused.", EDGE, secret=True),
    Setting("CT_HOST_AUTH", "host-auth", "open", parse_choice("open", "sso"),
            "`open`: anyone who reaches the edge may host; `sso`: hosting a session and "
            "team presence need a host token from single sign-on (CT_HOST_TOKEN_SECRET); "
            "the name others see is the signed-in identity's. Guests join with the link "
            "unless CT_GUEST_AUTH or the host asks for more.",
            EDGE),
    Setting("CT_GUEST_AUTH", "guest-auth", "open", parse_choice("open", "sso"),
            "`open`: guests join with the link (unless the host asks them to sign in: "
            "`guestSignIn`); `sso`: joining a session also needs a host token from single "
            "sign-on (CT_HOST_TOKEN_SECRET), and the name others see is the identity's.",
            EDGE),
    Setting("CT_GUEST_SIGN_IN_URL", "guest-sign-in-url", None,
            parse_url(("http", "https"), allow_none=True),
            "Address of the server running single sign-on, where the browser app sends guests "
            "who must sign in (its `/dashboard/sso/host`). Unset: this edge's own dashboard "
            "when it runs single sign-on (single server), else the first CT_LOCATOR URL.",
            EDGE),
    Setting("CT_NOCLIENTS", "no-clients", False, parse_bool,
            "Hide the `/clients` downloads.", EDGE),
    Setting("CT_CLIENTS_DIR", "clients-dir", None, parse_directory,
            "Directory served at `/clients/` (sub-folders eclipse/, intellij/, vscode/); the "
            "page there lists what it holds. Unset: the page says nothing is configured.", EDGE),
    Setting("CT_HANDSHAKE_TIMEOUT", "handshake-timeout", EdgeConfig.handshake_timeout,
            parse_float(0.1),
            "Seconds a new websocket has to send its first message.", EDGE),
    Setting("CT_BAD_INPUT_LOG_LIMIT", "bad-input-log-limit", DEFAULT_REJECTION_LOG_LIMIT,
            parse_int(0),
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
