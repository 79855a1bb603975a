"""Several active locators on one database: registry, heartbeats, change notifications.

Every locator writes a heartbeat row (``locators``) each :data:`HEARTBEAT_INTERVAL`
seconds; one whose heartbeat has not advanced for :data:`LOCATOR_DEAD_AFTER` seconds is
dead. On PostgreSQL the locators share one truth: whatever one of them changes (an edge's
link, report or suspension, the regions, the edge settings, a placement, a team's edge,
a dashboard log-in or log-out) it announces with ``NOTIFY`` on one channel per schema;
the others ``LISTEN`` on a dedicated txpostgres connection and re-query what the ids name
(the adbapi pool does everything else). A full re-read every :data:`RESYNC_INTERVAL`
seconds covers a notification lost while the listening connection was down. On SQLite
and MySQL/MariaDB one locator runs: a second one is refused at start-up.

Latency: the listening connection's ``SELECT 1`` (locator↔database) and a GET of every
live peer's ``/api/v1/locator/ping`` (locator↔locator) are measured continuously; above
:data:`LATENCY_WARNING_MS` the log warns, the metrics and ``/health`` show it and the
dashboard marks it.
"""

from __future__ import annotations

import json
import re
import statistics
import time
import uuid
from collections import deque
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ct.storage.cluster import ClusterStore, LocatorRecord
from ct.storage.database import Database, StorageError

_log = Logger()

HEARTBEAT_INTERVAL = 1.0
LOCATOR_DEAD_AFTER = 3.0  # a heartbeat that has not advanced for this long: dead
RESYNC_INTERVAL = 5.0  # full re-read of the shared edges and settings
PING_INTERVAL = 1.0  # locator↔database probe on the listening connection
PING_TIMEOUT = 2.0  # no answer: the listening connection is replaced
PEER_PING_INTERVAL = 5.0
PEER_PING_TIMEOUT = 2.0
LATENCY_WARNING_MS = 10.0
LATENCY_SAMPLES = 5  # the latency shown and judged is the median of the last few
LATENCY_WARNING_EVERY = 60.0  # one warning per target per this many seconds at most
FLUSH_DELAY = 0.02  # changes of this long are sent in one notification
MAX_PAYLOAD = 7000  # bytes; PostgreSQL's limit is 8000
RECONNECT_DELAYS = (0.5, 1.0, 2.0, 5.0)
STOP_TIMEOUT = 2.0  # removing this locator's row at a stop


class SecondLocatorRefused(StorageError):
    """A second locator on a database that only one locator may use (SQLite, MySQL)."""


def channel_name(schema: str | None) -> str:
    """One notification channel per schema (tests share one database, schemas apart)."""
    return ("ct_locators_" + schema)[:63] if schema else "ct_locators"


class Batch:
    """Changes waiting to be announced (pure): ids and counts, merged."""

    def __init__(self):
        self.edges: set[str] = set()
        self.config: set[str] = set()
        self.placed: dict[str, int] = {}
        self.teams: dict[str, str] = {}
        self.logins: set[str] = set()  # hashes of dashboard session ids

    def __bool__(self) -> bool:
        return bool(self.edges or self.config or self.placed or self.teams or self.logins)

    def payloads(self, sender: str, limit: int = MAX_PAYLOAD) -> list[str]:
        """JSON payloads of at most ``limit`` bytes each, carrying every change."""
        items = ([("edges", e, None) for e in sorted(self.edges)]
                 + [("config", c, None) for c in sorted(self.config)]
                 + [("placed", e, n) for e, n in sorted(self.placed.items())]
                 + [("teams", t, e) for t, e in sorted(self.teams.items())]
                 + [("logins", k, None) for k in sorted(self.logins)])
        out: list[str] = []
        current: dict[str, Any] = {"from": sender}

        def encode(message):
            return json.dumps(message, separators=(",", ":"), sort_keys=True)

        for kind, key, value in items:
            trial = _with(current, kind, key, value)
            if len(encode(trial).encode()) > limit and len(current) > 1:
                out.append(encode(current))
                trial = _with({"from": sender}, kind, key, value)
            current = trial
        if len(current) > 1:
            out.append(encode(current))
        return out


def _with(message: dict[str, Any], kind: str, key: str, value) -> dict[str, Any]:
    message = {k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v)
               for k, v in message.items()}
    if kind in ("edges", "config", "logins"):
        message.setdefault(kind, []).append(key)
    else:
        message.setdefault(kind, {})[key] = value
    return message


