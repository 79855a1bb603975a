"""The edge↔locator link (``/ws/edge``): every message and record, used by both sides (pure).

Each message is a JSON object with a ``type`` (the table in ``docs/protocol.md``). What
the locator receives is parsed here with every field checked and bounded: a flaw raises
:class:`ProtocolError` ``bad-message``, which the locator sends back as an ``error``.
Records (audit entries, metric snapshots) travel in outbox batches and are checked one
by one, so one bad record is counted as rejected and the rest of its batch is stored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ct.common import jsonsafe
from ct.protocol import errors
from ct.protocol.errors import ProtocolError
from ct.protocol.wire import MAX_NAME

LINK_VERSION = 1
MAX_LINK_MESSAGE = 16 * 1024 * 1024
MAX_REGISTER_MESSAGE = 256 * 1024  # until registered: a register with its sessions and teams
MAX_REGISTER_SESSIONS = 2000
MAX_REGISTER_TEAMS = 2000
MAX_ID = 64  # edge, session and record ids
MAX_URL = 512
MAX_COUNT = 2**53  # counters and gauges (exact in a JSON number)
MAX_AV_COUNT = 2**31 - 1  # a metric snapshot's call counts (32-bit columns)
BATCH = 500  # records an edge sends in one outbox batch
MAX_BATCH_RECORDS = 100 * BATCH  # of each kind in one batch the locator takes
MAX_DOWNLOAD_KINDS = 64
MAX_CPU = 1024.0  # process CPU in cores (one core: 1.0)
DEFAULT_LOG_LINES = 500  # an edge's log lines the locator asks for
MAX_LOG_LINES = 2000
MAX_LOG_BYTES = 256 * 1024  # of one log answer's lines (UTF-8)
MAX_LOG_LINE = 4096  # characters of one line; longer ones are cut
MIN_RETRY_AFTER = 1.0
MAX_RETRY_AFTER = 60.0
DEFAULT_RETRY_AFTER = 5.0

# edge -> locator
REGISTER = "register"
REPORT = "report"
RECORDS = "records"  # an outbox batch, answered by stored or retry
SESSION_UPDATE = "session-update"  # a session started or ended; not answered
DRAINING = "draining"  # the edge is stopping: no new sessions there; not answered
PING = "ping"
SESSIONS = "sessions"  # answer to list-sessions
DONE = "done"  # answer to remove-participant and end-session (and refusals)
LOG = "log"  # answer to log-lines
# locator -> edge
REGISTERED = "registered"
STORED = "stored"
RETRY = "retry"
SUSPEND = "suspend"
CONFIG = "config"
PONG = "pong"
ERROR = "error"
LIST_SESSIONS = "list-sessions"
REMOVE_PARTICIPANT = "remove-participant"
END_SESSION = "end-session"
LOG_LINES = "log-lines"  # the recent lines of the edge's log, for the locator's dashboard
ADMIN_REQUESTS = frozenset({LIST_SESSIONS, REMOVE_PARTICIPANT, END_SESSION, LOG_LINES})
ADMIN_ANSWERS = frozenset({SESSIONS, DONE, LOG})


def bad(what: str, message: str) -> ProtocolError:
    return ProtocolError(errors.BAD_MESSAGE, f"{what}: {message}")


def decode_link_message(payload: bytes) -> dict[str, Any]:
    """Parse a link message (larger than client control messages: batches of records)."""
    try:
        message = jsonsafe.loads(payload, max_bytes=MAX_LINK_MESSAGE)
    except jsonsafe.JSONError as e:
        raise ProtocolError(errors.BAD_MESSAGE, str(e)) from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError(errors.BAD_MESSAGE, "a link message is a JSON object with a type")
    return message


# ------------------------------------------------------------------ field checks

def _text(raw: Mapping[str, Any], name: str, what: str, limit: int,
          required: bool = True) -> str | None:
    value = raw.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise bad(what, f"'{name}' must be a string of 1 to {limit} characters")
    return value


def _number(raw: Mapping[str, Any], name: str, what: str, required: bool = False,
            maximum: float = MAX_COUNT) -> float | None:
    value = raw.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or not 0 <= value <= maximum:
        raise bad(what, f"'{name}' must be a number from 0 to {maximum:g}")
    return value


def _count(raw: Mapping[str, Any], name: str, what: str, maximum: int = MAX_COUNT) -> int:
    value = raw.get(name, 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise bad(what, f"'{name}' must be a whole number from 0 to {maximum}")
    return value


def _list(raw: Mapping[str, Any], name: str, what: str, limit: int) -> list:
    value = raw.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad(what, f"'{name}' must be a list")
    if len(value) > limit:
        raise bad(what, f"'{name}' holds more than {limit} entries")
    return value


def _object(raw: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(raw, dict):
        raise bad(what, "must be a JSON object")
    return raw


# ------------------------------------------------------------------ edge -> locator

@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A session an edge runs, as listed in its registration."""

    session: str
    team: str | None = None
    started: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"session": self.session, "team": self.team, "started": self.started}

    @classmethod
    def from_json(cls, raw: Any) -> SessionInfo:
        what = "register: each of 'sessions'"
        raw = _object(raw, what)
        return cls(_text(raw, "session", what, MAX_ID),
                   _text(raw, "team", what, MAX_NAME, required=False),
                   _number(raw, "started", what))


