"""In-memory audit entries and metric history for a lone edge (single-server: no database).

Both are bounded and lost on restart; the locator's database keeps them in multi-server mode.
"""

from __future__ import annotations

import collections
import uuid
from typing import Any, Iterable

from ct.storage.store import AuditEntry, MetricBucket

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
        sessions = None
        if teams is not None:
            wanted = set(teams)
            sessions = {e.session_id for e in self.entries if e.kind == "session_started"
                        and e.session_id and e.details.get("team") in wanted}
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
                            int(snap.get("sessions_hosted_total", 0)), int(downloads_total)))

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
