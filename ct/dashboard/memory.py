"""In-memory audit entries and metric history for a lone edge (single-server: no database).

Both are bounded and lost on restart; the locator's database keeps them in multi-server mode.
"""

from __future__ import annotations

import collections
import uuid
from typing import Any, Iterable

from ct.storage.store import (DAY, USAGE_KINDS, AuditEntry, MetricBucket, UsageCounts,
                              client_family)

AUDIT_CAPACITY = 10000
WEEK = 7 * 24 * 3600.0


class AuditRing:
    """The newest ``capacity`` audit entries (the edge's ``audit_sinks`` dict shape)."""

    def __init__(self, capacity: int = AUDIT_CAPACITY):
        self.entries: collections.deque[AuditEntry] = collections.deque(maxlen=capacity)
        self._seq = 0

    def __call__(self, raw: dict[str, Any]) -> None:
        """An ``edge.audit_sinks`` sink."""
        self._seq += 1
        try:
            entry = AuditEntry(entry_id=str(raw.get("id") or uuid.uuid4().hex),
                               at=float(raw["time"]), kind=raw["kind"], edge_id=raw.get("edge"),
                               session_id=raw.get("session"), user=raw.get("user"),
                               details=raw.get("details") or {}, seq=self._seq)
        except (KeyError, TypeError, ValueError):
            return
        self.entries.append(entry)

    def query(self, since: float | None = None, until: float | None = None,
              kind: str | Iterable[str] | None = None, user: str | None = None,
              edge: str | None = None, session: str | None = None, limit: int = 100,
              offset: int = 0, teams: Iterable[str] | None = None) -> list[AuditEntry]:
        """Newest first, with the store's filter semantics (``teams``: only entries of
        sessions whose ``session_started`` entry names one of them)."""
        kinds = {kind} if isinstance(kind, str) else set(kind or ())
        sessions = None if teams is None else team_sessions(self.entries, teams)
        out = []
        skipped = 0
        for e in sorted(self.entries, key=lambda e: (e.at, e.seq), reverse=True):
            if since is not None and e.at < since:
                continue
            if until is not None and e.at >= until:
                continue
            if kinds and e.kind not in kinds:
                continue
            if sessions is not None and e.session_id not in sessions:
                continue
            if (user is not None and e.user != user or edge is not None and e.edge_id != edge
                    or session is not None and e.session_id != session):
                continue
            if skipped < offset:
                skipped += 1
                continue
            out.append(e)
            if len(out) >= limit:
                break
        return out