@dataclass(frozen=True, slots=True)
class Draining:
    """The edge is stopping (SIGTERM with ``CT_DRAIN_TIMEOUT``): since ``since`` it refuses
    new sessions (close 4017 ``shutting-down``) and ends those still running at ``until``
    (both the edge's clock, epoch seconds). Sent once when the drain starts, and inside
    ``register`` when a link is made while draining; the locator places nothing there."""

    since: float
    until: float

    def fields(self) -> dict[str, Any]:
        return {"since": self.since, "until": self.until}

    def to_json(self) -> dict[str, Any]:
        return {"type": DRAINING, **self.fields()}

    @classmethod
    def from_json(cls, raw: Any, what: str = DRAINING) -> Draining:
        raw = _object(raw, what)
        since = _number(raw, "since", what, required=True)
        until = _number(raw, "until", what, required=True)
        if until < since:
            raise bad(what, "'until' must not be before 'since'")
        return cls(since, until)


@dataclass(frozen=True, slots=True)
class Register:
    """The first message of a link: who the edge is and what it runs now."""

    edge: str
    url: str
    region: str
    version: str
    max_connections: int = 0
    sessions: tuple[SessionInfo, ...] = ()
    teams: tuple[str, ...] = ()
    draining: Draining | None = None  # the edge is stopping (a link made while draining)

    def to_json(self, secret: str) -> dict[str, Any]:
        out = {"type": REGISTER, "v": LINK_VERSION, "edge": self.edge, "secret": secret,
               "url": self.url, "region": self.region, "version": self.version,
               "maxConnections": self.max_connections,
               "sessions": [s.to_json() for s in self.sessions], "teams": list(self.teams)}
        if self.draining is not None:
            out["draining"] = self.draining.fields()
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Register:
        """Check a whole register message; the secret is checked by the locator."""
        what = "register"
        teams = _list(raw, "teams", what, MAX_REGISTER_TEAMS)
        if not all(isinstance(t, str) and 0 < len(t) <= MAX_NAME for t in teams):
            raise bad(what, f"each of 'teams' must be a string of 1 to {MAX_NAME} characters")
        draining = raw.get("draining")
        return cls(
            edge=_text(raw, "edge", what, MAX_ID),
            url=_text(raw, "url", what, MAX_URL),
            region=_text(raw, "region", what, MAX_NAME),
            version=_text(raw, "version", what, MAX_NAME),
            max_connections=_count(raw, "maxConnections", what, 2**31),
            sessions=tuple(SessionInfo.from_json(s) for s in
                           _list(raw, "sessions", what, MAX_REGISTER_SESSIONS)),
            teams=tuple(teams),
            draining=None if draining is None else Draining.from_json(
                draining, "register: 'draining'"))


