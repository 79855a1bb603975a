"""The locator as one object: edge directory, placement, session directory and storage.

The database is the truth for what must survive a restart (suspensions, the session
directory, team assignments, audit, metrics, configuration); the in-memory
:class:`EdgeDirectory` holds what only matters while edges are connected (links, fresh
load figures). Adapters (``link.py`` for edges, ``api.py`` for clients and operators)
call the methods here.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections import OrderedDict
from typing import Any

from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ct.common.logthrottle import LogThrottle
from ct.locator.edges import EdgeDirectory, EdgeInfo
from ct.locator.placement import EdgeState, assign_team, pick_edge, route_join
from ct.locator.regions import RegionResolver, resolver_from_config
from ct.protocol import link
from ct.protocol.errors import ProtocolError
from ct.storage.database import DATABASE_RETRY_AFTER, DatabaseUnavailable
from ct.storage.store import (
    CONFIG_ADVANCED,
    CONFIG_INTEGRATIONS,
    AuditEntry,
    LocatorStore,
    MetricSnapshot,
)

_log = Logger()

CHECK_INTERVAL = 1.0
HEALTH_PROBE_INTERVAL = 2.0  # between probe starts of one link-lost edge
HEALTH_PROBE_TIMEOUT = 2.0  # a hung edge's /health fails after this
PLACEMENT_WARNING_INTERVAL = 10.0  # at most one "placements refused" warning per this
EDGE_REQUEST_TIMEOUT = 5.0  # an edge answers administrator requests within this
MAX_RECENT_TEAMS = 10000  # teams looked up but not yet reported by an edge


class RecentTeams:
    """Edges picked for teams no edge has reported yet (pure; least recently used out).

    Bounded, so that lookups of made-up team names cost a fixed amount of memory and
    nothing in the database.
    """

    def __init__(self, limit: int = MAX_RECENT_TEAMS):
        self.limit = limit
        self._edges: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._edges)

    def get(self, team: str) -> str | None:
        edge_id = self._edges.get(team)
        if edge_id is not None:
            self._edges.move_to_end(team)
        return edge_id

    def put(self, team: str, edge_id: str) -> None:
        self._edges[team] = edge_id
        self._edges.move_to_end(team)
        while len(self._edges) > self.limit:
            self._edges.popitem(last=False)


def _shared_entry_id(prefix: str, kind: str, edge_id: str, at: float) -> str:
    """The same audit entry id on every locator that records one event of an edge (the
    store keeps an id once)."""
    key = f"{kind}\0{edge_id}\0{at:.3f}".encode()
    return prefix + hashlib.sha256(key).hexdigest()[:40]


class LocatorError(Exception):
    """A client request the locator cannot satisfy; ``status`` is the HTTP status."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class RateLimited(LocatorError):
    """429: the client address placed too many sessions; retry after ``retry_after`` s."""

    def __init__(self, retry_after: float):
        super().__init__(429, "rate-limited", "too many new sessions from this address; "
                         f"retry in {math.ceil(retry_after)} s")
        self.retry_after = math.ceil(retry_after)


class SharedTruthLost(LocatorError):
    """503: several locators share the database and this one cannot reach it, so it cannot
    see the others' placements and edges; the client retries (another locator)."""

    def __init__(self):
        super().__init__(503, "database-unavailable", "this locator cannot reach the "
                         "database it shares with the other locators, so it places no "
                         f"session; retry in {DATABASE_RETRY_AFTER} s (or through another "
                         "locator)")
        self.retry_after = DATABASE_RETRY_AFTER


