"""Where the dashboard's data comes from: the locator (multi-server) or one edge (single-server).

Both backends satisfy :class:`Backend`; a page that needs the locator (edges, regions)
gets :class:`NotAvailable` from the edge backend and says so.
"""

from __future__ import annotations

import uuid
from typing import Any, Mapping, Protocol

from twisted.internet import defer

from ct import __version__
from ct.edge import admin
from ct.edge.downloads import CLIENT_KINDS
from ct.edge.integrations import Integrations
from ct.dashboard.memory import usage_counts
from ct.storage.store import AuditEntry, usage_window


class NotAvailable(Exception):
    """This page or action needs the locator (multi-server mode)."""


class ActionError(Exception):
    """An administrator action that failed; the message is shown to the user."""


class Backend(Protocol):
    """What the pages ask of the server they run in. Methods that return a Deferred say
    so; ``by`` is the dashboard user doing it (audited). Locator-only ones fail with
    :class:`NotAvailable` on a lone edge, and :meth:`this_edge` on the locator."""

    mode: str  # "multi-server" or "single-server"
    clock: Any

    def overview(self) -> defer.Deferred: ...
    def history(self, since: float, until: float, bucket: float) -> defer.Deferred: ...
    def edges(self) -> defer.Deferred: ...
    def this_edge(self) -> dict[str, Any]: ...
    def locators(self) -> list[dict[str, Any]]: ...
    def suspend(self, edge_id: str, suspended: bool, by: str) -> defer.Deferred: ...
    def edge_log(self, edge_id: str) -> defer.Deferred: ...
    def sessions(self) -> defer.Deferred: ...
    def remove_participant(self, session_id: str, pid: int, by: str) -> defer.Deferred: ...
    def end_session(self, session_id: str, by: str) -> defer.Deferred: ...
    def regions(self) -> defer.Deferred: ...
    def reported_regions(self) -> dict[str, list[str]]: ...
    def set_regions(self, value: Mapping[str, Any], by: str) -> defer.Deferred: ...
    def advanced(self) -> defer.Deferred: ...
    def set_advanced(self, value: Mapping[str, Any], by: str) -> defer.Deferred: ...
    def integrations(self) -> defer.Deferred: ...
    def set_integrations(self, value: Mapping[str, Any] | None, by: str) -> defer.Deferred: ...
    def audit(self, **query) -> defer.Deferred: ...
    def usage(self, days: int, teams: tuple[str, ...] | None = None) -> defer.Deferred: ...
    def record(self, kind: str, user: str | None, **details) -> defer.Deferred: ...
    def api_tokens(self) -> defer.Deferred: ...
    def create_api_token(self, name: str, role: str, teams: tuple[str, ...],
                         by: str) -> defer.Deferred: ...
    def revoke_api_token(self, token_id: str, by: str) -> defer.Deferred: ...


def _sum_downloads(per_edge) -> dict[str, int]:
    total = {kind: 0 for kind in CLIENT_KINDS}
    for counts in per_edge:
        for kind, n in (counts or {}).items():
            if isinstance(n, (int, float)):
                total[kind] = total.get(kind, 0) + int(n)
    return total