@dataclass(frozen=True, slots=True)
class Report:
    """An edge's load figures, every ``CT_REPORT_INTERVAL`` seconds: ``cpu`` is the CPU its
    process used over the last interval in cores (1.0: one core busy), ``lag_ms`` how late
    its event loop runs timers (recent average); None: not measured yet."""

    lag_ms: float | None = None
    connections: int = 0
    sessions: int = 0
    users: int = 0
    cpu: float | None = None
    suspended: bool = False
    outbox: int = 0
    sessions_hosted: int = 0
    downloads: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"type": REPORT, "lagMs": self.lag_ms, "connections": self.connections,
                "sessions": self.sessions, "users": self.users, "cpu": self.cpu,
                "suspended": self.suspended, "outbox": self.outbox,
                "sessionsHosted": self.sessions_hosted, "downloads": dict(self.downloads)}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Report:
        what = "report"
        downloads = raw.get("downloads")
        downloads = {} if downloads is None else downloads
        if not isinstance(downloads, dict) or len(downloads) > MAX_DOWNLOAD_KINDS or not all(
                isinstance(k, str) and len(k) <= MAX_NAME and isinstance(v, int)
                and not isinstance(v, bool) and 0 <= v <= MAX_COUNT
                for k, v in downloads.items()):
            raise bad(what, "'downloads' must map client kinds to whole numbers")
        suspended = raw.get("suspended", False)
        if not isinstance(suspended, bool):
            raise bad(what, "'suspended' must be true or false")
        return cls(lag_ms=_number(raw, "lagMs", what), connections=_count(raw, "connections", what),
                   sessions=_count(raw, "sessions", what), users=_count(raw, "users", what),
                   cpu=_number(raw, "cpu", what, maximum=MAX_CPU), suspended=suspended,
                   outbox=_count(raw, "outbox", what),
                   sessions_hosted=_count(raw, "sessionsHosted", what), downloads=downloads)