class MetricHistory:
    """Snapshots of the edge's numbers every ``interval`` seconds, for about a week."""

    def __init__(self, interval: float, keep: float = WEEK, max_points: int = 60480):
        self.interval = interval
        capacity = max(2, min(max_points, int(keep / max(interval, 1e-3)) + 1))
        self.points: collections.deque[tuple] = collections.deque(maxlen=capacity)

    def add(self, at: float, snap: dict[str, Any], downloads_total: int = 0) -> None:
        self.points.append((at, int(snap.get("users_online", 0)), int(snap.get("sessions", 0)),
                            int(snap.get("connections", 0)), snap.get("lag_ms"),
                            int(snap.get("sessions_hosted_total", 0)), int(downloads_total),
                            int(snap.get("av_participants", 0)), int(snap.get("av_calls", 0)),
                            int(snap.get("av_relayed", 0)), int(snap.get("av_direct", 0))))

    def buckets(self, since: float, until: float, bucket_seconds: float) -> list[MetricBucket]:
        """Like ``LocatorStore.query_metrics`` for one edge: peaks per bucket, mean lag."""
        grouped: dict[int, list[tuple]] = {}
        for p in self.points:
            if since <= p[0] < until:
                grouped.setdefault(int((p[0] - since) // bucket_seconds), []).append(p)
        out = []
        for b in sorted(grouped):
            ps = grouped[b]
            lags = [float(p[4]) for p in ps if p[4] is not None]
            out.append(MetricBucket(
                start=since + b * bucket_seconds, users_online=max(p[1] for p in ps),
                sessions=max(p[2] for p in ps), connections=max(p[3] for p in ps),
                lag_ms=sum(lags) / len(lags) if lags else None,
                sessions_hosted_total=max(p[5] for p in ps),
                downloads_total=max(p[6] for p in ps), edges=1))
        return out

    def calls_per_day(self, since: float, until: float) -> tuple[dict, dict, int, int]:
        """Peak people in calls and peak calls per day number since ``since``, and the
        relayed and direct peer connections summed over the snapshots (as the SQL does)."""
        in_calls: dict[int, int] = {}
        calls: dict[int, int] = {}
        relayed = direct = 0
        for p in self.points:
            if since <= p[0] < until:
                day = int((p[0] - since) // DAY)
                in_calls[day] = max(in_calls.get(day, 0), p[7])
                calls[day] = max(calls.get(day, 0), p[8])
                relayed += p[9]
                direct += p[10]
        return in_calls, calls, relayed, direct


def team_sessions(entries: Iterable[AuditEntry], teams: Iterable[str]) -> set[str]:
    """The sessions whose ``session_started`` entry names one of ``teams``."""
    wanted = set(teams)
    return {e.session_id for e in entries if e.kind == "session_started" and e.session_id
            and e.details.get("team") in wanted}


def usage_counts(entries: Iterable[AuditEntry], history: MetricHistory | None, since: float,
                 until: float, teams: Iterable[str] | None = None) -> UsageCounts:
    """The lone edge's usage aggregates, by the rules of ``LocatorStore.usage`` (whose SQL
    is the reference), over what its memory still holds. ``teams``: only those teams'
    sessions, and no peaks or A/V (the history is per edge, not per team)."""
    entries = list(entries)
    if teams is not None:
        keep = team_sessions(entries, teams)
        entries = [e for e in entries if e.session_id in keep]
        history = None
    people: set[str] = set()
    sessions: dict[int, int] = {}
    users: dict[int, set[str]] = {}
    started: set[str] = set()
    sizes: dict[str, set[str]] = {}
    clients: dict[str, dict[str | None, int]] = {kind: {} for kind in USAGE_KINDS}
    for e in entries:
        if e.kind not in USAGE_KINDS or not since <= e.at < until:
            continue
        day = int((e.at - since) // DAY)
        if e.user is not None:
            people.add(e.user)
            users.setdefault(day, set()).add(e.user)
            if e.session_id is not None:
                sizes.setdefault(e.session_id, set()).add(e.user)
        if e.kind == "session_started":
            sessions[day] = sessions.get(day, 0) + 1
            if e.session_id is not None:
                started.add(e.session_id)
        family = client_family(e.details.get("client"))
        clients[e.kind][family] = clients[e.kind].get(family, 0) + 1
    counted = [len(sizes[s]) for s in started if s in sizes]
    peak_users: dict[int, int] = {}
    peak_sessions: dict[int, int] = {}
    in_calls: dict[int, int] = {}
    calls: dict[int, int] = {}
    relayed = direct = 0
    if history is not None:
        for b in history.buckets(since, until, DAY):
            day = int(round((b.start - since) / DAY))
            peak_users[day], peak_sessions[day] = b.users_online, b.sessions
        in_calls, calls, relayed, direct = history.calls_per_day(since, until)
    return UsageCounts(
        unique_users=len(people), sessions_per_day=sessions,
        users_per_day={d: len(u) for d, u in users.items()}, peak_users_per_day=peak_users,
        peak_sessions_per_day=peak_sessions,
        average_session_size=sum(counted) / len(counted) if counted else None,
        host_clients=clients["session_started"], join_clients=clients["participant_joined"],
        peak_in_calls_per_day=in_calls, peak_calls_per_day=calls, av_relayed=relayed,
        av_direct=direct)