def parse_payload(text: str) -> dict[str, Any] | None:
    """A notification's content, or None when it is not one of ours."""
    try:
        message = json.loads(text)
    except ValueError:
        return None
    if not isinstance(message, dict) or not isinstance(message.get("from"), str):
        return None
    out: dict[str, Any] = {"from": message["from"]}
    for kind in ("edges", "config"):
        values = message.get(kind) or []
        out[kind] = [v for v in values if isinstance(v, str)] if isinstance(values, list) else []
    placed = message.get("placed") or {}
    out["placed"] = ({k: v for k, v in placed.items() if isinstance(v, int) and 0 < v <= 1000}
                     if isinstance(placed, dict) else {})
    teams = message.get("teams") or {}
    out["teams"] = ({k: v for k, v in teams.items() if isinstance(v, str)}
                    if isinstance(teams, dict) else {})
    logins = message.get("logins") or []
    out["logins"] = ([k for k in logins if isinstance(k, str) and _LOGIN_KEY.match(k)]
                     if isinstance(logins, list) else [])
    return out


_LOGIN_KEY = re.compile(r"^[0-9a-f]{64}$")


class Liveness:
    """Which locators are alive, from their heartbeat rows (pure).

    A locator is alive while its heartbeat advances: judged by this locator's clock when it
    saw the value change, so clocks of different hosts need not agree.
    """

    def __init__(self, clock, dead_after: float = LOCATOR_DEAD_AFTER):
        self.clock = clock
        self.dead_after = dead_after
        self.records: dict[str, LocatorRecord] = {}
        self._advanced: dict[str, float] = {}
        self._alive_at_last_read: set[str] = set()

    def update(self, records: list[LocatorRecord]) -> tuple[set[str], set[str]]:
        """Take a fresh read; returns (ids that came alive, ids that died) since the last."""
        before = self._alive_at_last_read
        now = self.clock.seconds()
        fresh = {}
        for record in records:
            old = self.records.get(record.locator_id)
            if old is None:
                # First sight: alive if its heartbeat is recent by its own clock.
                if now - record.heartbeat_at <= self.dead_after:
                    self._advanced[record.locator_id] = now
            elif (record.heartbeat_at != old.heartbeat_at
                  or record.instance != old.instance):
                self._advanced[record.locator_id] = now
            fresh[record.locator_id] = record
        self.records = fresh
        for gone in set(self._advanced) - set(fresh):
            del self._advanced[gone]
        after = self._alive_at_last_read = self.alive_ids()
        return after - before, before - after

    def forgive(self) -> None:
        """This locator could not read the heartbeats for a while (its database was away):
        the others get a fresh bound instead of being found dead for our outage."""
        now = self.clock.seconds()
        for locator_id in self.records:
            self._advanced[locator_id] = now

    def alive(self, locator_id: str) -> bool:
        seen = self._advanced.get(locator_id)
        return seen is not None and self.clock.seconds() - seen <= self.dead_after

    def alive_ids(self) -> set[str]:
        return {i for i in self.records if self.alive(i)}

    def holds(self, locator_id: str | None, linked_at: float | None) -> bool:
        """Does this live locator hold a link it made at ``linked_at`` (this run of it)?"""
        if locator_id is None or linked_at is None or not self.alive(locator_id):
            return False
        record = self.records[locator_id]
        return linked_at >= record.started_at - 0.001


