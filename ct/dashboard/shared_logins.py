"""Dashboard log-ins shared by the locators of one PostgreSQL database (``docs/locator.md``,
"Several locators").

Every log-in is a row of ``dashboard_logins`` (:mod:`ct.storage.logins`; the cookie's hash,
never the cookie). Each locator keeps them all in memory, so the guard's look-up stays
synchronous, and keeps that copy current the way the locators share everything else: a
log-in, a log-out or an eviction is announced with ``NOTIFY`` (ids only), the others
re-read those rows, and a full re-read every few seconds (the cluster's resync) covers a
lost notification. A cookie this locator does not know (its log-in is newer than the last
notification) is looked for once in the database before the page answers.

Last uses are written in batches every :data:`USED_FLUSH_INTERVAL` seconds, so a log-in
active on one locator does not expire on another. Reads run one at a time, in order: a
slow read cannot bring back a log-in that a later one saw ended.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Callable, Iterable

from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ct.common.ratelimit import TokenBucket
from ct.dashboard.auth import (MAX_SESSIONS, SESSION_IDLE, SESSION_LIFETIME, LoginSession,
                               SessionStore)
from ct.storage.logins import LoginRow, LoginStore, login_key

_log = Logger()

USED_FLUSH_INTERVAL = 30.0  # last uses reach the database this often (the idle bound)
STORE_WAIT = 5.0  # a log-in or log-out answers after at most this long without the database
UNKNOWN_FORGET = 60.0  # a cookie looked for and not found is not looked for again for this
MAX_UNKNOWN = 10000
LOOKUP_RATE = 20.0  # database look-ups of unknown cookies per second (and a burst of)
LOOKUP_BURST = 50
_SID = re.compile(r"^[A-Za-z0-9_-]{43}$")  # what SessionStore.token(32) makes


class SharedSessionStore(SessionStore):
    """A :class:`SessionStore` whose log-ins live in the database and in every locator.

    ``announce(keys)`` tells the other locators which log-ins changed; they call
    :meth:`changed` with those keys (None: re-read all).
    """

    def __init__(self, clock, store: LoginStore, announce: Callable[[list[str]], None],
                 idle: float = SESSION_IDLE, lifetime: float = SESSION_LIFETIME,
                 max_sessions: int = MAX_SESSIONS,
                 flush_interval: float = USED_FLUSH_INTERVAL, **kwargs):
        super().__init__(clock, idle=idle, lifetime=lifetime, max_sessions=max_sessions,
                         **kwargs)
        self.store = store
        self.announce = announce
        self.flush_interval = flush_interval
        self._seq = 0  # orders saves, deletions and reads
        self._confirmed: dict[str, int] = {}  # key -> seq when its row was known stored
        self._unsaved: dict[str, LoginSession] = {}  # made here, row not yet written
        self._saving: dict[str, defer.Deferred] = {}
        self._used: dict[str, float] = {}  # last uses not yet written
        self._ending: dict[str, int | None] = {}  # ended here: None until deleted, then seq
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self._lookups = TokenBucket(LOOKUP_RATE, LOOKUP_BURST, clock.seconds)
        self._want_all = False
        self._want: set[str] = set()
        self._waiting: list[defer.Deferred] = []
        self._reading = False
        self._warned = False
        self._loop = LoopingCall(self.flush)
        self._loop.clock = clock

    def _tick(self) -> int:
        self._seq += 1
        return self._seq

    # -- life

    @defer.inlineCallbacks
    def start(self):
        """Load the live log-ins, then write last uses every ``flush_interval`` s."""
        yield self.changed(None)
        self._loop.start(self.flush_interval, now=False)

    def stop(self) -> defer.Deferred:
        """Write what is pending (at most :data:`STORE_WAIT` s)."""
        if self._loop.running:
            self._loop.stop()
        return _within(self.flush(prune=False), STORE_WAIT, self.clock)

    # -- hooks of SessionStore

    def _created(self, session: LoginSession) -> None:
        self._unsaved[session.key] = session
        self._save(session)

    def stored(self, session: LoginSession) -> defer.Deferred:
        saving = self._saving.get(session.key)
        if saving is None:
            return defer.succeed(None)
        done: defer.Deferred = defer.Deferred()
        saving.addBoth(lambda _: None if done.called else done.callback(None))
        return _within(done, STORE_WAIT, self.clock)

    def _touched(self, key: str, now: float) -> None:
        self._used[key] = now

    def _dropped(self, key: str) -> None:
        self._confirmed.pop(key, None)
        self._used.pop(key, None)
        self._unsaved.pop(key, None)

    def _ended(self, key: str) -> defer.Deferred:
        self._ending[key] = None
        return _within(self._delete([key]), STORE_WAIT, self.clock)

    def lookup(self, sid: str | None) -> defer.Deferred | None:
        if not sid or not _SID.match(sid):
            return None
        key = login_key(sid)
        now = self.clock.seconds()
        if key in self._sessions or key in self._ending:
            return None
        seen = self._unknown.get(key)
        if seen is not None and now - seen < UNKNOWN_FORGET:
            return None
        if not self._lookups.take():
            return None  # a flood of made-up cookies: answered from memory
        self._not_found(key, now)
        return self.changed([key])

    def _not_found(self, key: str, now: float) -> None:
        self._unknown[key] = now
        self._unknown.move_to_end(key)
        while len(self._unknown) > MAX_UNKNOWN:
            self._unknown.popitem(last=False)

    # -- writes

    def _save(self, session: LoginSession) -> None:
        key = session.key
        if key in self._saving:
            return
        row = LoginRow(key, session.user, session.role, session.teams, session.method,
                       session.csrf, session.created, session.last_used)
        d = self.store.insert(row, self.max_sessions)
        self._saving[key] = d

        def saved(evicted):
            self._saving.pop(key, None)
            if key in self._ending:  # logged out while it was being stored
                self._ending[key] = None
                self._delete([key])
                return
            if self._unsaved.pop(key, None) is not None:
                self._confirmed[key] = self._tick()
            for gone in evicted:
                self._drop(gone)
            self._ok()
            self.announce([key, *evicted])

        def failed(f):
            self._saving.pop(key, None)
            self._trouble("could not store a log-in (it works on this locator only until "
                          "the database answers)", f)

        d.addCallbacks(saved, failed)

    def _delete(self, keys: list[str]) -> defer.Deferred:
        d = self.store.delete(keys)

        def deleted(_):
            seq = self._tick()
            for key in keys:
                if key in self._ending:
                    self._ending[key] = seq
            self._ok()
            self.announce(list(keys))

        d.addCallbacks(deleted, lambda f: self._trouble(
            "could not store a log-out (retried every {s:g} s)".format(
                s=self.flush_interval), f))
        return d

    def flush(self, prune: bool = True) -> defer.Deferred:
        """Write last uses; retry log-ins and log-outs the database missed; remove expired
        rows."""
        calls = []
        for session in list(self._unsaved.values()):
            self._save(session)
            calls.append(self._saving.get(session.key))
        if not self._reading:  # deletions done: every later read sees them
            for key in [k for k, v in self._ending.items() if v is not None]:
                del self._ending[key]
        pending = [k for k, v in self._ending.items() if v is None]
        if pending:
            calls.append(self._delete(pending))
        used, self._used = self._used, {}
        used = {k: t for k, t in used.items() if k in self._sessions}
        if used:
            d = self.store.touch(used)

            def retry(f, used=used):
                for key, at in used.items():
                    if key in self._sessions:
                        self._used[key] = max(at, self._used.get(key, at))
                self._trouble("could not store last uses of log-ins", f)

            calls.append(d.addErrback(retry))
        if prune:
            now = self.clock.seconds()
            # Another locator's last use may be up to two batches late in the database.
            calls.append(self.store.prune(now - self.idle - 2 * self.flush_interval,
                                          now - self.lifetime).addErrback(
                lambda f: self._trouble("could not remove expired log-ins", f)))
            for key in [k for k, t in self._unknown.items() if now - t >= UNKNOWN_FORGET]:
                del self._unknown[key]
        return defer.DeferredList([c for c in calls if c is not None], consumeErrors=True)

    # -- reads

    def changed(self, keys: Iterable[str] | None) -> defer.Deferred:
        """Re-read these log-ins (None: all) from the database; fires (never fails) when
        done. Reads run one at a time; requests made meanwhile are merged."""
        if keys is None:
            self._want_all = True
        else:
            self._want.update(keys)
        d: defer.Deferred = defer.Deferred()
        self._waiting.append(d)
        if not self._reading:
            self._read_next()
        return d

    def _read_next(self) -> None:
        if not (self._want_all or self._want):
            self._reading = False
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(None)
            return
        self._reading = True
        keys = None if self._want_all else sorted(self._want)
        self._want_all, self._want = False, set()
        waiting, self._waiting = self._waiting, []
        started = self._tick()
        d = self.store.get(keys)
        d.addCallbacks(self._apply, lambda f: self._trouble("could not read log-ins", f),
                       callbackArgs=(keys, started))

        def next_read(_):
            for w in waiting:
                w.callback(None)
            self._read_next()

        d.addBoth(next_read)

    def _apply(self, rows: list[LoginRow], keys: list[str] | None, started: int) -> None:
        self._ok()
        now = self.clock.seconds()
        seen = set()
        for row in rows:
            seen.add(row.key)
            self._unknown.pop(row.key, None)
            ended = self._ending.get(row.key, 0)
            if ended is None or ended > started:
                continue  # logged out here; this read predates the deletion
            session = self._sessions.get(row.key)
            if session is None:
                session = LoginSession("", row.user, row.csrf, row.created_at,
                                       row.last_used_at, role=row.role, teams=row.teams,
                                       method=row.method, key=row.key)
                if self._expired(session, now):
                    continue
                self._add(session)
            else:
                session.last_used = max(session.last_used, row.last_used_at)
            self._confirmed[row.key] = started
        for key in (list(self._sessions) if keys is None else keys):
            if key in seen or key in self._unsaved:
                continue
            confirmed = self._confirmed.get(key)
            if key in self._sessions and confirmed is not None and confirmed < started:
                self._drop(key)  # logged out, evicted or expired elsewhere
                self._not_found(key, now)
        for key in [k for k, v in self._ending.items() if v is not None and v < started]:
            del self._ending[key]  # every later read sees the deletion

    # -- trouble

    def _trouble(self, what: str, failure) -> None:
        if not self._warned:
            self._warned = True
            _log.warn("dashboard log-ins: {what}: {why}", what=what,
                      why=failure.getErrorMessage())

    def _ok(self) -> None:
        if self._warned:
            self._warned = False
            _log.info("dashboard log-ins: the database answers again")


def _within(d: defer.Deferred, seconds: float, clock) -> defer.Deferred:
    """A Deferred that fires with None when ``d`` does or after ``seconds``, never failing;
    ``d`` itself goes on."""
    out: defer.Deferred = defer.Deferred()
    timer = clock.callLater(seconds, lambda: None if out.called else out.callback(None))

    def done(_):
        if timer.active():
            timer.cancel()
        if not out.called:
            out.callback(None)

    d.addBoth(done)
    return out
