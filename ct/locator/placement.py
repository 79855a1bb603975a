"""Placement: which edge gets a new session or a team's presence (pure logic).

The locator feeds in what it knows of each edge (an :class:`EdgeSnapshot`) and the
client's region; :func:`pick_edge` answers with the best edge. The rules, in order:

1. Never an ``unavailable`` or ``link-lost`` edge (the locator cannot tell a hung edge
   from a partitioned one), never a ``draining`` one (it is stopping and refuses new
   sessions with ``shutting-down``), never a full one (reported ``connections >= max_connections``;
   placements not yet reported do not count towards the cap).
2. Tiers: ``online`` edges first; ``suspended`` edges only when no online edge can
   take the session.
3. Within a tier, edges of the client's region first; other regions as fall-back.
4. Within that, the lowest :func:`score`; ties broken by fewer connections, fewer
   sessions, then the edge id, so the answer never depends on input order.

The formula is documented in ``docs/placement.md``.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Iterable, Sequence


class EdgeState(str, enum.Enum):
    ONLINE = "online"
    SUSPENDED = "suspended"
    DRAINING = "draining"  # the edge said it is stopping: joins only
    LINK_LOST = "link-lost"
    UNAVAILABLE = "unavailable"


_TIER = {EdgeState.ONLINE: 0, EdgeState.SUSPENDED: 1}  # states that take new sessions
# A team's presence stays on its edge in these states (a draining edge is about to go:
# the next lookup moves the team, so the team's new sessions can start).
_KEEPS_ITS_TEAMS = frozenset({EdgeState.ONLINE, EdgeState.SUSPENDED, EdgeState.LINK_LOST})
# Joins of an existing session go to its edge in these states (sessions do not move).
_TAKES_JOINS = _KEEPS_ITS_TEAMS | {EdgeState.DRAINING}


@dataclass(frozen=True)
class EdgeSnapshot:
    """What placement needs to know about one edge."""

    edge_id: str
    region: str
    state: EdgeState
    cpu: float | None = None  # process CPU over the last report, in cores; None: unknown
    lag_ms: float | None = None  # event-loop lag, recent average; None: unknown
    connections: int = 0
    sessions: int = 0
    max_connections: int = 0  # 0: no cap
    pending: int = 0  # placements not yet seen in a report: weigh in the score, not the cap

    @property
    def full(self) -> bool:
        """At its cap by what it reported (pending placements never fill an edge)."""
        return self.max_connections > 0 and self.connections >= self.max_connections

    @property
    def eligible(self) -> bool:
        """Can take a new session or team at all."""
        return self.state in _TIER and not self.full


@dataclass(frozen=True)
class Weights:
    """Weights and scales of :func:`score`; defaults are documented in docs/placement.md."""

    connections: float = 1.0
    sessions: float = 0.5
    cpu: float = 1.0
    lag: float = 0.5
    nominal_capacity: int = 250  # connections a 2 vCPU edge carries comfortably
    lag_reference_ms: float = 200.0
    lag_cap: float = 5.0
    # An idle edge's own timers and measurement noise: below these, no edge is busier
    # than another, so a burst of placements is spread by the counts.
    cpu_idle: float = 0.1
    lag_idle_ms: float = 50.0


DEFAULT_WEIGHTS = Weights()


@dataclass(frozen=True)
class Placement:
    edge_id: str
    state: EdgeState
    in_region: bool
    score: float


def _finite(value: float | None, default: float) -> float:
    if value is None or not math.isfinite(value):
        return default
    return float(value)


def score(edge: EdgeSnapshot, weights: Weights = DEFAULT_WEIGHTS) -> float:
    """How busy an edge is; lower is better.

    ``capacity = max_connections or nominal_capacity``::

        score = w_conn * connections / capacity
              + w_sess * sessions / capacity          (both counts plus ``pending``)
              + w_cpu  * clamp((cpu - cpu_idle) / (1 - cpu_idle), 0, 1)
                                   (unknown CPU: reported connections / capacity, no pending)
              + w_lag  * min((lag_ms - lag_idle_ms)+ / lag_reference_ms, lag_cap)
                                                      (unknown lag: 0)

    ``cpu`` is in cores and capped at one: the edge's event loop runs on one core.
    """
    capacity = edge.max_connections if edge.max_connections > 0 else weights.nominal_capacity
    capacity = max(1, capacity)
    pending = max(0, edge.pending)
    conn_ratio = (max(0, edge.connections) + pending) / capacity
    sess_ratio = (max(0, edge.sessions) + pending) / capacity
    if edge.cpu is None or not math.isfinite(edge.cpu):
        # Stand-in: its connections as reported; pending placements weigh in the counts
        # already, and must not count twice against an edge that has just connected.
        cpu = min(1.0, max(0, edge.connections) / capacity)
    else:
        idle = min(max(weights.cpu_idle, 0.0), 0.99)
        cpu = min(1.0, max(0.0, (edge.cpu - idle) / (1.0 - idle)))
    lag_ms = max(0.0, _finite(edge.lag_ms, 0.0) - weights.lag_idle_ms)
    lag = min(weights.lag_cap, lag_ms / weights.lag_reference_ms)
    total = (weights.connections * conn_ratio + weights.sessions * sess_ratio
             + weights.cpu * cpu + weights.lag * lag)
    return round(total, 9)  # equal inputs compare equal whatever the float noise


def rank(edges: Iterable[EdgeSnapshot], client_region: str | None = None,
         weights: Weights = DEFAULT_WEIGHTS) -> list[Placement]:
    """Every eligible edge, best first (callers may try the next on refusal)."""
    keyed = []
    for edge in edges:
        if not edge.eligible:
            continue
        in_region = client_region is None or edge.region == client_region
        s = score(edge, weights)
        pending = max(0, edge.pending)
        key = (_TIER[edge.state], 0 if in_region else 1, s, edge.connections + pending,
               edge.sessions + pending, edge.edge_id)
        keyed.append((key, Placement(edge.edge_id, edge.state, in_region, s)))
    keyed.sort(key=lambda pair: pair[0])
    return [placement for _, placement in keyed]


def pick_edge(edges: Iterable[EdgeSnapshot], client_region: str | None = None,
              weights: Weights = DEFAULT_WEIGHTS) -> Placement | None:
    """The best edge for a new session, or None when no edge can take one."""
    ranked = rank(edges, client_region, weights)
    return ranked[0] if ranked else None


def assign_team(current_edge_id: str | None, edges: Sequence[EdgeSnapshot],
                client_region: str | None = None,
                weights: Weights = DEFAULT_WEIGHTS) -> Placement | None:
    """Where a team's presence lives: its current edge while that edge is available
    (online, suspended or link-lost within the grace period, even when full: presence
    is not a session), otherwise (also when it is draining) the best edge as for a new
    session."""
    if current_edge_id is not None:
        for edge in edges:
            if edge.edge_id == current_edge_id and edge.state in _KEEPS_ITS_TEAMS:
                in_region = client_region is None or edge.region == client_region
                return Placement(edge.edge_id, edge.state, in_region, score(edge, weights))
    return pick_edge(edges, client_region, weights)


def route_join(session_edge_id: str, edges: Iterable[EdgeSnapshot]) -> str | None:
    """The edge a joiner of an existing session goes to: the session's own edge unless
    it is unavailable (sessions do not move; the host starts a new one). A draining edge
    still takes joins: its sessions go on until they end or its drain time is up."""
    for edge in edges:
        if edge.edge_id == session_edge_id:
            return edge.edge_id if edge.state in _TAKES_JOINS else None
    return None