class NotifyListener:
    """A dedicated txpostgres connection that ``LISTEN``s, sends ``NOTIFY`` and measures the
    database's latency; replaced when it breaks or stops answering."""

    def __init__(self, reactor, connect_kwargs: dict[str, Any], channel: str,
                 on_notify: Callable[[str], None], on_connected: Callable[[], None],
                 on_latency: Callable[[float | None], None]):
        self.reactor = reactor
        self.connect_kwargs = connect_kwargs
        self.channel = channel
        self.on_notify = on_notify
        self.on_connected = on_connected
        self.on_latency = on_latency
        self.conn = None
        self.up = False
        self._stopped = False
        self._failures = 0
        self._retry = None
        self._ping_in_flight = False
        self._ping = LoopingCall(self.ping)
        self._ping.clock = reactor
        self._warned = False

    def start(self) -> None:
        self._ping.start(PING_INTERVAL, now=False)
        self._connect()

    def stop(self) -> None:
        self._stopped = True
        if self._ping.running:
            self._ping.stop()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._drop()

    def _connect(self) -> None:
        self._retry = None
        if self._stopped:
            return
        conn = _quiet_connection_class()(reactor=self.reactor)
        conn.on_lost = lambda why: conn is self.conn and self._lost(why)
        self.conn = conn
        d = conn.connect(**self.connect_kwargs)
        d.addCallback(lambda _: conn.runOperation(f'LISTEN "{self.channel}"'))

        def listening(_):
            if conn is not self.conn:
                return
            conn.addNotifyObserver(self._notified)
            self.up = True
            self._failures = 0
            if self._warned:
                _log.info("locator notifications: listening again on the database")
                self._warned = False
            self.on_connected()

        d.addCallbacks(listening, self._connect_failed, errbackArgs=(conn,))

    def _connect_failed(self, failure, conn) -> None:
        if conn is not self.conn or self._stopped:
            return
        if not self._warned:
            _log.warn("locator notifications: cannot listen on the database ({error}); "
                      "retrying", error=failure.getErrorMessage().strip())
            self._warned = True
        self._drop()
        self._schedule()

    def _schedule(self) -> None:
        if self._stopped or self._retry is not None:
            return
        delay = RECONNECT_DELAYS[min(self._failures, len(RECONNECT_DELAYS) - 1)]
        self._failures += 1
        self._retry = self.reactor.callLater(delay, self._connect)

    def _drop(self) -> None:
        conn, self.conn = self.conn, None
        self.up = False
        self._ping_in_flight = False
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _lost(self, why: str) -> None:
        if self._stopped:
            return
        if self.up and not self._warned:
            _log.warn("locator notifications: database connection lost ({why}); "
                      "reconnecting", why=why)
            self._warned = True
        self._drop()
        self.on_latency(None)
        self._schedule()

    def _notified(self, notify) -> None:
        if notify.channel == self.channel:
            self.on_notify(notify.payload)

    def ping(self) -> None:
        """``SELECT 1`` on the listening connection: its round trip is the database's
        latency; no answer within :data:`PING_TIMEOUT` replaces the connection."""
        conn = self.conn
        if not self.up or conn is None or self._ping_in_flight:
            return
        self._ping_in_flight = True
        started = time.monotonic()
        timer = self.reactor.callLater(PING_TIMEOUT, self._ping_timed_out, conn)
        d = conn.runQuery("SELECT 1")

        def answered(_):
            if timer.active():
                timer.cancel()
            if conn is self.conn:
                self._ping_in_flight = False
                self.on_latency((time.monotonic() - started) * 1000.0)

        def failed(f):
            if timer.active():
                timer.cancel()
            if conn is self.conn:
                self._lost(f.getErrorMessage().strip() or f.type.__name__)

        d.addCallbacks(answered, failed)

    def _ping_timed_out(self, conn) -> None:
        if conn is self.conn:
            self._lost(f"no answer within {PING_TIMEOUT:g} s")

    def notify(self, payloads: list[str]) -> defer.Deferred:
        if not self.up or self.conn is None:
            return defer.fail(RuntimeError("not connected"))
        # One statement, so one transaction: the notifications leave together on its
        # commit. (Not txpostgres' runInteraction: when the connection breaks mid-way, its
        # failed ROLLBACK is logged as an "Unhandled Error" traceback; this just fails.)
        return self.conn.runOperation(NOTIFY_ALL, (self.channel, list(payloads)))


_QUIET = []

# Every payload of a batch in one statement (psycopg2 sends the list as an array); readers
# re-query what the ids name, so the order does not matter.
NOTIFY_ALL = "SELECT pg_notify(%s, payload) FROM unnest(%s::text[]) AS batch(payload)"


def _quiet_connection_class():
    """txpostgres' connection whose loss, noticed while reading or writing, is a call of
    ``on_lost(why)`` rather than an "Unhandled Error" traceback in the log."""
    if not _QUIET:
        from txpostgres import txpostgres

        class QuietConnection(txpostgres.Connection):
            on_lost = None

            def _guarded(self, step):
                try:
                    step(self)
                except Exception as e:
                    self.reactor.removeReader(self)
                    self.reactor.removeWriter(self)
                    if self.on_lost is not None:
                        self.reactor.callLater(0, self.on_lost, " ".join(str(e).split()))

            def doRead(self):
                self._guarded(txpostgres.Connection.doRead)

            def doWrite(self):
                self._guarded(txpostgres.Connection.doWrite)

        _QUIET.append(QuietConnection)
    return _QUIET[0]


