"""The locator's live view of its edges and their states. No I/O.

States (see ``docs/locator.md``):

* ``online``: the edge's link is up and it reported within ``dead_after`` seconds;
* ``suspended``: online, but an operator suspended it (new sessions only as a last resort);
* ``draining``: online, but the edge said it is stopping (``CT_DRAIN_TIMEOUT``): no new
  sessions nor teams at all, joins to its sessions still go there; cleared when its link
  goes (it stopped) or it registers again without draining;
* ``link-lost``: the link dropped but the edge still answers ``/health`` (or has not yet
  been found dead); no new sessions, but joins to its sessions are still routed there for
  ``link_grace`` s;
* ``unavailable``: no report for ``dead_after`` s with the link up, ``/health`` failed
  twice in a row after the link dropped, or the grace period passed.

Edges are not pre-registered: an edge appears when it connects.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ct.locator.placement import EdgeSnapshot, EdgeState
from ct.protocol.link import Draining

HEALTH_FAILURES_FOR_DEAD = 2
# A placement weighs in its edge's score (never its cap) until a report shows the hosted
# session, at most this long: reports arrive every few seconds, placements in bursts.
PENDING_PLACEMENT_SECONDS = 10.0
# A drain in a shared row whose end passed this long ago is left over (a link made by a
# locator of a version before drains were shared keeps the columns): not draining.
STALE_DRAIN_SECONDS = 120.0


@dataclass
class EdgeInfo:
    edge_id: str
    url: str
    region: str
    version: str
    suspended: bool = False
    link_up: bool = False
    connected_at: float = 0.0
    last_report: float = 0.0
    link_lost_at: float | None = None
    health_failures: int = 0
    probing: bool = False  # a /health probe is in flight
    last_probe: float | None = None  # when the last probe of this link loss started
    dead: bool = False
    max_connections: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    pending: deque = field(default_factory=deque)  # times of placements not yet reported
    link: Any = None  # the websocket protocol while the link is up
    owner: str | None = None  # another live locator that holds the link (several locators)
    linked_at: float | None = None  # when the current link was made (shared epoch)
    seen_at: float = 0.0  # when the database row was last read (edges linked elsewhere)
    shared_report: float | None = None  # the row's report time (the owner's clock)
    draining: Draining | None = None  # the edge is stopping (it said so over its link)


class EdgeDirectory:
    def __init__(self, clock, dead_after: float = 15.0, link_grace: float = 120.0):
        self.clock = clock
        self.dead_after = dead_after
        self.link_grace = link_grace
        self.edges: dict[str, EdgeInfo] = {}

    # -- link events

    def connected(self, edge_id: str, url: str, region: str, version: str, link,
                  suspended: bool, max_connections: int = 0,
                  draining: Draining | None = None) -> EdgeInfo:
        now = self.clock.seconds()
        info = self.edges.get(edge_id)
        if info is None:
            info = self.edges[edge_id] = EdgeInfo(edge_id, url, region, version)
        info.url, info.region, info.version = url, region, version
        info.suspended = suspended
        info.link_up = True
        info.link = link
        info.connected_at = info.last_report = now
        info.link_lost_at = None
        info.health_failures = 0
        info.dead = False
        info.max_connections = max_connections
        info.owner = None
        info.draining = draining
        return info

    def set_draining(self, edge_id: str, draining: Draining | None) -> bool:
        """The edge said it is stopping; returns whether that is news."""
        info = self.edges.get(edge_id)
        if info is None or info.draining == draining:
            return False
        info.draining = draining
        return True

    def shared(self, row, owner_alive: bool) -> bool:
        """Merge what the database says of an edge another locator linked (a
        :class:`~ct.storage.cluster.SharedEdge`). ``owner_alive``: the row's locator is alive
        and made the link. An edge linked to this locator keeps its own view; only its
        suspension can change here. Returns whether the suspension changed. A drain the
        owner recorded counts while that link lasts."""
        info = self.edges.get(row.edge_id)
        if info is None:
            info = self.edges[row.edge_id] = EdgeInfo(row.edge_id, row.url, row.region,
                                                      row.version)
        changed = info.suspended != row.suspended
        info.suspended = row.suspended
        if info.link is not None:
            return changed
        info.url, info.region, info.version = row.url, row.region, row.version
        drain = row.draining
        stale = drain is not None and self.clock.seconds() > drain.until + STALE_DRAIN_SECONDS
        info.draining = drain if owner_alive and not stale else None
        now = self.clock.seconds()
        info.seen_at = now
        if row.stats_at is not None and row.stats_at != info.shared_report:
            # A new report: timed by this locator's clock (hosts' clocks may differ), the
            # first one seen by the row's own time.
            first = info.shared_report is None
            info.shared_report = row.stats_at
            stats = row.stats()
            before = info.stats.get("sessionsHosted")
            hosted = stats["sessionsHosted"]
            if isinstance(before, int) and hosted > before:
                for _ in range(min(hosted - before, len(info.pending))):
                    info.pending.popleft()
            info.stats = stats
            info.last_report = min(now, row.stats_at) if first else now
        new_link = row.linked_at != info.linked_at
        info.linked_at = row.linked_at
        if owner_alive:
            if new_link:  # as on a link of our own: counted from now, until its first report
                info.last_report = max(info.last_report, now)
            info.owner = row.owner
            info.link_lost_at = None
            info.dead = False
            info.health_failures = 0
            return changed
        if info.owner is not None or new_link or info.link_lost_at is None:
            # The link was lost (its locator said so, or died): probe like a local loss.
            info.owner = None
            info.link_lost_at = row.link_lost_at or self.clock.seconds()
            info.health_failures = 0
            info.last_probe = None
            if new_link:
                info.dead = False
        return changed

    def reported(self, edge_id: str, stats: dict[str, Any]) -> None:
        info = self.edges.get(edge_id)
        if info is not None:
            hosted = stats.get("sessionsHosted")
            before = info.stats.get("sessionsHosted")
            if isinstance(hosted, int) and isinstance(before, int) and hosted > before:
                for _ in range(min(hosted - before, len(info.pending))):
                    info.pending.popleft()  # those placements became sessions
            info.stats = stats
            info.last_report = self.clock.seconds()

    def placed(self, edge_id: str) -> None:
        """A session was just placed on the edge; weigh it until a report shows it."""
        info = self.edges.get(edge_id)
        if info is not None:
            info.pending.append(self.clock.seconds())

    def _pending(self, info: EdgeInfo) -> int:
        horizon = self.clock.seconds() - PENDING_PLACEMENT_SECONDS
        while info.pending and info.pending[0] < horizon:
            info.pending.popleft()  # never hosted (client gave up) or report lost
        return len(info.pending)

    def disconnected(self, edge_id: str, link) -> EdgeInfo | None:
        info = self.edges.get(edge_id)
        if info is None or info.link is not link:
            return None  # an older link of an edge that already reconnected
        info.link_up = False
        info.link = None
        info.draining = None  # a drained edge closes its link as it stops
        info.link_lost_at = self.clock.seconds()
        info.health_failures = 0
        info.last_probe = None
        info.owner = None
        return info

    def probes_due(self, interval: float) -> list[EdgeInfo]:
        """Link-lost edges to probe now: none in flight, the last started ``interval`` ago."""
        now = self.clock.seconds()
        due = []
        for info in self.edges.values():
            if (info.link_up or info.owner is not None or info.dead or info.probing
                    or self.state(info) != EdgeState.LINK_LOST):
                continue
            if info.last_probe is None or now - info.last_probe >= interval:
                due.append(info)
        return due

    def probe_started(self, info: EdgeInfo) -> float | None:
        """Mark a probe in flight; returns the link loss it belongs to."""
        info.probing = True
        info.last_probe = self.clock.seconds()
        return info.link_lost_at

    def health_result(self, edge_id: str, ok: bool, lost_at: float | None = None) -> None:
        """A probe answered; results of an earlier link loss (or a relinked edge) count not."""
        info = self.edges.get(edge_id)
        if info is None:
            return
        info.probing = False
        if (info.link_up or info.owner is not None
                or (lost_at is not None and lost_at != info.link_lost_at)):
            return
        info.health_failures = 0 if ok else info.health_failures + 1
        if info.health_failures >= HEALTH_FAILURES_FOR_DEAD:
            info.dead = True

    # -- derived state

    def state(self, info: EdgeInfo) -> EdgeState:
        now = self.clock.seconds()
        if info.link_up or info.owner is not None:  # linked here, or to a live locator
            # Linked elsewhere: judged as of the last read of its row, so a database that
            # cannot be read makes no edge look silent.
            as_of = now if info.link_up else min(now, info.seen_at)
            if as_of - info.last_report > self.dead_after:
                return EdgeState.UNAVAILABLE
            if info.draining is not None:
                return EdgeState.DRAINING
            return EdgeState.SUSPENDED if info.suspended else EdgeState.ONLINE
        if info.dead or info.link_lost_at is None or now - info.link_lost_at > self.link_grace:
            return EdgeState.UNAVAILABLE
        return EdgeState.LINK_LOST

    def snapshots(self) -> list[EdgeSnapshot]:
        out = []
        for info in self.edges.values():
            s = info.stats
            pending = self._pending(info)
            out.append(EdgeSnapshot(
                edge_id=info.edge_id, region=info.region, state=self.state(info),
                cpu=s.get("cpu"), lag_ms=s.get("lagMs"),
                connections=int(s.get("connections", 0)), sessions=int(s.get("sessions", 0)),
                max_connections=info.max_connections, pending=pending))
        return out

    def describe(self, info: EdgeInfo) -> dict[str, Any]:
        now = self.clock.seconds()
        return {"edge": info.edge_id, "url": info.url, "region": info.region,
                "version": info.version, "state": self.state(info).value,
                "suspended": info.suspended, "linkUp": info.link_up or info.owner is not None,
                "drainingUntil": info.draining.until if info.draining is not None else None,
                "locator": info.owner, "lastReport": info.last_report,
                "lastSeenAgo": round(now - info.last_report, 3),
                **{k: v for k, v in info.stats.items() if k != "type"}}