class Locator:
    def __init__(self, clock, store: LocatorStore, directory: EdgeDirectory,
                 edge_secret: str | None, resolver: RegionResolver | None = None,
                 health_check=None, reader=None, placement_limiter=None, cluster=None):
        self.clock = clock
        self.cluster = cluster  # a ct.locator.cluster.Cluster, or None (tests)
        if cluster is not None:
            cluster.handler = self
        self._refreshing: defer.Deferred | None = None
        self._refresh_next: set[str] | None = set()  # ids to re-read after this one; None: all
        self._refresh_again = False
        self.store = store
        self.directory = directory
        self.edge_secret = edge_secret
        self.resolver = resolver or RegionResolver(resolver_from_config({}).table)
        self.health_check = health_check  # callable(url) -> Deferred[bool]
        self.geo_reader = reader
        self.placements = {"session": 0, "presence": 0}
        self.placement_failures = 0
        self.placement_limiter = placement_limiter  # a KeyedLimiter per client address
        self.placements_refused = 0
        self._refusal_log = LogThrottle(_log, clock, 1, PLACEMENT_WARNING_INTERVAL,
                                        "placement refusals")
        self.records_stored = 0
        self._states: dict[str, EdgeState] = {}
        self.edge_settings: dict[str, Any] = {}  # advanced + integrations, pushed to edges
        self._requests = 0
        self._pending: dict[int, defer.Deferred] = {}
        self.recent_teams = RecentTeams()
        self._health_failing = False
        self._checker = LoopingCall(self.check_edges)
        self._checker.clock = clock
        self._prober = LoopingCall(self.probe_lost_edges)
        self._prober.clock = clock

    def start(self) -> defer.Deferred:
        self._checker.start(CHECK_INTERVAL, now=False)
        self._prober.start(CHECK_INTERVAL, now=False)
        d = self.load_regions()
        d.addCallback(lambda _: self.load_edge_settings())
        return d

    def stop(self) -> None:
        for loop in (self._checker, self._prober):
            if loop.running:
                loop.stop()
        for info in self.directory.edges.values():
            if info.link is not None:
                info.link.transport.loseConnection()

    @defer.inlineCallbacks
    def load_regions(self):
        value = yield self.store.get_config("regions", {})
        self.resolver = resolver_from_config(value, self.geo_reader)

    @defer.inlineCallbacks
    def set_regions(self, value: Any):
        resolver = resolver_from_config(value, self.geo_reader)  # raises on a bad table
        yield self.store.set_config("regions", value)
        self.resolver = resolver
        self._announce(config=["regions"])

    # ------------------------------------------------------------ several locators

    @property
    def _shared(self) -> bool:
        return self.cluster is not None and self.cluster.shared

    def _announce(self, **changes) -> None:
        if self._shared:
            self.cluster.announce(**changes)

    def shared_edges_changed(self, edge_ids) -> defer.Deferred:
        """Another locator changed these edges (None: re-read all): re-query, one read at
        a time (ids that arrive meanwhile are merged into the next read)."""
        if self._refreshing is not None:
            if edge_ids is None or self._refresh_next is None:
                self._refresh_next = None
            else:
                self._refresh_next.update(edge_ids)
            self._refresh_again = True
            return self._refreshing
        d = self._refreshing = self._refresh_edges(None if edge_ids is None else set(edge_ids))

        def done(result):
            self._refreshing = None
            if self._refresh_again:
                ids, self._refresh_next, self._refresh_again = self._refresh_next, set(), False
                self.shared_edges_changed(ids)
            return result

        d.addBoth(done)
        return d

    @defer.inlineCallbacks
    def _refresh_edges(self, edge_ids):
        try:
            rows = yield self.cluster.store.shared_edges(edge_ids)
        except Exception as e:
            _log.debug("re-reading shared edges failed: {e}", e=e)
            return
        me = self.cluster.locator_id
        for row in rows:
            alive = row.owner != me and self.cluster.holds(row.owner, row.linked_at)
            if self.directory.shared(row, alive):
                info = self.directory.edges[row.edge_id]
                if info.link is not None:  # the suspension was set through another locator
                    info.link.send_json(link.suspend(info.suspended))

    @defer.inlineCallbacks
    def shared_config_changed(self, keys):
        """Another locator changed these configuration keys (None: re-read all)."""
        keys = None if keys is None else set(keys)
        try:
            if keys is None or "regions" in keys:
                yield self.load_regions()
            if keys is None or keys & {CONFIG_ADVANCED, CONFIG_INTEGRATIONS}:
                before = dict(self.edge_settings)
                yield self.load_edge_settings()
                if self.edge_settings != before:
                    self._push_config()
        except Exception as e:
            _log.debug("re-reading shared configuration failed: {e}", e=e)

    def shared_placed(self, edge_id: str, count: int) -> None:
        """Another locator placed ``count`` sessions on ``edge_id``: weigh them here too."""
        for _ in range(count):
            self.directory.placed(edge_id)

    def shared_team(self, team: str, edge_id: str) -> None:
        """Another locator picked ``edge_id`` for a team no edge has reported yet."""
        self.recent_teams.put(team, edge_id)

    # ------------------------------------------------------------ client API

    def place_session(self, client_ip: str) -> dict[str, Any]:
        """The edge a new session should be hosted on (rate-limited per client address)."""
        if self.placement_limiter is not None:
            wait = self.placement_limiter.take(client_ip)
            if wait > 0:
                self._placement_refused(client_ip)
                raise RateLimited(wait)
        if self._shared and self.cluster.peers_ever() and not self.cluster.database_ok:
            self.placement_failures += 1
            raise SharedTruthLost()
        region = self.resolver.region_for(client_ip)
        placement = pick_edge(self.directory.snapshots(), region)
        if placement is None:
            self.placement_failures += 1
            raise LocatorError(503, "no-edge", "no edge can take a new session right now")
        self.placements["session"] += 1
        info = self.directory.edges[placement.edge_id]
        # Count the session now: reports come every few seconds, and a burst of
        # placements must not all land on the edge that looked emptiest at the last one.
        self.directory.placed(info.edge_id)
        self._announce(placed=info.edge_id)
        return {"edge": info.edge_id, "server": info.url, "region": info.region,
                "state": placement.state.value, "inRegion": placement.in_region}

    def _placement_refused(self, client_ip: str) -> None:
        """Count a refused placement; one warning per PLACEMENT_WARNING_INTERVAL at most (the
        next one says how many were not logged)."""
        self.placements_refused += 1
        self._refusal_log.warn("new sessions refused (429) for too many placements from one "
                               "address, the latest from {ip}", ip=client_ip)

    @defer.inlineCallbacks
    def find_session(self, session_id: str):
        """The edge of an existing session (for joiners)."""
        record = yield self.store.get_session(session_id)
        if record is None or not record.active:
            raise LocatorError(404, "not-found", f"no active session {session_id!r}")
        edge_id = route_join(record.edge_id, self.directory.snapshots())
        if edge_id is None:
            raise LocatorError(410, "edge-unavailable", "the session's edge is unavailable; "
                               "the host has to start a new session")
        info = self.directory.edges[edge_id]
        return {"edge": edge_id, "server": info.url, "session": session_id,
                "state": self.directory.state(info).value}

    @defer.inlineCallbacks
    def team_edge(self, team: str, client_ip: str):
        """The edge that hosts ``team``'s presence; (re)assigned when needed.

        A lookup writes nothing to the database (anyone may ask, for any name): a team
        edges told us about (their registration lists their teams) is stored; the edge
        picked for any other team is kept in :class:`RecentTeams`, bounded, so that the
        team's members who ask next meet on the same edge.
        """
        stored = yield self.store.get_team_edge(team)
        current = stored if stored is not None else self.recent_teams.get(team)
        region = self.resolver.region_for(client_ip)
        placement = assign_team(current, self.directory.snapshots(), region)
        if placement is None:
            self.placement_failures += 1
            raise LocatorError(503, "no-edge", "no edge can host team presence right now")
        if placement.edge_id != current:
            self.placements["presence"] += 1
            if stored is not None:  # a known team moves (its edge became unavailable)
                yield self.store.assign_team(team, placement.edge_id)
                _log.info("team {team} presence moved to edge {edge}", team=team,
                          edge=placement.edge_id)
        if stored is None:
            if self.recent_teams.get(team) != placement.edge_id:
                self._announce(team=(team, placement.edge_id))
            self.recent_teams.put(team, placement.edge_id)
        info = self.directory.edges[placement.edge_id]
        return {"edge": info.edge_id, "server": info.url, "team": team}

    # ------------------------------------------------------------ operations

    @defer.inlineCallbacks
    def suspend(self, edge_id: str, suspended: bool, by: str | None = None):
        known = yield self.store.set_suspended(edge_id, suspended)
        if not known:
            raise LocatorError(404, "not-found", f"no edge {edge_id!r}")
        info = self.directory.edges.get(edge_id)
        if info is not None:
            info.suspended = suspended
            if info.link is not None:
                info.link.send_json(link.suspend(suspended))
        self._announce(edges=[edge_id])  # its locator tells the edge
        kind = "edge_suspended" if suspended else "edge_resumed"
        _log.info("edge {edge} {what} by {by}", edge=edge_id,
                  what="suspended" if suspended else "resumed", by=by or "operator")
        yield self.audit(kind, edge_id=edge_id, user=by)
        return {"edge": edge_id, "suspended": suspended}

    @defer.inlineCallbacks
    def list_edges(self):
        records = yield self.store.list_edges()
        out = []
        for record in records:
            info = self.directory.edges.get(record.edge_id)
            if info is not None:
                described = self.directory.describe(info)
                if info.link is not None and self.cluster is not None:
                    described["locator"] = self.cluster.locator_id
                out.append(described)
            else:
                out.append({"edge": record.edge_id, "url": record.public_url,
                            "region": record.region, "version": record.version,
                            "state": EdgeState.UNAVAILABLE.value,
                            "suspended": record.suspended, "linkUp": False,
                            "lastReport": record.last_seen})
        return out

    def audit(self, kind: str, entry_id: str | None = None, **fields) -> defer.Deferred:
        entry = AuditEntry(entry_id or uuid.uuid4().hex, self.clock.seconds(), kind, **fields)
        return self.store.insert_audit_batch([entry])

    def _unavailable_id(self, info: EdgeInfo) -> str | None:
        """Several locators flag the same edge: one audit entry per link of the edge."""
        if not self._shared or info.linked_at is None:
            return None
        return _shared_entry_id("u-", "edge_unavailable", info.edge_id, info.linked_at)

    # ------------------------------------------------------------ administrator actions

    @defer.inlineCallbacks
    def load_edge_settings(self):
        self.edge_settings = {
            "advanced": (yield self.store.get_config(CONFIG_ADVANCED, {})),
            "integrations": (yield self.store.get_config(CONFIG_INTEGRATIONS, None))}

    def config_message(self) -> dict[str, Any]:
        """What every edge is told on registration and after each change."""
        return link.config(self.edge_settings)

    @defer.inlineCallbacks
    def set_edge_setting(self, key: str, value: Any, by: str | None = None):
        """Store ``advanced`` or ``integrations`` and push the new settings to every edge."""
        name = {"advanced": CONFIG_ADVANCED, "integrations": CONFIG_INTEGRATIONS}[key]
        yield self.store.set_config(name, value)
        self.edge_settings[key] = value
        self._push_config()
        self._announce(config=[name])
        _log.info("{key} settings changed by {by}: {value!r}", key=key, by=by or "operator",
                  value=value)
        yield self.audit("config_changed", user=by, details={"key": name, "value": value})

    def _push_config(self) -> None:
        message = self.config_message()
        for info in self.directory.edges.values():
            if info.link is not None:
                info.link.send_json(message)

    def ask_edge(self, edge_id: str, message: dict[str, Any],
                 timeout: float = EDGE_REQUEST_TIMEOUT) -> defer.Deferred:
        """Send a request over an edge's link; fires with its answer (a dict)."""
        info = self.directory.edges.get(edge_id)
        if info is None or info.link is None:
            return defer.fail(LocatorError(503, "edge-unavailable",
                                           f"edge {edge_id!r} is not connected"))
        self._requests += 1
        n = self._requests
        d = defer.Deferred()
        self._pending[n] = d
        info.link.send_json({**message, "request": n})

        def forget(result):
            self._pending.pop(n, None)
            return result

        def timed_out(failure):
            failure.trap(defer.TimeoutError)
            raise LocatorError(504, "edge-timeout", f"edge {edge_id!r} did not answer")

        d.addTimeout(timeout, self.clock)
        d.addBoth(forget)
        d.addErrback(timed_out)
        return d

    def edge_answered(self, request: int, message: dict[str, Any]) -> None:
        d = self._pending.pop(request, None)
        if d is not None and not d.called:
            d.callback(message)

    @defer.inlineCallbacks
    def live_sessions(self):
        """Active sessions with their participants, asked of every connected edge."""
        records = yield self.store.list_sessions(active_only=True, limit=1000)
        edges = sorted({r.edge_id for r in records} |
                       {e for e, i in self.directory.edges.items() if i.link is not None})
        answers = yield defer.DeferredList(
            [self.ask_edge(e, link.list_sessions()) for e in edges], consumeErrors=True)
        live: dict[str, dict[str, Any]] = {}
        unreachable = set()
        for edge_id, (ok, answer) in zip(edges, answers):
            if not ok:
                unreachable.add(edge_id)
                continue
            for s in answer.get("sessions") or []:
                live[s["session"]] = {**s, "edge": edge_id}
        out = list(live.values())
        for r in records:
            if r.session_id not in live and r.edge_id in unreachable:
                out.append({"session": r.session_id, "edge": r.edge_id, "team": r.team,
                            "started": r.started_at, "participants": None})
        out.sort(key=lambda s: s.get("started") or 0)
        return out

    @defer.inlineCallbacks
    def edge_log(self, edge_id: str, lines: int = link.DEFAULT_LOG_LINES):
        """The recent lines of an edge's log (a ``link.LogAnswer``), asked over its link."""
        answer = yield self.ask_edge(edge_id, link.log_lines(lines))
        if answer.get("type") != link.LOG:
            raise LocatorError(409, str(answer.get("error") or "failed")[:64],
                               str(answer.get("message") or "the edge sent no log")[:200])
        try:
            return link.LogAnswer.from_json(answer)
        except ProtocolError as e:
            _log.warn("edge {edge}: bad answer to log-lines: {error}", edge=edge_id,
                      error=e.message)
            raise LocatorError(502, "bad-answer", f"edge {edge_id!r} sent a log this locator "
                               "does not take (see its log)") from None

    @defer.inlineCallbacks
    def _session_edge(self, session_id: str) -> Any:
        record = yield self.store.get_session(session_id)
        if record is None or not record.active:
            raise LocatorError(404, "not-found", f"no active session {session_id!r}")
        return record.edge_id

    @defer.inlineCallbacks
    def remove_participant(self, session_id: str, participant: int, by: str | None = None):
        edge_id = yield self._session_edge(session_id)
        answer = yield self.ask_edge(edge_id, link.remove_participant(session_id, participant))
        if not answer.get("ok"):
            raise LocatorError(404 if answer.get("error") == "not-found" else 409,
                               answer.get("error") or "failed", answer.get("message") or "")
        removed = answer.get("participant") or {}
        _log.info("participant {name} (#{pid}) removed from session {sid} by {by}",
                  name=removed.get("name"), pid=participant, sid=session_id,
                  by=by or "operator")
        yield self.audit("participant_removed", edge_id=edge_id, session_id=session_id,
                         user=by, details={"participant": participant,
                                           "name": removed.get("name")})
        return {"session": session_id, "participant": removed}

    @defer.inlineCallbacks
    def end_session(self, session_id: str, by: str | None = None):
        edge_id = yield self._session_edge(session_id)
        answer = yield self.ask_edge(edge_id, link.end_session(session_id))
        if not answer.get("ok"):
            raise LocatorError(404 if answer.get("error") == "not-found" else 409,
                               answer.get("error") or "failed", answer.get("message") or "")
        _log.info("session {sid} ended by {by}", sid=session_id, by=by or "operator")
        yield self.audit("session_ended_by_admin", edge_id=edge_id, session_id=session_id,
                         user=by, details={"host": (answer.get("summary") or {}).get("host")})
        return {"session": session_id, "ended": True}

    # ------------------------------------------------------------ edge link

    @defer.inlineCallbacks
    def edge_registered(self, link_protocol, hello: link.Register):
        """Record a (re)connected edge; the directory sees it only once all is stored."""
        edge_id = hello.edge
        edge = yield self.store.register_edge(edge_id, hello.url, hello.region, hello.version)
        # Reconcile the session directory with what the edge says it runs.
        running = {s.session: s for s in hello.sessions}
        known = yield self.store.list_sessions(active_only=True, edge_id=edge_id, limit=10000)
        for session in known:
            if session.session_id not in running:
                yield self.store.session_ended(session.session_id, edge_id)
        for sid, s in running.items():
            yield self.store.session_started(sid, edge_id, s.team, s.started)
        for team in hello.teams:
            current = yield self.store.get_team_edge(team)
            if current is None:
                yield self.store.assign_team(team, edge_id)
        linked_at = None
        if self._shared:  # the others see the link (and place on the edge) from now
            linked_at = round(self.clock.seconds(), 3)
            yield self.cluster.store.link_edge(edge_id, self.cluster.locator_id, linked_at,
                                               hello.draining)
        info = self.directory.connected(edge_id, hello.url, hello.region, hello.version,
                                        link_protocol, edge.suspended, hello.max_connections,
                                        hello.draining)
        info.linked_at = linked_at
        if hello.draining is not None:  # relinked while stopping (its locator went away)
            yield self._audit_draining(info, hello.draining)
        self._states[edge_id] = self.directory.state(info)
        self._announce(edges=[edge_id])
        _log.info("edge {edge} connected ({url}, region {region}, version {version}, "
                  "{n} sessions{suspended})", edge=edge_id, url=hello.url,
                  region=hello.region, version=hello.version, n=len(running),
                  suspended=", suspended" if edge.suspended else "")
        return info

    def edge_reported(self, info: EdgeInfo, report: link.Report) -> defer.Deferred:
        hosted_before = info.stats.get("sessionsHosted")
        self.directory.reported(info.edge_id, report.to_json())
        d = self.store.update_edge_stats(info.edge_id, report.cpu, report.lag_ms,
                                         report.connections, report.sessions, report.users)
        if self._shared:
            hosted = info.stats.get("sessionsHosted")
            if isinstance(hosted, int) and hosted != hosted_before:
                d.addCallback(lambda _: self.cluster.store.set_hosted(info.edge_id, hosted))
            d.addCallback(lambda _: self._announce(edges=[info.edge_id]))
        return d

    @defer.inlineCallbacks
    def edge_draining(self, info: EdgeInfo, draining: link.Draining):
        """The edge is stopping: place nothing there from now (the other locators too)."""
        if not self.directory.set_draining(info.edge_id, draining):
            return
        self._states[info.edge_id] = self.directory.state(info)
        _log.info("edge {edge} is stopping: no new sessions or teams go there, joins to its "
                  "sessions still do for up to {left:.0f} s", edge=info.edge_id,
                  left=max(0.0, draining.until - draining.since))
        if self._shared and info.linked_at is not None:
            yield self.cluster.store.set_draining(info.edge_id, self.cluster.locator_id,
                                                  info.linked_at, draining)
            self._announce(edges=[info.edge_id])
        yield self._audit_draining(info, draining)

    def _audit_draining(self, info: EdgeInfo, draining: link.Draining) -> defer.Deferred:
        """One ``edge_draining`` entry per drain, whichever locators the edge tells."""
        return self.audit("edge_draining", edge_id=info.edge_id,
                          entry_id=_shared_entry_id("d-", "edge_draining", info.edge_id,
                                                    draining.since),
                          details={"until": draining.until, "since": draining.since})

    def edge_disconnected(self, info: EdgeInfo, link, clean: bool = False) -> None:
        draining = info.draining if info.link is link else None
        if self.directory.disconnected(info.edge_id, link) is not None:
            if self._shared and info.linked_at is not None:
                d = self.cluster.store.unlink_edge(info.edge_id, self.cluster.locator_id,
                                                   info.linked_at)
                d.addCallback(lambda _: self._announce(edges=[info.edge_id]))
                d.addErrback(lambda f: _log.debug("recording the link loss failed: {e}",
                                                  e=f.getErrorMessage()))
            if draining is not None and clean:
                _log.info("edge {edge} closed its link as it stopped after draining",
                          edge=info.edge_id)
            else:
                _log.warn("edge {edge}: link lost; no new sessions go there, joins still do "
                          "for up to {grace} s while it answers /health", edge=info.edge_id,
                          grace=self.directory.link_grace)
            self.probe_lost_edges()

    def session_updated(self, info: EdgeInfo, update: link.SessionUpdate) -> defer.Deferred:
        """A session started or ended on an edge since it registered."""
        if update.ended is None:
            return self.store.session_started(update.session, info.edge_id, update.team,
                                              update.started)
        return self.store.session_ended(update.session, info.edge_id, update.ended)

    @defer.inlineCallbacks
    def store_records(self, info: EdgeInfo, records: link.Records):
        """Store a batch of audit entries and metric snapshots exactly once; fires with
        (stored, rejected): records stored before (same ids) count as neither."""
        audit = [self._audit_entry(info, raw) for raw in records.audit]
        metrics = [self._metric_snapshot(info, raw) for raw in records.metrics]
        rejected = audit.count(None) + metrics.count(None)
        stored = yield self.store.insert_audit_batch([a for a in audit if a is not None])
        yield self.store.insert_metrics_batch([m for m in metrics if m is not None])
        self.records_stored += stored
        return stored, rejected

    def _audit_entry(self, info: EdgeInfo, raw: Any) -> AuditEntry | None:
        try:
            record = link.AuditRecord.from_json(raw)
            return AuditEntry(entry_id=record.id, at=record.time, kind=record.kind,
                              edge_id=info.edge_id, session_id=record.session,
                              user=record.user, details=record.details)
        except (ProtocolError, ValueError) as e:
            _log.warn("edge {edge}: audit entry rejected ({error}): {raw!r}",
                      edge=info.edge_id, error=e, raw=raw)
            return None

    def _metric_snapshot(self, info: EdgeInfo, raw: Any) -> MetricSnapshot | None:
        try:
            record = link.MetricRecord.from_json(raw)
            return MetricSnapshot(
                snapshot_id=record.id, edge_id=info.edge_id, at=record.time,
                users_online=record.users_online, sessions=record.sessions,
                connections=record.connections, lag_ms=record.lag_ms,
                sessions_hosted_total=record.sessions_hosted_total,
                downloads_total=record.downloads_total,
                av_participants=record.av_participants, av_calls=record.av_calls,
                av_relayed=record.av_relayed, av_direct=record.av_direct)
        except (ProtocolError, ValueError) as e:
            _log.warn("edge {edge}: metric snapshot rejected ({error})",
                      edge=info.edge_id, error=e)
            return None

    # ------------------------------------------------------------ liveness

    @defer.inlineCallbacks
    def check_edges(self):
        """Act on state changes: an edge that became unavailable loses teams and sessions."""
        for info in list(self.directory.edges.values()):
            state = self.directory.state(info)
            before = self._states.get(info.edge_id)
            if state == before:
                continue
            self._states[info.edge_id] = state
            if state == EdgeState.UNAVAILABLE:
                _log.warn("edge {edge} is unavailable: its team presence moves, its sessions "
                          "are over, new sessions go elsewhere", edge=info.edge_id)
                try:
                    yield self.store.unassign_edge_teams(info.edge_id)
                    yield self.store.end_sessions_on_edge(info.edge_id)
                    yield self.audit("edge_unavailable", edge_id=info.edge_id,
                                     entry_id=self._unavailable_id(info))
                except Exception:
                    _log.failure("could not record edge {edge} as unavailable", edge=info.edge_id)
                    self._states[info.edge_id] = before  # try again on the next check
            elif before is not None:
                _log.info("edge {edge} is now {state}", edge=info.edge_id, state=state.value)

    def probe_lost_edges(self) -> None:
        """Start a ``/health`` probe of every link-lost edge that is due one, concurrently."""
        if self.health_check is None:
            return
        for info in self.directory.probes_due(HEALTH_PROBE_INTERVAL):
            lost_at = self.directory.probe_started(info)
            d = defer.maybeDeferred(self.health_check, info.url)
            d.addErrback(lambda _: False)
            d.addCallback(self._probed, info.edge_id, lost_at)

    def _probed(self, ok: bool, edge_id: str, lost_at: float | None) -> None:
        self.directory.health_result(edge_id, ok, lost_at)
        self.probe_lost_edges()  # a probe that timed out is followed at once by the next

    @defer.inlineCallbacks
    def health(self, timeout: float = 3.0):
        """(healthy, checks): the database must answer; edges are reported, not required.

        ``checks`` says only ``ok`` or ``failing`` (``/health`` needs no credentials); why
        it fails goes to the log, once per outage.
        """
        checks = {}
        healthy = True
        try:
            d = self.store.db.runInteraction("health", _ping)
            d.addTimeout(timeout, self.clock)
            yield d
            checks["database"] = "ok"
            if self._health_failing:
                self._health_failing = False
                _log.info("health check: the database answers again")
        except Exception as e:
            healthy = False
            checks["database"] = "failing"
            # The database logs its own outages (DatabaseUnavailable) once; say why only
            # for the rest (a time-out, a refused query), once until it answers again.
            if not isinstance(e, DatabaseUnavailable) and not self._health_failing:
                self._health_failing = True
                _log.warn("health check: the database is failing: {error}",
                          error=f"{e.__class__.__name__}: {e}")
        return healthy, checks

    @defer.inlineCallbacks
    def prune(self, audit_days: float, metrics_days: float):
        """Delete audit entries and metric snapshots older than their retention (0: keep)."""
        now = self.clock.seconds()
        removed = {"audit": 0, "metrics": 0}
        if audit_days > 0:
            removed["audit"] = yield self.store.prune_audit(now - audit_days * 86400)
        if metrics_days > 0:
            removed["metrics"] = yield self.store.prune_metrics(now - metrics_days * 86400)
        if removed["audit"] or removed["metrics"]:
            _log.info("retention: deleted {audit} audit entries and {metrics} metric snapshots",
                      **removed)
        return removed

    def snapshot(self) -> dict[str, Any]:
        states = [self.directory.state(i).value for i in self.directory.edges.values()]
        return {"edges": len(states), "edges_online": states.count("online"),
                "edges_suspended": states.count("suspended"),
                "edges_draining": states.count("draining"),
                "edges_unavailable": states.count("unavailable"),
                "placements": dict(self.placements),
                "placement_failures_total": self.placement_failures,
                "placements_refused_total": self.placements_refused,
                "records_stored_total": self.records_stored,
                **(self._cluster_numbers() if self.cluster is not None else {})}

    def _cluster_numbers(self) -> dict[str, Any]:
        cluster = self.cluster
        peers = cluster.peer_latency_ms
        db_ms = cluster.db_latency_ms
        return {"locators_alive": len(cluster.peers()) + 1,
                "database_latency_seconds": None if db_ms is None else db_ms / 1000.0,
                "peer_latency_seconds": max(peers.values()) / 1000.0 if peers else None}


def _ping(txn):
    txn.execute("SELECT 1")
    return txn.fetchone()