class Cluster:
    """This locator among the others: heartbeat, liveness, notifications, latencies.

    ``handler`` (the :class:`~ct.locator.service.Locator`) gets ``shared_edges_changed(ids)``
    (None: all), ``shared_config_changed(keys)``, ``shared_placed(edge, n)`` and
    ``shared_team(team, edge)``; ``logins`` (the dashboard's
    :class:`~ct.dashboard.shared_logins.SharedSessionStore`, or None) gets
    ``changed(keys)`` (None: all).
    """

    def __init__(self, clock, db: Database, store: ClusterStore, locator_id: str,
                 relay_url: Callable[[], str | None], version: str, peer_ping=None,
                 dead_after: float = LOCATOR_DEAD_AFTER):
        self.clock = clock
        self.db = db
        self.store = store
        self.locator_id = locator_id
        self.relay_url = relay_url
        self.version = version
        self.instance = uuid.uuid4().hex[:16]
        self.started_at = clock.seconds()
        self.peer_ping = peer_ping  # callable(url) -> Deferred[latency_ms]
        self.shared = db.dialect == "postgres"
        self.liveness = Liveness(clock, dead_after)
        self.handler = None
        self.logins = None
        self.listener: NotifyListener | None = None
        self.db_latency_ms: float | None = None  # median of the last LATENCY_SAMPLES
        self.peer_latency_ms: dict[str, float] = {}
        self._samples: dict[str, deque] = {}
        self.last_heartbeat: float | None = None  # when the database last took ours
        self.notifications_sent = 0
        self.notifications_received = 0
        self._batch = Batch()
        self._flush_call = None
        self._warned_at: dict[str, float] = {}
        self._unanswered: set[str] = set()  # peers whose last ping failed (logged once)
        self._loops = []
        for interval, fn in ((HEARTBEAT_INTERVAL, self.heartbeat),
                             (RESYNC_INTERVAL, self.resync),
                             (PEER_PING_INTERVAL, self.ping_peers)):
            loop = LoopingCall(fn)
            loop.clock = clock
            self._loops.append((loop, interval))

    # -- life

    @defer.inlineCallbacks
    def start(self, listener: NotifyListener | None = None):
        """Register; refuse to be a second locator where only one may run."""
        started = time.monotonic()
        records = yield self._beat()
        if self.db_latency_ms is None:
            self.db_latency_ms = (time.monotonic() - started) * 1000.0
        others = [r for r in records if r.locator_id != self.locator_id
                  and self.liveness.alive(r.locator_id)]
        if others and not self.shared:
            yield self.store.remove_locator(self.locator_id, self.instance)
            other = others[0]
            raise SecondLocatorRefused(
                f"another locator ({other.locator_id}, {other.relay_url or 'no relay URL'}) "
                f"is running on {self.db.describe()}: several locators need PostgreSQL "
                f"(docs/locator.md, 'Several locators'); on {self.db.dialect} run one")
        for loop, interval in self._loops:  # one locator alone needs only its heartbeat
            if loop.f == self.heartbeat or self.shared:
                loop.start(interval, now=False)
        if self.shared and listener is not None:
            self.listener = listener
            listener.start()
        if others:
            _log.info("{n} other locator(s) on this database: {ids}", n=len(others),
                      ids=", ".join(sorted(r.locator_id for r in others)))

    @defer.inlineCallbacks
    def stop(self):
        for loop, _ in self._loops:
            if loop.running:
                loop.stop()
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
            self._flush_call = None
        if self.listener is not None:
            self.listener.stop()
        try:  # the others see at once that this one is gone (a rolling upgrade)
            d = self.store.remove_locator(self.locator_id, self.instance)
            d.addTimeout(STOP_TIMEOUT, self.clock)  # a database that is away delays no stop
            yield d
        except Exception as e:
            _log.debug("could not remove this locator's row: {e}", e=e)

    # -- heartbeat and liveness

    @defer.inlineCallbacks
    def _beat(self):
        peer = max(self.peer_latency_ms.values()) if self.peer_latency_ms else None
        records = yield self.store.heartbeat(
            self.locator_id, self.relay_url() or "", self.version, self.instance,
            self.started_at, self.db_latency_ms, peer)
        now = self.clock.seconds()
        if self.last_heartbeat is not None and now - self.last_heartbeat > \
                self.liveness.dead_after:
            self.liveness.forgive()
        self.last_heartbeat = now
        came, went = self.liveness.update(records)
        came.discard(self.locator_id)
        went.discard(self.locator_id)
        for locator_id in sorted(came):
            record = self.liveness.records[locator_id]
            _log.info("locator {id} ({url}, version {version}) is alive", id=locator_id,
                      url=record.relay_url or "no relay URL", version=record.version)
        for locator_id in sorted(went):
            self.peer_latency_ms.pop(locator_id, None)
            self._samples.pop(f"peer:{locator_id}", None)
            self._unanswered.discard(locator_id)
            if locator_id in self.liveness.records:
                _log.warn("locator {id} is dead (no heartbeat for {bound:g} s); edges linked "
                          "to it reconnect to another locator", id=locator_id,
                          bound=self.liveness.dead_after)
            else:
                _log.info("locator {id} stopped; edges linked to it reconnect to another "
                          "locator", id=locator_id)
        if (came or went) and self.handler is not None and self.shared:
            self.handler.shared_edges_changed(None)  # their edges are link-lost, or back
        return records

    def heartbeat(self):
        d = self._beat()
        if not self.shared:  # without a listener the heartbeat is the latency probe
            started = time.monotonic()
            d.addCallback(lambda r: self._latency((time.monotonic() - started) * 1000.0))
        d.addErrback(lambda f: None)  # DatabaseUnavailable is logged once by the database
        return d

    @property
    def database_ok(self) -> bool:
        """The database took a heartbeat recently (the shared truth is current)."""
        return (self.last_heartbeat is not None
                and self.clock.seconds() - self.last_heartbeat <= self.liveness.dead_after)

    def peers(self) -> set[str]:
        """Other live locators."""
        return self.liveness.alive_ids() - {self.locator_id}

    def holds(self, locator_id: str | None, linked_at: float | None) -> bool:
        return self.liveness.holds(locator_id, linked_at)

    def describe(self) -> list[dict[str, Any]]:
        """Every known locator, for ``/health`` and the dashboard."""
        now = self.clock.seconds()
        out = []
        for record in self.liveness.records.values():
            me = record.locator_id == self.locator_id
            db_ms = self.db_latency_ms if me else record.db_latency_ms
            peer_ms = (self.peer_latency_ms.get(record.locator_id) if not me
                       else (max(self.peer_latency_ms.values()) if self.peer_latency_ms
                             else None))
            out.append({
                "locator": record.locator_id, "url": record.relay_url,
                "version": record.version, "self": me,
                "alive": me or self.liveness.alive(record.locator_id),
                "heartbeatAgo": round(max(0.0, now - record.heartbeat_at), 3),
                "startedAt": record.started_at,
                "databaseLatencyMs": _round(db_ms), "latencyMs": _round(peer_ms),
                "slow": any(v is not None and v > LATENCY_WARNING_MS
                            for v in (db_ms, peer_ms))})
        out.sort(key=lambda d: d["locator"])
        return out

    # -- latency

    def _median(self, target: str, ms: float) -> float:
        """The median of the last few round trips: one slow answer (a busy host) is not a
        slow link."""
        samples = self._samples.setdefault(target, deque(maxlen=LATENCY_SAMPLES))
        samples.append(ms)
        return statistics.median(samples)

    def _latency(self, ms: float | None) -> None:
        if ms is None:
            self.db_latency_ms = None
            self._samples.pop("database", None)
            return
        self.db_latency_ms = ms = self._median("database", ms)
        if ms > LATENCY_WARNING_MS:
            self._slow("database", f"the database answers in {ms:.1f} ms")

    def _slow(self, target: str, what: str) -> None:
        now = self.clock.seconds()
        if now - self._warned_at.get(target, -1e18) < LATENCY_WARNING_EVERY:
            return
        self._warned_at[target] = now
        _log.warn("{what}, above {limit:g} ms: locators and their database should be close "
                  "(docs/locator.md, 'Several locators')", what=what, limit=LATENCY_WARNING_MS)

    def ping_peers(self):
        if self.peer_ping is None:
            return None
        calls = []
        for locator_id in sorted(self.peers()):
            url = self.liveness.records[locator_id].relay_url
            if not url:
                continue
            d = self.peer_ping(url)
            d.addCallbacks(self._peer_answered, self._peer_unanswered,
                           callbackArgs=(locator_id,), errbackArgs=(locator_id, url))
            calls.append(d)
        return defer.DeferredList(calls)

    def _peer_unanswered(self, failure, locator_id: str, url: str) -> None:
        """No latency for this peer; the cause is logged once until it answers again
        (through ``CT_PROXY``, it names the proxy)."""
        self.peer_latency_ms.pop(locator_id, None)
        if locator_id not in self._unanswered:
            self._unanswered.add(locator_id)
            _log.warn("locator {id} does not answer its latency ping at {url}: {why}",
                      id=locator_id, url=url, why=_why(failure))

    def _peer_answered(self, ms: float, locator_id: str) -> None:
        if locator_id in self._unanswered:
            self._unanswered.discard(locator_id)
            _log.info("locator {id} answers its latency ping again", id=locator_id)
        self.peer_latency_ms[locator_id] = ms = self._median(f"peer:{locator_id}", ms)
        if ms > LATENCY_WARNING_MS:
            self._slow(f"peer:{locator_id}", f"locator {locator_id} answers in {ms:.1f} ms")

    # -- notifications

    def announce(self, edges=(), config=(), placed: str | None = None,
                 team: tuple[str, str] | None = None, logins=()) -> None:
        """Tell the other locators (PostgreSQL only; a no-op elsewhere)."""
        if not self.shared:
            return
        self._batch.edges.update(edges)
        self._batch.config.update(config)
        self._batch.logins.update(logins)
        if placed is not None:
            self._batch.placed[placed] = self._batch.placed.get(placed, 0) + 1
        if team is not None:
            self._batch.teams[team[0]] = team[1]
        if self._batch and self._flush_call is None:
            self._flush_call = self.clock.callLater(FLUSH_DELAY, self.flush)

    def flush(self):
        self._flush_call = None
        batch, self._batch = self._batch, Batch()
        if not batch:
            return None
        # Sent even when no other locator is known yet: one that is starting may have
        # read everything just before this change, and learns of it only this way.
        payloads = batch.payloads(self.locator_id)
        if self.listener is not None and self.listener.up:
            d = self.listener.notify(payloads)
        else:
            d = self.store.notify(channel_name(self.db.config.pg_schema), payloads)
        self.notifications_sent += len(payloads)
        d.addErrback(lambda f: _log.debug("notification lost ({e}); the others re-read "
                                          "within {s} s", e=f.getErrorMessage(),
                                          s=RESYNC_INTERVAL))
        return d

    def received(self, payload: str) -> None:
        message = parse_payload(payload)
        if message is None or message["from"] == self.locator_id:
            return
        self.notifications_received += 1
        if message["logins"] and self.logins is not None:
            self.logins.changed(message["logins"])
        handler = self.handler
        if handler is None:
            return
        for edge_id, n in message["placed"].items():
            handler.shared_placed(edge_id, n)
        for team, edge_id in message["teams"].items():
            handler.shared_team(team, edge_id)
        if message["edges"]:
            handler.shared_edges_changed(message["edges"])
        if message["config"]:
            handler.shared_config_changed(message["config"])

    def resync(self):
        """Re-read everything (the net under lost notifications)."""
        if self.peers_ever():
            self._reread_all()

    def peers_ever(self) -> bool:
        return any(i != self.locator_id for i in self.liveness.records)

    def listener_connected(self) -> None:
        """(Re)listening: what was announced meanwhile is unknown, re-read it all."""
        self._reread_all()

    def _reread_all(self) -> None:
        if self.handler is not None:
            self.handler.shared_edges_changed(None)
            self.handler.shared_config_changed(None)
        if self.logins is not None:
            self.logins.changed(None)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def make_listener(reactor, cluster: Cluster) -> NotifyListener:
    """The txpostgres listener for ``cluster`` (PostgreSQL), with the pool's connection
    arguments."""
    _, kwargs = cluster.db.engine.connect_args()
    return NotifyListener(reactor, dict(kwargs), channel_name(cluster.db.config.pg_schema),
                          cluster.received, cluster.listener_connected, cluster._latency)


def _why(failure) -> str:
    """One line for a failed ping: the exception's message, else its type."""
    message = failure.getErrorMessage()
    name = failure.type.__name__ if failure.type is not None else "error"
    return message if message and message != name else name


def peer_pinger(reactor, agent, timeout: float = PEER_PING_TIMEOUT):
    """A callable ``(relay_url) -> Deferred[ms]``: the round trip of a GET of the peer's
    ``/api/v1/locator/ping``."""
    from twisted.web.client import readBody

    @defer.inlineCallbacks
    def ping(url: str):
        started = time.monotonic()
        d = agent.request(b"GET", (url.rstrip("/") + "/api/v1/locator/ping").encode())
        d.addTimeout(timeout, reactor)
        response = yield d
        yield readBody(response)
        if response.code != 200:
            raise RuntimeError(f"HTTP {response.code}")
        return (time.monotonic() - started) * 1000.0

    return ping