@dataclass(frozen=True, slots=True)
class SessionUpdate:
    """A session started (``team``, ``started``) or ended (``ended``) since registration."""

    session: str
    team: str | None = None
    started: float | None = None
    ended: float | None = None

    def to_json(self) -> dict[str, Any]:
        if self.ended is not None:
            return {"type": SESSION_UPDATE, "session": self.session, "ended": self.ended}
        return {"type": SESSION_UPDATE, "session": self.session, "team": self.team,
                "started": self.started}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> SessionUpdate:
        what = SESSION_UPDATE
        return cls(_text(raw, "session", what, MAX_ID),
                   _text(raw, "team", what, MAX_NAME, required=False),
                   _number(raw, "started", what), _number(raw, "ended", what))


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit entry as the edge writes it to its outbox and sends it in a batch
    (fields in the order of the JSON object)."""

    id: str
    time: float
    edge: str | None
    kind: str
    session: str | None = None
    user: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "time": self.time, "edge": self.edge, "kind": self.kind,
                "session": self.session, "user": self.user, "details": dict(self.details)}

    @classmethod
    def from_json(cls, raw: Any) -> AuditRecord:
        what = "audit entry"
        raw = _object(raw, what)
        details = raw.get("details")
        details = {} if details is None else details
        if not isinstance(details, dict):
            raise bad(what, "'details' must be a JSON object")
        return cls(id=_text(raw, "id", what, MAX_ID),
                   time=_number(raw, "time", what, required=True),
                   edge=_text(raw, "edge", what, 255, required=False),
                   kind=_text(raw, "kind", what, MAX_NAME),
                   session=_text(raw, "session", what, 255, required=False),
                   user=_text(raw, "user", what, 255, required=False), details=details)


@dataclass(frozen=True, slots=True)
class MetricRecord:
    """One metric snapshot, every ``CT_METRICS_INTERVAL`` seconds, through the outbox."""

    id: str
    time: float
    lag_ms: float | None = None
    users_online: int = 0
    sessions: int = 0
    connections: int = 0
    sessions_hosted_total: int = 0
    downloads_total: int = 0
    # Calls (docs/av.md), from the clients' av-report counters; edges older than these
    # fields send none (0). Peer connections are counted by both of their ends.
    av_participants: int = 0  # people in a call
    av_calls: int = 0  # sessions with two or more people in the call
    av_relayed: int = 0  # peer connections through a TURN relay
    av_direct: int = 0  # peer connections without one

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "time": self.time, "users_online": self.users_online,
                "sessions": self.sessions, "connections": self.connections,
                "lag_ms": self.lag_ms, "sessions_hosted_total": self.sessions_hosted_total,
                "downloads_total": self.downloads_total,
                "av_participants": self.av_participants, "av_calls": self.av_calls,
                "av_relayed": self.av_relayed, "av_direct": self.av_direct}

    @classmethod
    def from_json(cls, raw: Any) -> MetricRecord:
        what = "metric snapshot"
        raw = _object(raw, what)
        return cls(id=_text(raw, "id", what, MAX_ID),
                   time=_number(raw, "time", what, required=True),
                   users_online=_count(raw, "users_online", what),
                   sessions=_count(raw, "sessions", what),
                   connections=_count(raw, "connections", what),
                   lag_ms=_number(raw, "lag_ms", what),
                   sessions_hosted_total=_count(raw, "sessions_hosted_total", what),
                   downloads_total=_count(raw, "downloads_total", what),
                   av_participants=_count(raw, "av_participants", what, MAX_AV_COUNT),
                   av_calls=_count(raw, "av_calls", what, MAX_AV_COUNT),
                   av_relayed=_count(raw, "av_relayed", what, MAX_AV_COUNT),
                   av_direct=_count(raw, "av_direct", what, MAX_AV_COUNT))


@dataclass(frozen=True, slots=True)
class Records:
    """An outbox batch; its records are checked one by one (:meth:`AuditRecord.from_json`)."""

    batch: int
    audit: tuple = ()
    metrics: tuple = ()

    def to_json(self) -> dict[str, Any]:
        return {"type": RECORDS, "batch": self.batch, "audit": list(self.audit),
                "metrics": list(self.metrics)}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Records:
        batch = raw.get("batch")
        if isinstance(batch, bool) or not isinstance(batch, int) or not 0 < batch <= MAX_COUNT:
            raise bad(RECORDS, "'batch' must be a whole number from 1 (live session changes "
                      f"are '{SESSION_UPDATE}' messages)")
        return cls(batch=batch, audit=tuple(_list(raw, "audit", RECORDS, MAX_BATCH_RECORDS)),
                   metrics=tuple(_list(raw, "metrics", RECORDS, MAX_BATCH_RECORDS)))


@dataclass(frozen=True, slots=True)
class LogAnswer:
    """The recent lines of an edge's log (answer to ``log-lines``), oldest first: at most
    ``MAX_LOG_LINES`` lines of ``MAX_LOG_LINE`` characters, ``MAX_LOG_BYTES`` in all;
    ``truncated`` when older lines or the ends of long ones were left out."""

    lines: tuple[str, ...]
    source: str  # "memory" or the edge's log file
    truncated: bool = False

    def to_json(self, request: Any) -> dict[str, Any]:
        return {"type": LOG, "request": request, "lines": list(self.lines),
                "source": self.source, "truncated": self.truncated}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> LogAnswer:
        lines = _list(raw, "lines", LOG, MAX_LOG_LINES)
        if not all(isinstance(line, str) and len(line) <= MAX_LOG_LINE for line in lines):
            raise bad(LOG, f"each of 'lines' must be a string of at most {MAX_LOG_LINE} "
                      "characters")
        if sum(len(line.encode("utf-8", "replace")) + 1 for line in lines) > MAX_LOG_BYTES:
            raise bad(LOG, f"'lines' hold more than {MAX_LOG_BYTES} bytes")
        truncated = raw.get("truncated", False)
        if not isinstance(truncated, bool):
            raise bad(LOG, "'truncated' must be true or false")
        return cls(tuple(lines), _text(raw, "source", LOG, MAX_URL), truncated)


def log_tail(lines: Sequence[str], limit: int = DEFAULT_LOG_LINES,
             max_bytes: int = MAX_LOG_BYTES) -> tuple[list[str], bool]:
    """The newest of ``lines`` within the bounds of a ``log`` answer: at most ``limit``
    lines (1 to ``MAX_LOG_LINES``), each cut at ``MAX_LOG_LINE`` characters, ``max_bytes``
    in all. Returns (lines oldest first, whether anything was left out)."""
    limit = max(1, min(limit, MAX_LOG_LINES))
    max_bytes = min(max_bytes, MAX_LOG_BYTES)
    kept: list[str] = []
    size = 0
    truncated = len(lines) > limit
    for line in reversed(lines[-limit:]):
        if len(line) > MAX_LOG_LINE:
            line = line[:MAX_LOG_LINE - 1] + "…"
            truncated = True
        cost = len(line.encode("utf-8", "replace")) + 1
        if size + cost > max_bytes:
            truncated = True
            break
        kept.append(line)
        size += cost
    kept.reverse()
    return kept, truncated


def requested_log_lines(message: Mapping[str, Any]) -> int:
    """How many lines a ``log-lines`` request asks for, within 1 to ``MAX_LOG_LINES``."""
    lines = message.get("lines")
    if isinstance(lines, bool) or not isinstance(lines, int):
        return DEFAULT_LOG_LINES
    return max(1, min(lines, MAX_LOG_LINES))


def answer_request(raw: Mapping[str, Any]) -> int:
    """The request number an administrator answer (``sessions``, ``done``) refers to."""
    return _count(raw, "request", raw["type"])


# ------------------------------------------------------------------ locator -> edge

def registered(suspended: bool) -> dict[str, Any]:
    return {"type": REGISTERED, "suspended": suspended}


def stored(batch: int, count: int, rejected: int) -> dict[str, Any]:
    return {"type": STORED, "batch": batch, "stored": count, "rejected": rejected}


def retry(batch: int, after: float) -> dict[str, Any]:
    return {"type": RETRY, "batch": batch, "after": after}


def retry_delay(message: Mapping[str, Any]) -> float:
    """The delay a ``retry`` asks for, kept within 1 to 60 s (5 s when it names none)."""
    after = message.get("after")
    if isinstance(after, bool) or not isinstance(after, (int, float)) or math.isnan(after):
        return DEFAULT_RETRY_AFTER
    return min(max(after, MIN_RETRY_AFTER), MAX_RETRY_AFTER)


def suspend(suspended: bool) -> dict[str, Any]:
    return {"type": SUSPEND, "suspended": suspended}


def config(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The administrator's ``advanced`` and ``integrations`` settings for every edge."""
    return {"type": CONFIG, **settings}


def error(e: ProtocolError) -> dict[str, Any]:
    return {"type": ERROR, "code": e.code.name, "message": e.message}


def list_sessions() -> dict[str, Any]:
    return {"type": LIST_SESSIONS}


def remove_participant(session: str, participant: int) -> dict[str, Any]:
    return {"type": REMOVE_PARTICIPANT, "session": session, "participant": participant}


def end_session(session: str) -> dict[str, Any]:
    return {"type": END_SESSION, "session": session}


def log_lines(lines: int = DEFAULT_LOG_LINES) -> dict[str, Any]:
    return {"type": LOG_LINES, "lines": lines}


# ------------------------------------------------------------------ edge answers

def sessions_answer(request: Any, sessions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": SESSIONS, "request": request, "sessions": sessions}


def done(request: Any, **result: Any) -> dict[str, Any]:
    return {"type": DONE, "request": request, "ok": True, **result}


def refused(request: Any, code: str, message: str) -> dict[str, Any]:
    return {"type": DONE, "request": request, "ok": False, "error": code, "message": message}
