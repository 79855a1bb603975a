"""The locator's store: edges, session directory, team presence, audit, metrics, config.

Every query is a plain ``fn(txn)`` function below; :class:`LocatorStore` runs them
through :meth:`Database.runInteraction` and returns Deferreds. Times in the API are
float seconds since the epoch (``clock.seconds()``); the database keeps whole
milliseconds. Writes that edges may repeat after a reconnect (registration, audit,
metrics, session start/end) are idempotent.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from twisted.internet import defer

from ct.storage.database import Database

# Known audit kinds; edges of newer versions may send others (stored as they come).
AUDIT_KINDS = frozenset({
    "session_started", "session_ended", "participant_joined", "participant_left",
    "participant_removed", "edge_registered", "edge_suspended", "edge_resumed",
    "edge_draining", "edge_unavailable", "dashboard_login", "dashboard_login_failed",
    "config_changed",
})

# Configuration keys the dashboard edits.
CONFIG_REGIONS = "regions"
CONFIG_ADVANCED = "advanced"
CONFIG_INTEGRATIONS = "integrations"

MAX_QUERY_LIMIT = 1000
_KIND = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


#: Audit kinds that name a person taking part in a session (host, guest), with a client.
USAGE_KINDS = ("session_started", "participant_joined")
DAY = 86400.0


def client_family(client: Any) -> str | None:
    """The client a usage breakdown counts: the name before ``/`` (versions dropped),
    lower-cased, at most 64 characters; None when there is none."""
    if not isinstance(client, str):
        return None
    family = client.split("/", 1)[0].strip().lower()[:64]
    return family or None


def to_ms(seconds: float) -> int:
    return int(round(seconds * 1000))


def from_ms(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000.0


# ------------------------------------------------------------------ records


@dataclass(frozen=True)
class EdgeRecord:
    edge_id: str
    public_url: str
    region: str
    version: str
    first_seen: float
    last_seen: float
    suspended: bool = False
    load: float | None = None
    lag_ms: float | None = None
    connections: int = 0
    sessions: int = 0
    users: int = 0
    stats_at: float | None = None


@dataclass(frozen=True)
class SessionRecord:
    session_id: str
    edge_id: str
    team: str | None
    started_at: float
    ended_at: float | None

    @property
    def active(self) -> bool:
        return self.ended_at is None


@dataclass(frozen=True)
class AuditEntry:
    """One audit entry; ``entry_id`` is the UUID string the edge gave it."""

    entry_id: str
    at: float
    kind: str
    edge_id: str | None = None
    session_id: str | None = None
    user: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    seq: int | None = None  # set when read back: the store's insertion order

    def __post_init__(self):
        if not isinstance(self.entry_id, str) or not 0 < len(self.entry_id) <= 64:
            raise ValueError(f"audit entry id must be a string of 1-64 characters, "
                             f"got {self.entry_id!r}")
        if not isinstance(self.kind, str) or not _KIND.match(self.kind):
            raise ValueError(f"audit kind must match {_KIND.pattern}, got {self.kind!r}")
        for name in ("edge_id", "session_id", "user"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or len(value) > 255):
                raise ValueError(f"audit {name} must be a string of at most 255 characters")
        if not isinstance(self.details, Mapping):
            raise ValueError("audit details must be a JSON object")


@dataclass(frozen=True)
class MetricSnapshot:
    """The numbers one edge reported at one time; ``snapshot_id`` makes it idempotent."""

    snapshot_id: str
    edge_id: str
    at: float
    users_online: int = 0
    sessions: int = 0
    connections: int = 0
    lag_ms: float | None = None
    sessions_hosted_total: int = 0
    downloads_total: int = 0
    av_participants: int = 0  # people in a call (docs/av.md)
    av_calls: int = 0  # sessions with two or more people in the call
    av_relayed: int = 0  # peer connections through a TURN relay (counted by both ends)
    av_direct: int = 0  # peer connections without one

    def __post_init__(self):
        if not isinstance(self.snapshot_id, str) or not 0 < len(self.snapshot_id) <= 64:
            raise ValueError(f"snapshot id must be a string of 1-64 characters, "
                             f"got {self.snapshot_id!r}")
        if not isinstance(self.edge_id, str) or not 0 < len(self.edge_id) <= 255:
            raise ValueError("snapshot edge_id must be a string of 1-255 characters")


@dataclass(frozen=True)
class MetricBucket:
    """Chart point: per edge the peak in the bucket (lag: the mean), summed over edges
    (lag: the highest edge mean). ``edges`` is how many edges reported."""

    start: float
    users_online: int
    sessions: int
    connections: int
    lag_ms: float | None
    sessions_hosted_total: int
    downloads_total: int
    edges: int


@dataclass(frozen=True)
class DayUsage:
    """One UTC day of a :class:`UsageReport`."""

    start: float
    sessions: int  # sessions started
    users: int  # distinct people who hosted or joined
    peak_users: int | None  # peak concurrent users online; None: no metrics that day
    peak_sessions: int | None  # peak concurrent sessions; None: no metrics that day
    peak_in_calls: int | None = None  # peak people in calls; None: no metrics that day
    peak_calls: int | None = None  # peak concurrent calls; None: no metrics that day


@dataclass(frozen=True)
class AvUsage:
    """Calls over a :class:`UsageReport`'s period, from the metric snapshots: the highest
    daily peaks, and the share of peer connections relayed through TURN (connections
    weighted by how many snapshots saw them; None when no snapshot saw any)."""

    peak_in_calls: int | None  # None: no metric snapshots in the period
    peak_calls: int | None
    relayed_share: float | None

    def to_json(self) -> dict[str, Any]:
        return {"peakInCalls": self.peak_in_calls, "peakCalls": self.peak_calls,
                "relayedShare": self.relayed_share}


@dataclass(frozen=True)
class UsageReport:
    """What operators of the product we replace look at, over whole UTC days.

    People are counted by the name they gave (the server has no other identity); a
    session's size is the distinct people who hosted or joined it; clients are counted
    by :func:`client_family` (``unknown`` when the client named none)."""

    since: float
    until: float
    unique_users: int
    sessions: int
    average_session_size: float | None
    days: tuple[DayUsage, ...]
    host_clients: Mapping[str, int]  # sessions hosted per client
    join_clients: Mapping[str, int]  # joins per client
    av: AvUsage = AvUsage(None, None, None)
    # None: the whole deployment; else only the sessions of these teams, without the
    # figures that cannot be split by team (peaks from the edges' snapshots, A/V).
    teams: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        if self.teams is not None:
            days = [{"start": d.start, "sessions": d.sessions, "users": d.users}
                    for d in self.days]
        else:
            days = [{"start": d.start, "sessions": d.sessions, "users": d.users,
                     "peakUsers": d.peak_users, "peakSessions": d.peak_sessions,
                     "peakInCalls": d.peak_in_calls, "peakCalls": d.peak_calls}
                    for d in self.days]
        out = {
            "since": self.since, "until": self.until, "uniqueUsers": self.unique_users,
            "sessions": self.sessions, "averageSessionSize": self.average_session_size,
            "days": days,
            "hostClients": dict(self.host_clients), "joinClients": dict(self.join_clients),
        }
        if self.teams is None:
            out["av"] = self.av.to_json()
        else:
            out["teams"] = list(self.teams)
        return out


def usage_window(now: float, days: int) -> tuple[float, float]:
    """``(since, until)``: the start of the UTC day ``days - 1`` days ago, and ``now``."""
    return (now // DAY) * DAY - (days - 1) * DAY, now


@dataclass(frozen=True)
class UsageCounts:
    """The aggregates a :class:`UsageReport` is made of (from SQL or from memory);
    per-day values keyed by day number since ``since``."""

    unique_users: int
    sessions_per_day: Mapping[int, int]
    users_per_day: Mapping[int, int]
    peak_users_per_day: Mapping[int, int]
    peak_sessions_per_day: Mapping[int, int]
    average_session_size: float | None
    host_clients: Mapping[str | None, int]
    join_clients: Mapping[str | None, int]
    peak_in_calls_per_day: Mapping[int, int] = field(default_factory=dict)
    peak_calls_per_day: Mapping[int, int] = field(default_factory=dict)
    av_relayed: int = 0  # peer connections relayed, summed over the snapshots
    av_direct: int = 0

    def report(self, since: float, until: float,
               teams: Sequence[str] | None = None) -> UsageReport:
        """``teams``: these counts cover only those teams' sessions (no peaks, no A/V)."""
        n_days = max(1, int((until - since + DAY - 1) // DAY))
        days = tuple(DayUsage(start=since + i * DAY,
                              sessions=int(self.sessions_per_day.get(i, 0)),
                              users=int(self.users_per_day.get(i, 0)),
                              peak_users=self.peak_users_per_day.get(i),
                              peak_sessions=self.peak_sessions_per_day.get(i),
                              peak_in_calls=self.peak_in_calls_per_day.get(i),
                              peak_calls=self.peak_calls_per_day.get(i))
                     for i in range(n_days))
        in_calls = [d.peak_in_calls for d in days if d.peak_in_calls is not None]
        calls = [d.peak_calls for d in days if d.peak_calls is not None]
        connections = int(self.av_relayed) + int(self.av_direct)
        av = AvUsage(peak_in_calls=max(in_calls) if in_calls else None,
                     peak_calls=max(calls) if calls else None,
                     relayed_share=(round(int(self.av_relayed) / connections, 4)
                                    if connections else None))
        return UsageReport(
            since=since, until=until, unique_users=int(self.unique_users),
            sessions=sum(d.sessions for d in days),
            average_session_size=(None if self.average_session_size is None
                                  else round(float(self.average_session_size), 2)),
            days=days, host_clients=_named(self.host_clients),
            join_clients=_named(self.join_clients),
            av=av if teams is None else AvUsage(None, None, None),
            teams=None if teams is None else tuple(teams))


def _named(counts: Mapping[str | None, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, n in counts.items():
        key = name or "unknown"
        out[key] = out.get(key, 0) + int(n)
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


# ------------------------------------------------------------------ txn functions

_EDGE_COLUMNS = ("edge_id, public_url, region, version, first_seen, last_seen, suspended, "
                 "load_factor, lag_ms, connections, sessions, users, stats_at")


def _edge(row) -> EdgeRecord:
    return EdgeRecord(
        edge_id=row[0], public_url=row[1], region=row[2], version=row[3],
        first_seen=from_ms(row[4]), last_seen=from_ms(row[5]), suspended=bool(row[6]),
        load=row[7], lag_ms=row[8], connections=int(row[9]), sessions=int(row[10]),
        users=int(row[11]), stats_at=from_ms(row[12]),
    )


def get_edge_txn(txn, edge_id: str) -> EdgeRecord | None:
    txn.execute(f"SELECT {_EDGE_COLUMNS} FROM edges WHERE edge_id = ?", (edge_id,))
    row = txn.fetchone()
    return _edge(row) if row else None


def register_edge_txn(txn, edge_id, public_url, region, version, now_ms) -> EdgeRecord:
    sql = txn.engine.upsert(
        "edges", ["edge_id", "public_url", "region", "version", "first_seen", "last_seen"],
        ["edge_id"], ["public_url", "region", "version", "last_seen"])
    txn.execute(sql, (edge_id, public_url, region, version, now_ms, now_ms))
    return get_edge_txn(txn, edge_id)


def update_edge_stats_txn(txn, edge_id, load, lag_ms, connections, sessions, users,
                          now_ms) -> bool:
    txn.execute(
        "UPDATE edges SET load_factor = ?, lag_ms = ?, connections = ?, sessions = ?, "
        "users = ?, stats_at = ?, last_seen = ? WHERE edge_id = ?",
        (load, lag_ms, connections, sessions, users, now_ms, now_ms, edge_id))
    return txn.rowcount > 0


def set_suspended_txn(txn, edge_id, suspended: bool) -> bool:
    txn.execute("SELECT suspended FROM edges WHERE edge_id = ?", (edge_id,))
    if txn.fetchone() is None:
        return False
    txn.execute("UPDATE edges SET suspended = ? WHERE edge_id = ?",
                (1 if suspended else 0, edge_id))
    return True


def list_edges_txn(txn) -> list[EdgeRecord]:
    txn.execute(f"SELECT {_EDGE_COLUMNS} FROM edges ORDER BY edge_id")
    return [_edge(r) for r in txn.fetchall()]


def remove_edge_txn(txn, edge_id) -> bool:
    txn.execute("DELETE FROM edges WHERE edge_id = ?", (edge_id,))
    return txn.rowcount > 0


def _session(row) -> SessionRecord:
    return SessionRecord(session_id=row[0], edge_id=row[1], team=row[2],
                         started_at=from_ms(row[3]), ended_at=from_ms(row[4]))


_SESSION_COLUMNS = "session_id, edge_id, team, started_at, ended_at"


def session_started_txn(txn, session_id, edge_id, team, started_ms) -> None:
    txn.execute(txn.engine.insert_ignore(
        "session_directory", ["session_id", "edge_id", "team", "started_at"], 1, "session_id"),
        (session_id, edge_id, team, started_ms))
    # An end replayed before its start left a placeholder row: complete it.
    txn.execute("UPDATE session_directory SET team = ?, started_at = ? "
                "WHERE session_id = ? AND started_at > ?",
                (team, started_ms, session_id, started_ms))


def session_ended_txn(txn, session_id, edge_id, ended_ms) -> None:
    txn.execute(txn.engine.insert_ignore(
        "session_directory", ["session_id", "edge_id", "started_at", "ended_at"], 1,
        "session_id"), (session_id, edge_id, ended_ms, ended_ms))
    txn.execute("UPDATE session_directory SET ended_at = ? "
                "WHERE session_id = ? AND ended_at IS NULL", (ended_ms, session_id))


def get_session_txn(txn, session_id) -> SessionRecord | None:
    txn.execute(f"SELECT {_SESSION_COLUMNS} FROM session_directory WHERE session_id = ?",
                (session_id,))
    row = txn.fetchone()
    return _session(row) if row else None


def list_sessions_txn(txn, active_only, team, edge_id, limit) -> list[SessionRecord]:
    where, args = [], []
    if active_only:
        where.append("ended_at IS NULL")
    if team is not None:
        where.append("team = ?")
        args.append(team)
    if edge_id is not None:
        where.append("edge_id = ?")
        args.append(edge_id)
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    txn.execute(f"SELECT {_SESSION_COLUMNS} FROM session_directory{clause} "
                f"ORDER BY started_at DESC, session_id LIMIT {int(limit)}", args)
    return [_session(r) for r in txn.fetchall()]


def end_sessions_on_edge_txn(txn, edge_id, ended_ms) -> int:
    txn.execute("UPDATE session_directory SET ended_at = ? "
                "WHERE edge_id = ? AND ended_at IS NULL", (ended_ms, edge_id))
    return txn.rowcount


def sessions_started_per_bucket_txn(txn, since_ms, until_ms, bucket_ms) -> list[tuple[int, int]]:
    bucket = txn.engine.int_div("started_at - ?", "?")
    txn.execute(f"SELECT {bucket} AS b, COUNT(*) FROM session_directory "
                f"WHERE started_at >= ? AND started_at < ? GROUP BY b ORDER BY b",
                (since_ms, bucket_ms, since_ms, until_ms))
    return [(int(b), int(n)) for b, n in txn.fetchall()]


def assign_team_txn(txn, team, edge_id, now_ms) -> None:
    txn.execute(txn.engine.upsert("team_presence", ["team", "edge_id", "assigned_at"],
                                  ["team"], ["edge_id", "assigned_at"]),
                (team, edge_id, now_ms))


def get_team_edge_txn(txn, team) -> str | None:
    txn.execute("SELECT edge_id FROM team_presence WHERE team = ?", (team,))
    row = txn.fetchone()
    return row[0] if row else None


def list_team_assignments_txn(txn) -> dict[str, str]:
    txn.execute("SELECT team, edge_id FROM team_presence ORDER BY team")
    return {team: edge for team, edge in txn.fetchall()}


def unassign_edge_teams_txn(txn, edge_id) -> int:
    txn.execute("DELETE FROM team_presence WHERE edge_id = ?", (edge_id,))
    return txn.rowcount


_AUDIT_INSERT = ["entry_id", "at", "kind", "edge_id", "session_id", "user_name", "details",
                 "client"]


def insert_audit_batch_txn(txn, rows: Sequence[tuple]) -> int:
    return txn.insert_ignore_many("audit_entries", _AUDIT_INSERT, rows, "entry_id")


def _of_teams(teams: Sequence[str]) -> tuple[str, tuple]:
    """The condition keeping audit entries of these teams' sessions (by the session
    directory; a team viewer's audit and usage), and its arguments."""
    marks = ", ".join("?" for _ in teams)
    return (f"session_id IN (SELECT session_id FROM session_directory WHERE team IN "
            f"({marks}))", tuple(teams))


def query_audit_txn(txn, since_ms, until_ms, kinds, user, edge_id, session_id, after_seq,
                    limit, offset, teams=None) -> list[AuditEntry]:
    where, args = [], []
    if teams is not None:  # a team viewer: entries of its teams' sessions only
        if not teams:
            return []
        condition, team_args = _of_teams(teams)
        where.append(condition)
        args.extend(team_args)
    if since_ms is not None:
        where.append("at >= ?")
        args.append(since_ms)
    if until_ms is not None:
        where.append("at < ?")
        args.append(until_ms)
    if kinds:
        where.append("kind IN (" + ", ".join("?" for _ in kinds) + ")")
        args.extend(kinds)
    for column, value in (("user_name", user), ("edge_id", edge_id), ("session_id", session_id)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if after_seq is not None:
        where.append("seq > ?")
        args.append(after_seq)
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    txn.execute(
        "SELECT seq, entry_id, at, kind, edge_id, session_id, user_name, details "
        f"FROM audit_entries{clause} ORDER BY at DESC, seq DESC "
        f"LIMIT {int(limit)} OFFSET {int(offset)}", args)
    return [
        AuditEntry(entry_id=r[1], at=from_ms(r[2]), kind=r[3], edge_id=r[4], session_id=r[5],
                   user=r[6], details=json.loads(r[7]) if r[7] else {}, seq=int(r[0]))
        for r in txn.fetchall()
    ]


_PEOPLE = ("kind IN (" + ", ".join(f"'{kind}'" for kind in USAGE_KINDS) + ") "
           "AND at >= ? AND at < ?")


def usage_txn(txn, since_ms: int, until_ms: int, slot_ms: int,
              teams: Sequence[str] | None = None) -> UsageCounts:
    """Every usage aggregate in SQL (the same statements on the three dialects).

    ``teams``: only the audit entries of those teams' sessions; the snapshots' peaks and
    A/V counts (per edge, not per team) are then left out."""
    if teams is not None and not teams:
        return UsageCounts(0, {}, {}, {}, {}, None, {}, {})
    only, team_args = "", ()
    if teams is not None:
        condition, team_args = _of_teams(teams)
        only = " AND " + condition
    day_ms = to_ms(DAY)
    day = txn.engine.int_div("at - ?", "?")
    window = (since_ms, until_ms)
    txn.execute(f"SELECT COUNT(DISTINCT user_name) FROM audit_entries WHERE {_PEOPLE}{only}",
                (*window, *team_args))
    unique = int(txn.fetchone()[0] or 0)
    txn.execute(f"SELECT {day} AS d, COUNT(*) FROM audit_entries WHERE kind = "
                f"'session_started' AND at >= ? AND at < ?{only} GROUP BY d",
                (since_ms, day_ms, *window, *team_args))
    sessions = {int(d): int(n) for d, n in txn.fetchall()}
    txn.execute(f"SELECT {day} AS d, COUNT(DISTINCT user_name) FROM audit_entries "
                f"WHERE {_PEOPLE}{only} GROUP BY d", (since_ms, day_ms, *window, *team_args))
    users = {int(d): int(n) for d, n in txn.fetchall()}
    txn.execute(
        "SELECT AVG(n) FROM (SELECT session_id, COUNT(DISTINCT user_name) AS n "
        f"FROM audit_entries WHERE {_PEOPLE}{only} AND session_id IN (SELECT session_id "
        "FROM audit_entries WHERE kind = 'session_started' AND at >= ? AND at < ?) "
        "GROUP BY session_id) sizes", (*window, *team_args, *window))
    average = txn.fetchone()[0]
    breakdown = {}
    for kind in USAGE_KINDS:
        txn.execute("SELECT client, COUNT(*) FROM audit_entries WHERE kind = ? AND at >= ? "
                    f"AND at < ?{only} GROUP BY client", (kind, *window, *team_args))
        breakdown[kind] = {c: int(n) for c, n in txn.fetchall()}
    if teams is not None:
        return UsageCounts(unique_users=unique, sessions_per_day=sessions,
                           users_per_day=users, peak_users_per_day={},
                           peak_sessions_per_day={},
                           average_session_size=None if average is None else float(average),
                           host_clients=breakdown["session_started"],
                           join_clients=breakdown["participant_joined"])
    # Peak concurrent users, sessions, people in calls and calls: per edge its peak in
    # each slot, summed over edges per slot (edges report at different moments), the
    # highest slot of each day.
    slot = txn.engine.int_div("at - ?", "?")
    txn.execute(
        "SELECT d, MAX(users), MAX(sessions), MAX(in_calls), MAX(calls) FROM (SELECT d, s, "
        "SUM(users) AS users, SUM(sessions) AS sessions, SUM(in_calls) AS in_calls, "
        "SUM(calls) AS calls FROM ("
        f"SELECT {day} AS d, {slot} AS s, edge_id, MAX(users_online) AS users, "
        "MAX(sessions) AS sessions, MAX(av_participants) AS in_calls, MAX(av_calls) AS calls "
        "FROM metric_snapshots WHERE at >= ? AND at < ? "
        "GROUP BY d, s, edge_id) per_edge GROUP BY d, s) per_slot GROUP BY d",
        (since_ms, day_ms, since_ms, slot_ms, *window))
    peaks = {int(d): tuple(int(n) for n in counts) for d, *counts in txn.fetchall()}
    txn.execute("SELECT SUM(av_relayed), SUM(av_direct) FROM metric_snapshots "
                "WHERE at >= ? AND at < ?", window)
    relayed, direct = txn.fetchone()
    return UsageCounts(unique_users=unique, sessions_per_day=sessions, users_per_day=users,
                       peak_users_per_day={d: p[0] for d, p in peaks.items()},
                       peak_sessions_per_day={d: p[1] for d, p in peaks.items()},
                       peak_in_calls_per_day={d: p[2] for d, p in peaks.items()},
                       peak_calls_per_day={d: p[3] for d, p in peaks.items()},
                       av_relayed=int(relayed or 0), av_direct=int(direct or 0),
                       average_session_size=None if average is None else float(average),
                       host_clients=breakdown["session_started"],
                       join_clients=breakdown["participant_joined"])


def prune_txn(txn, table, before_ms) -> int:
    txn.execute(f"DELETE FROM {table} WHERE at < ?", (before_ms,))
    return txn.rowcount


_METRIC_INSERT = ["snapshot_id", "edge_id", "at", "users_online", "sessions", "connections",
                  "lag_ms", "sessions_hosted_total", "downloads_total", "av_participants",
                  "av_calls", "av_relayed", "av_direct"]


def insert_metrics_batch_txn(txn, rows: Sequence[tuple]) -> int:
    return txn.insert_ignore_many("metric_snapshots", _METRIC_INSERT, rows, "snapshot_id")


def query_metrics_txn(txn, since_ms, until_ms, bucket_ms, edge_id) -> list[tuple]:
    bucket = txn.engine.int_div("at - ?", "?")
    args: list[Any] = [since_ms, bucket_ms, since_ms, until_ms]
    edge_clause = ""
    if edge_id is not None:
        edge_clause = " AND edge_id = ?"
        args.append(edge_id)
    txn.execute(
        f"SELECT {bucket} AS b, edge_id, MAX(users_online), MAX(sessions), MAX(connections), "
        "AVG(lag_ms), MAX(sessions_hosted_total), MAX(downloads_total) "
        f"FROM metric_snapshots WHERE at >= ? AND at < ?{edge_clause} "
        "GROUP BY b, edge_id ORDER BY b, edge_id", args)
    return txn.fetchall()


def get_config_txn(txn, key) -> str | None:
    txn.execute("SELECT value FROM config_entries WHERE name = ?", (key,))
    row = txn.fetchone()
    return row[0] if row else None


def set_config_txn(txn, key, text, now_ms) -> None:
    txn.execute(txn.engine.upsert("config_entries", ["name", "value", "updated_at"], ["name"],
                                  ["value", "updated_at"]), (key, text, now_ms))


def all_config_txn(txn) -> list[tuple[str, str]]:
    txn.execute("SELECT name, value FROM config_entries ORDER BY name")
    return txn.fetchall()


# ------------------------------------------------------------------ the store


class LocatorStore:
    """Deferred-returning access to the locator's data."""

    def __init__(self, db: Database, clock):
        self.db = db
        self._clock = clock

    def _now_ms(self, at: float | None) -> int:
        return to_ms(self._clock.seconds() if at is None else at)

    # edges

    def register_edge(self, edge_id: str, public_url: str, region: str, version: str,
                      now: float | None = None):
        """Record an edge that connected; fires with its :class:`EdgeRecord` (which
        carries the ``suspended`` flag an operator may have set before a restart)."""
        return self.db.runInteraction("register_edge", register_edge_txn, edge_id, public_url,
                                      region, version, self._now_ms(now))

    def update_edge_stats(self, edge_id: str, load: float | None, lag_ms: float | None,
                          connections: int, sessions: int, users: int,
                          now: float | None = None):
        """Fires with False when the edge is unknown (not registered)."""
        return self.db.runInteraction("update_edge_stats", update_edge_stats_txn, edge_id,
                                      load, lag_ms, int(connections), int(sessions),
                                      int(users), self._now_ms(now))

    def set_suspended(self, edge_id: str, suspended: bool):
        """Fires with False when the edge is unknown."""
        return self.db.runInteraction("set_suspended", set_suspended_txn, edge_id,
                                      bool(suspended))

    def get_edge(self, edge_id: str):
        return self.db.runInteraction("get_edge", get_edge_txn, edge_id)

    def list_edges(self):
        return self.db.runInteraction("list_edges", list_edges_txn)

    def remove_edge(self, edge_id: str):
        return self.db.runInteraction("remove_edge", remove_edge_txn, edge_id)

    # session directory and team presence

    def session_started(self, session_id: str, edge_id: str, team: str | None = None,
                        started_at: float | None = None):
        return self.db.runInteraction("session_started", session_started_txn, session_id,
                                      edge_id, team, self._now_ms(started_at))

    def session_ended(self, session_id: str, edge_id: str, ended_at: float | None = None):
        return self.db.runInteraction("session_ended", session_ended_txn, session_id, edge_id,
                                      self._now_ms(ended_at))

    def get_session(self, session_id: str):
        return self.db.runInteraction("get_session", get_session_txn, session_id)

    def list_sessions(self, active_only: bool = True, team: str | None = None,
                      edge_id: str | None = None, limit: int = 500):
        return self.db.runInteraction("list_sessions", list_sessions_txn, active_only, team,
                                      edge_id, _limit(limit))

    def end_sessions_on_edge(self, edge_id: str, ended_at: float | None = None):
        """Mark every open session of a failed edge ended; fires with how many."""
        return self.db.runInteraction("end_sessions_on_edge", end_sessions_on_edge_txn,
                                      edge_id, self._now_ms(ended_at))

    def sessions_started_per_bucket(self, since: float, until: float, bucket_seconds: float):
        """Fires with ``[(bucket_start, count)]`` for buckets that have sessions."""
        since_ms, bucket_ms = to_ms(since), max(1, to_ms(bucket_seconds))
        d = self.db.runInteraction("sessions_started_per_bucket",
                                   sessions_started_per_bucket_txn, since_ms, to_ms(until),
                                   bucket_ms)
        return d.addCallback(lambda rows: [((since_ms + b * bucket_ms) / 1000.0, n)
                                           for b, n in rows])

    def assign_team(self, team: str, edge_id: str, now: float | None = None):
        return self.db.runInteraction("assign_team", assign_team_txn, team, edge_id,
                                      self._now_ms(now))

    def get_team_edge(self, team: str):
        return self.db.runInteraction("get_team_edge", get_team_edge_txn, team)

    def list_team_assignments(self):
        return self.db.runInteraction("list_team_assignments", list_team_assignments_txn)

    def unassign_edge_teams(self, edge_id: str):
        return self.db.runInteraction("unassign_edge_teams", unassign_edge_teams_txn, edge_id)

    # audit

    def insert_audit_batch(self, entries: Iterable[AuditEntry]):
        """Store entries not stored before (by ``entry_id``); fires with how many were new.

        One transaction per batch, one multi-row statement per up to 1000 entries.
        A repeated id is ignored, within the batch or across batches: first wins.
        """
        rows, seen = [], set()
        for e in entries:
            if e.entry_id in seen:
                continue
            seen.add(e.entry_id)
            client = client_family(e.details.get("client")) if e.kind in USAGE_KINDS else None
            rows.append((e.entry_id, to_ms(e.at), e.kind, e.edge_id, e.session_id, e.user,
                         json.dumps(dict(e.details), separators=(",", ":"), sort_keys=True),
                         client))
        if not rows:
            return defer.succeed(0)
        return self.db.runInteraction("insert_audit_batch", insert_audit_batch_txn, rows)

    def query_audit(self, since: float | None = None, until: float | None = None,
                    kind: str | Sequence[str] | None = None, user: str | None = None,
                    edge: str | None = None, session: str | None = None,
                    limit: int = 100, offset: int = 0, after_seq: int | None = None,
                    teams: Sequence[str] | None = None):
        """Newest first; ``since`` inclusive, ``until`` exclusive; ``after_seq`` for
        "what is new since I last looked" (readers remember the highest ``seq``);
        ``teams``: only entries of sessions of these teams (None: any)."""
        kinds = [kind] if isinstance(kind, str) else list(kind or [])
        return self.db.runInteraction(
            "query_audit", query_audit_txn,
            None if since is None else to_ms(since), None if until is None else to_ms(until),
            kinds, user, edge, session, after_seq, _limit(limit), max(0, int(offset)),
            None if teams is None else list(teams)[:100])

    def prune_audit(self, before: float):
        return self.db.runInteraction("prune_audit", prune_txn, "audit_entries", to_ms(before))

    # metrics

    def insert_metrics_batch(self, snapshots: Iterable[MetricSnapshot]):
        """Idempotent by ``snapshot_id``; fires with how many were new."""
        rows, seen = [], set()
        for s in snapshots:
            if s.snapshot_id in seen:
                continue
            seen.add(s.snapshot_id)
            rows.append((s.snapshot_id, s.edge_id, to_ms(s.at), int(s.users_online),
                         int(s.sessions), int(s.connections), s.lag_ms,
                         int(s.sessions_hosted_total), int(s.downloads_total),
                         int(s.av_participants), int(s.av_calls), int(s.av_relayed),
                         int(s.av_direct)))
        if not rows:
            return defer.succeed(0)
        return self.db.runInteraction("insert_metrics_batch", insert_metrics_batch_txn, rows)

    def query_metrics(self, since: float, until: float, bucket_seconds: float,
                      edge: str | None = None):
        """Fires with :class:`MetricBucket` per bucket that has data, oldest first."""
        since_ms, bucket_ms = to_ms(since), max(1, to_ms(bucket_seconds))
        d = self.db.runInteraction("query_metrics", query_metrics_txn, since_ms, to_ms(until),
                                   bucket_ms, edge)
        return d.addCallback(_buckets, since_ms, bucket_ms)

    def prune_metrics(self, before: float):
        return self.db.runInteraction("prune_metrics", prune_txn, "metric_snapshots",
                                      to_ms(before))

    # usage

    def usage(self, days: int = 30, now: float | None = None, slot_seconds: float = 60.0,
              teams: Sequence[str] | None = None):
        """Fires with the :class:`UsageReport` of the last ``days`` UTC days (today
        included); peaks of users online are taken per ``slot_seconds`` across edges.
        ``teams``: only those teams' sessions (a team viewer's report: no peaks, no A/V)."""
        since, until = usage_window(self._clock.seconds() if now is None else now,
                                    max(1, int(days)))
        scope = None if teams is None else sorted(set(teams))[:100]
        d = self.db.runInteraction("usage", usage_txn, to_ms(since), to_ms(until),
                                   max(1, to_ms(slot_seconds)), scope)
        return d.addCallback(lambda counts: counts.report(since, until, scope))

    # configuration

    def get_config(self, key: str, default: Any = None):
        """Fires with the JSON value stored under ``key``, or ``default``."""
        d = self.db.runInteraction("get_config", get_config_txn, key)
        return d.addCallback(lambda text: default if text is None else json.loads(text))

    def set_config(self, key: str, value: Any, now: float | None = None):
        text = json.dumps(value, separators=(",", ":"), sort_keys=True)
        return self.db.runInteraction("set_config", set_config_txn, key, text,
                                      self._now_ms(now))

    def get_all_config(self):
        d = self.db.runInteraction("get_all_config", all_config_txn)
        return d.addCallback(lambda rows: {k: json.loads(v) for k, v in rows})


def _limit(limit: int) -> int:
    return max(1, min(MAX_QUERY_LIMIT, int(limit)))


def _buckets(rows, since_ms: int, bucket_ms: int) -> list[MetricBucket]:
    grouped: dict[int, list] = {}
    for row in rows:
        grouped.setdefault(int(row[0]), []).append(row)
    out = []
    for b in sorted(grouped):
        per_edge = grouped[b]
        lags = [float(r[5]) for r in per_edge if r[5] is not None]
        out.append(MetricBucket(
            start=(since_ms + b * bucket_ms) / 1000.0,
            users_online=sum(int(r[2]) for r in per_edge),
            sessions=sum(int(r[3]) for r in per_edge),
            connections=sum(int(r[4]) for r in per_edge),
            lag_ms=max(lags) if lags else None,
            sessions_hosted_total=sum(int(r[6]) for r in per_edge),
            downloads_total=sum(int(r[7]) for r in per_edge),
            edges=len(per_edge),
        ))
    return out