class LocatorBackend:
    """Multi-server: numbers, edges and sessions from the locator and its database."""

    mode = "multi-server"

    def __init__(self, locator, tokens=None):
        """``tokens``: the :class:`~ct.storage.apitokens.ApiTokenStore`."""
        self.locator = locator
        self.clock = locator.clock
        self.tokens = tokens

    @defer.inlineCallbacks
    def overview(self) -> Any:
        directory = self.locator.directory
        live = [i for i in directory.edges.values() if i.link_up]
        lags = [float(i.stats["lagMs"]) for i in live if i.stats.get("lagMs") is not None]
        hosted = yield self.locator.store.sessions_started_per_bucket(0, self.clock.seconds()
                                                                     + 1, 1e12)
        states = [directory.state(i).value for i in directory.edges.values()]
        return {
            "users_online": sum(int(i.stats.get("users", 0)) for i in live),
            "sessions": sum(int(i.stats.get("sessions", 0)) for i in live),
            "connections": sum(int(i.stats.get("connections", 0)) for i in live),
            "lag_ms": sum(lags) / len(lags) if lags else None,
            "sessions_hosted": sum(n for _, n in hosted),
            "downloads": _sum_downloads(i.stats.get("downloads") for i in live),
            "edges": {s: states.count(s) for s in ("online", "suspended", "draining",
                                                   "link-lost", "unavailable")},
        }

    def history(self, since: float, until: float, bucket: float):
        return self.locator.store.query_metrics(since, until, bucket)

    def edges(self):
        return self.locator.list_edges()

    def this_edge(self):
        raise NotAvailable("the locator serves no sessions itself")

    def locators(self):
        """The locators on this database (``Cluster.describe``): one unless several share
        PostgreSQL."""
        cluster = getattr(self.locator, "cluster", None)
        return cluster.describe() if cluster is not None else []

    def suspend(self, edge_id: str, suspended: bool, by: str):
        return _action(self.locator.suspend(edge_id, suspended, by=by))

    def edge_log(self, edge_id: str):
        """A ``link.LogAnswer``: the edge's recent log lines, fetched over its link."""
        return _action(self.locator.edge_log(edge_id))

    def sessions(self):
        return self.locator.live_sessions()

    def remove_participant(self, session_id: str, pid: int, by: str):
        return _action(self.locator.remove_participant(session_id, pid, by=by))

    def end_session(self, session_id: str, by: str):
        return _action(self.locator.end_session(session_id, by=by))

    def regions(self):
        return self.locator.store.get_config("regions", {})

    def reported_regions(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for info in self.locator.directory.edges.values():
            out.setdefault(info.region, []).append(info.edge_id)
        return out

    @defer.inlineCallbacks
    def set_regions(self, value, by: str):
        from ct.locator.regions import RegionError

        try:
            yield self.locator.set_regions(value)
        except RegionError as e:
            raise ActionError(str(e)) from None
        yield self.locator.audit("config_changed", user=by,
                                 details={"key": "regions", "value": value})

    def advanced(self):
        return defer.succeed(dict(self.locator.edge_settings.get("advanced") or {}))

    def set_advanced(self, value, by: str):
        return self.locator.set_edge_setting("advanced", value, by=by)

    def integrations(self):
        return defer.succeed(self.locator.edge_settings.get("integrations"))

    def set_integrations(self, value, by: str):
        return self.locator.set_edge_setting("integrations", value, by=by)

    def audit(self, **query):
        return self.locator.store.query_audit(**query)

    def usage(self, days: int, teams: tuple[str, ...] | None = None):
        """The :class:`~ct.storage.store.UsageReport` of the last ``days`` days (SQL);
        ``teams``: of those teams' sessions only."""
        return self.locator.store.usage(days, teams=teams)

    def record(self, kind: str, user: str | None, **details):
        return self.locator.audit(kind, user=user, details=details)

    def api_tokens(self):
        if self.tokens is None:
            return defer.fail(NotAvailable())
        return self.tokens.list()

    @defer.inlineCallbacks
    def create_api_token(self, name, role, teams, by):
        from ct.storage.apitokens import TooManyTokens

        if self.tokens is None:
            raise NotAvailable()
        try:
            token, text = yield self.tokens.create(name, role, teams, by)
        except TooManyTokens as e:
            raise ActionError(str(e)) from None
        yield self.record("api_token_created", by, token=token.token_id, name=name,
                          role=role, teams=list(teams))
        return token, text

    @defer.inlineCallbacks
    def revoke_api_token(self, token_id, by):
        if self.tokens is None:
            raise NotAvailable()
        revoked = yield self.tokens.revoke(token_id)
        if not revoked:
            raise ActionError(f"no live API token {token_id}")
        yield self.record("api_token_revoked", by, token=token_id)


@defer.inlineCallbacks
def _action(d):
    from ct.locator.service import LocatorError

    try:
        result = yield d
    except LocatorError as e:
        raise ActionError(e.message) from None
    return result


class EdgeBackend:
    """Single-server: the lone edge's live state, with audit and history in memory."""

    mode = "single-server"

    def __init__(self, edge, downloads=None, audit_ring=None, history=None,
                 integrations: Integrations | None = None):
        """``integrations``: the edge's own, from its environment (shown, not editable)."""
        self.edge = edge
        self.clock = edge.clock
        self.downloads = downloads
        self.audit_ring = audit_ring
        self.history_ring = history
        self.integration_settings = integrations

    def overview(self):
        snap = self.edge.snapshot()
        return defer.succeed({
            "users_online": snap["users_online"], "sessions": snap["sessions"],
            "connections": snap["connections"], "lag_ms": snap["lag_ms"],
            "sessions_hosted": snap["sessions_hosted_total"],
            "downloads": _sum_downloads([self.downloads.counts() if self.downloads else {}]),
            "edges": None,
        })

    def history(self, since: float, until: float, bucket: float):
        if self.history_ring is None:
            return defer.succeed([])
        return defer.succeed(self.history_ring.buckets(since, until, bucket))

    def this_edge(self) -> dict[str, Any]:
        snap = self.edge.snapshot()
        return {"edge": self.edge.edge_id, "region": self.edge.config.region,
                "version": __version__, "state": "online", "suspended": False,
                "lagMs": snap["lag_ms"], "cpu": snap["cpu"],
                "connections": snap["connections"],
                "sessions": snap["sessions"], "users": snap["users_online"],
                "lastSeenAgo": 0.0}

    def edges(self):
        return defer.fail(NotAvailable())

    def locators(self):
        return []

    def suspend(self, edge_id, suspended, by):
        return defer.fail(NotAvailable())

    def edge_log(self, edge_id):
        return defer.fail(NotAvailable())  # its own log is the Logs page

    def sessions(self):
        return defer.succeed(admin.list_sessions(self.edge.relay))

    def remove_participant(self, session_id, pid, by):
        try:
            removed = admin.remove_participant(self.edge.relay, session_id, pid)
        except admin.AdminError as e:
            return defer.fail(ActionError(e.message))
        d = self.record("participant_removed", by, session=session_id, participant=pid,
                        name=removed.get("name"))
        return d.addCallback(lambda _: removed)

    def end_session(self, session_id, by):
        try:
            summary = admin.end_session(self.edge.relay, session_id)
        except admin.AdminError as e:
            return defer.fail(ActionError(e.message))
        d = self.record("session_ended_by_admin", by, session=session_id,
                        host=summary.get("host"))
        return d.addCallback(lambda _: summary)

    def regions(self):
        return defer.fail(NotAvailable())

    def reported_regions(self):
        return {self.edge.config.region: [self.edge.edge_id]}

    def set_regions(self, value, by):
        return defer.fail(NotAvailable())

    def advanced(self):
        return defer.succeed({"minClientVersion": self.edge.config.min_client_version})

    def set_advanced(self, value, by):
        before = self.edge.config.min_client_version
        self.edge.config.min_client_version = value.get("minClientVersion") or None
        return self.record("config_changed", by, key="advanced", value=value,
                           before={"minClientVersion": before})

    def integrations(self):
        settings = self.integration_settings
        return defer.succeed(None if settings is None else settings.to_json())

    def set_integrations(self, value, by):
        return defer.fail(NotAvailable())

    def api_tokens(self):
        return defer.fail(NotAvailable())

    def create_api_token(self, name, role, teams, by):
        return defer.fail(NotAvailable())

    def revoke_api_token(self, token_id, by):
        return defer.fail(NotAvailable())

    def audit(self, **query):
        query.pop("after_seq", None)
        if self.audit_ring is None:
            return defer.succeed([])
        return defer.succeed(self.audit_ring.query(**query))

    def usage(self, days: int, teams: tuple[str, ...] | None = None):
        """Usage from the in-memory audit entries and history: since this edge started,
        at most its newest AUDIT_CAPACITY entries and a week of history; ``teams``: of
        those teams' sessions only."""
        since, until = usage_window(self.clock.seconds(), days)
        entries = self.audit_ring.entries if self.audit_ring is not None else ()
        scope = None if teams is None else tuple(sorted(set(teams)))
        return defer.succeed(usage_counts(entries, self.history_ring, since, until, scope)
                             .report(since, until, scope))

    def record(self, kind: str, user: str | None, session: str | None = None, **details):
        entry = {"id": uuid.uuid4().hex, "time": self.clock.seconds(), "kind": kind,
                 "edge": self.edge.edge_id, "session": session, "user": user,
                 "details": details}
        # Through the edge's sinks, so it reaches the audit ring like the relay's entries.
        for sink in self.edge.audit_sinks:
            sink(entry)
        return defer.succeed(None)


def audit_entry_dict(e: AuditEntry) -> dict[str, Any]:
    return {"id": e.entry_id, "time": e.at, "kind": e.kind, "edge": e.edge_id,
            "session": e.session_id, "user": e.user, "details": dict(e.details)}
