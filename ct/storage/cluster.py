"""What several locators on one database share beyond ``store.py``: who they are, and which
locator holds each edge's link (``docs/locator.md``, "Several locators").

Plain ``fn(txn)`` functions and :class:`ClusterStore` running them, like ``store.py``.
Notifications (PostgreSQL ``NOTIFY``) carry ids only; readers re-query with
:meth:`ClusterStore.shared_edges`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from ct.protocol.link import Draining
from ct.storage.database import Database
from ct.storage.store import from_ms, to_ms

FORGET_LOCATORS_AFTER_MS = 24 * 3600 * 1000  # rows of locators silent for a day are removed


@dataclass(frozen=True)
class LocatorRecord:
    locator_id: str
    relay_url: str
    version: str
    instance: str
    started_at: float
    heartbeat_at: float
    db_latency_ms: float | None = None
    peer_latency_ms: float | None = None


@dataclass(frozen=True)
class SharedEdge:
    """One edge as the database has it: identity, last report, suspension, link holder and
    whether it is stopping (``draining``, recorded by the link holder)."""

    edge_id: str
    url: str
    region: str
    version: str
    suspended: bool
    stats_at: float | None
    cpu: float | None  # the edge's process CPU in cores (column load_factor)
    lag_ms: float | None
    connections: int
    sessions: int
    users: int
    sessions_hosted: int
    owner: str | None  # the locator holding its link; None: the link was lost
    linked_at: float
    link_lost_at: float | None
    draining: Draining | None = None

    def stats(self) -> dict:
        """The report fields placement reads (the names of ``link.Report.to_json``)."""
        return {"cpu": self.cpu, "lagMs": self.lag_ms, "connections": self.connections,
                "sessions": self.sessions, "users": self.users,
                "sessionsHosted": self.sessions_hosted}


_LOCATOR_COLUMNS = ("locator_id, relay_url, version, instance, started_at, heartbeat_at, "
                    "db_latency_ms, peer_latency_ms")


def _locator(row) -> LocatorRecord:
    return LocatorRecord(row[0], row[1], row[2], row[3], from_ms(row[4]), from_ms(row[5]),
                         row[6], row[7])


def heartbeat_txn(txn, locator_id, relay_url, version, instance, started_ms, now_ms,
                  db_latency_ms, peer_latency_ms) -> list[LocatorRecord]:
    """Record this locator's heartbeat; answer every locator's row (ours included)."""
    txn.execute(txn.engine.upsert(
        "locators", ["locator_id", "relay_url", "version", "instance", "started_at",
                     "heartbeat_at", "db_latency_ms", "peer_latency_ms"],
        ["locator_id"], ["relay_url", "version", "instance", "started_at", "heartbeat_at",
                         "db_latency_ms", "peer_latency_ms"]),
        (locator_id, relay_url, version, instance, started_ms, now_ms, db_latency_ms,
         peer_latency_ms))
    txn.execute("DELETE FROM locators WHERE heartbeat_at < ?",
                (now_ms - FORGET_LOCATORS_AFTER_MS,))
    return list_locators_txn(txn)


def list_locators_txn(txn) -> list[LocatorRecord]:
    txn.execute(f"SELECT {_LOCATOR_COLUMNS} FROM locators ORDER BY locator_id")
    return [_locator(r) for r in txn.fetchall()]


def remove_locator_txn(txn, locator_id, instance) -> None:
    txn.execute("DELETE FROM locators WHERE locator_id = ? AND instance = ?",
                (locator_id, instance))


def link_edge_txn(txn, edge_id, locator_id, now_ms, draining_since_ms=None,
                  draining_until_ms=None) -> None:
    """A new link: the edge is draining only if its registration says so."""
    txn.execute(txn.engine.upsert(
        "edge_links", ["edge_id", "locator_id", "linked_at", "link_lost_at", "draining_since",
                       "draining_until"], ["edge_id"],
        ["locator_id", "linked_at", "link_lost_at", "draining_since", "draining_until"]),
        (edge_id, locator_id, now_ms, None, draining_since_ms, draining_until_ms))


def draining_txn(txn, edge_id, locator_id, linked_ms, since_ms, until_ms) -> bool:
    """The edge of the link this locator made at ``linked_ms`` is stopping."""
    txn.execute("UPDATE edge_links SET draining_since = ?, draining_until = ? "
                "WHERE edge_id = ? AND locator_id = ? AND linked_at = ?",
                (since_ms, until_ms, edge_id, locator_id, linked_ms))
    return txn.rowcount > 0


def unlink_edge_txn(txn, edge_id, locator_id, linked_ms, now_ms) -> bool:
    """The link this locator made at ``linked_ms`` dropped; a newer link (the edge already
    reconnected elsewhere) is left alone."""
    txn.execute("UPDATE edge_links SET locator_id = NULL, link_lost_at = ?, "
                "draining_since = NULL, draining_until = NULL "
                "WHERE edge_id = ? AND locator_id = ? AND linked_at = ?",
                (now_ms, edge_id, locator_id, linked_ms))
    return txn.rowcount > 0


def hosted_txn(txn, edge_id, sessions_hosted) -> None:
    txn.execute("UPDATE edge_links SET sessions_hosted = ? WHERE edge_id = ?",
                (sessions_hosted, edge_id))


def shared_edges_txn(txn, edge_ids: Sequence[str] | None) -> list[SharedEdge]:
    where, args = "", []
    if edge_ids is not None:
        if not edge_ids:
            return []
        where = " WHERE e.edge_id IN (" + ", ".join("?" for _ in edge_ids) + ")"
        args = list(edge_ids)
    txn.execute(
        "SELECT e.edge_id, e.public_url, e.region, e.version, e.suspended, e.stats_at, "
        "e.load_factor, e.lag_ms, e.connections, e.sessions, e.users, l.sessions_hosted, "
        "l.locator_id, l.linked_at, l.link_lost_at, l.draining_since, l.draining_until "
        f"FROM edges e JOIN edge_links l ON l.edge_id = e.edge_id{where} "
        "ORDER BY e.edge_id", args)
    return [SharedEdge(
        edge_id=r[0], url=r[1], region=r[2], version=r[3], suspended=bool(r[4]),
        stats_at=from_ms(r[5]), cpu=r[6], lag_ms=r[7], connections=int(r[8]),
        sessions=int(r[9]), users=int(r[10]), sessions_hosted=int(r[11] or 0), owner=r[12],
        linked_at=from_ms(r[13]), link_lost_at=from_ms(r[14]),
        draining=None if r[15] is None else Draining(from_ms(r[15]), from_ms(r[16] or r[15])))
        for r in txn.fetchall()]


def notify_txn(txn, channel: str, payloads: Sequence[str]) -> None:
    """PostgreSQL only: one ``NOTIFY`` per payload, delivered when the transaction commits."""
    for payload in payloads:
        txn.execute("SELECT pg_notify(?, ?)", (channel, payload))
        txn.fetchall()


class ClusterStore:
    """Deferred-returning access to the locator registry and the edge links."""

    def __init__(self, db: Database, clock):
        self.db = db
        self._clock = clock

    def _now_ms(self) -> int:
        return to_ms(self._clock.seconds())

    def heartbeat(self, locator_id: str, relay_url: str, version: str, instance: str,
                  started_at: float, db_latency_ms: float | None = None,
                  peer_latency_ms: float | None = None):
        """Fires with every locator's :class:`LocatorRecord`."""
        return self.db.runInteraction("locator heartbeat", heartbeat_txn, locator_id,
                                      relay_url, version, instance, to_ms(started_at),
                                      self._now_ms(), db_latency_ms, peer_latency_ms)

    def list_locators(self):
        return self.db.runInteraction("list_locators", list_locators_txn)

    def remove_locator(self, locator_id: str, instance: str):
        return self.db.runInteraction("remove_locator", remove_locator_txn, locator_id,
                                      instance)

    def link_edge(self, edge_id: str, locator_id: str, at: float,
                  draining: Draining | None = None):
        since, until = (None, None) if draining is None else (to_ms(draining.since),
                                                              to_ms(draining.until))
        return self.db.runInteraction("link_edge", link_edge_txn, edge_id, locator_id,
                                      to_ms(at), since, until)

    def set_draining(self, edge_id: str, locator_id: str, linked_at: float,
                     draining: Draining):
        return self.db.runInteraction("edge_draining", draining_txn, edge_id, locator_id,
                                      to_ms(linked_at), to_ms(draining.since),
                                      to_ms(draining.until))

    def unlink_edge(self, edge_id: str, locator_id: str, linked_at: float):
        return self.db.runInteraction("unlink_edge", unlink_edge_txn, edge_id, locator_id,
                                      to_ms(linked_at), self._now_ms())

    def set_hosted(self, edge_id: str, sessions_hosted: int):
        return self.db.runInteraction("edge_hosted", hosted_txn, edge_id, int(sessions_hosted))

    def shared_edges(self, edge_ids: Iterable[str] | None = None):
        """Fires with :class:`SharedEdge` rows (all edges any locator linked, or these)."""
        ids = None if edge_ids is None else sorted(set(edge_ids))
        return self.db.runInteraction("shared_edges", shared_edges_txn, ids)

    def notify(self, channel: str, payloads: Sequence[str]):
        return self.db.runInteraction("notify", notify_txn, channel, list(payloads))
