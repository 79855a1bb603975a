"""Dashboard log-in state: server-side sessions with CSRF tokens, and failed log-in throttling.

Pure logic with an injected clock (``clock.seconds()``); no sockets, no reactor import.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from typing import Callable

from twisted.internet import defer
from twisted.logger import Logger

from ct.common.ratelimit import TokenBucket
from ct.common.tokens import same_secret
from ct.storage.logins import login_key

_log = Logger()

SESSION_IDLE = 3600.0  # a session unused for an hour ends
SESSION_LIFETIME = 12 * 3600.0  # and none lasts longer than this
MAX_SESSIONS = 1000


ADMIN = "admin"
TEAM_VIEWER = "team-viewer"


@dataclass
class LoginSession:
    """A logged-in browser. ``role``: ``admin`` (everything) or ``team-viewer`` (the
    sessions and audit of ``teams``, nothing else); ``method``: ``password`` or ``sso``.
    ``sid`` (the cookie) is known only where the log-in was made; ``key`` (its hash)
    names it everywhere, in the database too."""

    sid: str
    user: str
    csrf: str
    created: float
    last_used: float
    flash: list = field(default_factory=list)  # (kind, text) shown on the next page
    role: str = ADMIN
    teams: tuple[str, ...] = ()
    method: str = "password"
    key: str = ""

    def __post_init__(self):
        if not self.key:
            self.key = login_key(self.sid)

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN

    def csrf_ok(self, given: str | None) -> bool:
        return isinstance(given, str) and same_secret(given, self.csrf)


class SessionStore:
    """Logged-in browsers, by the hash of a random session id (the cookie); memory only.

    Subclasses share them (:class:`~ct.dashboard.shared_logins.SharedSessionStore`)
    through the hooks ``_created``, ``_touched``, ``_dropped`` and ``_ended``.
    """

    def __init__(self, clock, idle: float = SESSION_IDLE, lifetime: float = SESSION_LIFETIME,
                 token=secrets.token_urlsafe, max_sessions: int = MAX_SESSIONS):
        self.clock = clock
        self.idle = idle
        self.lifetime = lifetime
        self.max_sessions = max_sessions
        self._token = token
        self._sessions: dict[str, LoginSession] = {}  # by LoginSession.key

    def __len__(self) -> int:
        return len(self._sessions)

    def token(self, nbytes: int = 32) -> str:
        """A fresh random token (session ids, CSRF tokens, the log-in form's token)."""
        return self._token(nbytes)

    def create(self, user: str, role: str = ADMIN, teams: tuple[str, ...] = (),
               method: str = "password") -> LoginSession:
        now = self.clock.seconds()
        self._expire(now)
        session = LoginSession(self.token(), user, self.token(), now, now, role=role,
                               teams=tuple(teams), method=method)
        self._add(session)
        self._created(session)
        return session

    def stored(self, session: LoginSession) -> defer.Deferred:
        """Fires (never fails) once ``session`` is kept where other servers see it."""
        return defer.succeed(None)

    def get(self, sid: str | None) -> LoginSession | None:
        """The live session of this id (its idle timer restarts), or None."""
        if not sid:
            return None
        session = self._sessions.get(login_key(sid))
        if session is None:
            return None
        now = self.clock.seconds()
        if self._expired(session, now):
            self._drop(session.key)
            return None
        session.last_used = now
        self._touched(session.key, now)
        return session

    def lookup(self, sid: str | None) -> defer.Deferred | None:
        """A Deferred when ``sid`` is unknown here but may be known elsewhere (fires once
        it has been looked for), else None (:meth:`get` answers at once)."""
        return None

    def end(self, sid: str | None) -> defer.Deferred:
        return self.end_key(login_key(sid or ""))

    def end_key(self, key: str) -> defer.Deferred:
        """Log out; fires (never fails) once the log-out is kept."""
        self._drop(key)
        return self._ended(key)

    def _add(self, session: LoginSession) -> None:
        while len(self._sessions) >= self.max_sessions:  # drop the least recently used
            oldest = min(self._sessions.values(), key=lambda s: s.last_used)
            self._drop(oldest.key)
        self._sessions[session.key] = session

    def _expired(self, session: LoginSession, now: float) -> bool:
        return now - session.last_used > self.idle or now - session.created > self.lifetime

    def _expire(self, now: float) -> None:
        for key in [s.key for s in self._sessions.values() if self._expired(s, now)]:
            self._drop(key)

    # -- hooks of a shared store

    def _created(self, session: LoginSession) -> None:
        pass

    def _touched(self, key: str, now: float) -> None:
        pass

    def _dropped(self, key: str) -> None:
        pass

    def _drop(self, key: str) -> None:
        if self._sessions.pop(key, None) is not None:
            self._dropped(key)

    def _ended(self, key: str) -> defer.Deferred:
        return defer.succeed(None)


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0
    last: float = 0.0


@dataclass
class LoginThrottle:
    """Locks a (client address, user name) pair, and a client address, after failed log-ins.

    After ``pair_failures`` failures for one user name from one address, that user is
    refused from that address; after ``ip_failures`` failures from one address (any user
    names) the whole address is. Refusals skip the password check and last ``base_lock``
    seconds, doubling with each further failure up to ``max_lock``. A user name is never
    locked from addresses that did not fail, so an attacker cannot lock the operator out.
    A success clears the pair and the address; failures are forgotten after
    ``forget_after`` quiet seconds; at most ``max_entries`` entries are kept.
    """

    clock: object
    pair_failures: int = 5
    ip_failures: int = 20
    base_lock: float = 30.0
    max_lock: float = 900.0
    forget_after: float = 3600.0
    max_entries: int = 10000
    _table: dict = field(default_factory=dict)

    def _limits(self, ip: str, user: str):
        return ((("ip", ip), self.ip_failures), (("pair", ip, user), self.pair_failures))

    def locked_for(self, ip: str, user: str) -> float:
        """Seconds until ``ip``/``user`` may try again (0: now)."""
        now = self.clock.seconds()
        wait = 0.0
        for key, _ in self._limits(ip, user):
            entry = self._table.get(key)
            if entry is not None:
                wait = max(wait, entry.locked_until - now)
        return max(0.0, wait)

    def failed(self, ip: str, user: str) -> float:
        """Count a failure; returns the lock now in force (0: none yet)."""
        now = self.clock.seconds()
        self._prune(now)
        for key, limit in self._limits(ip, user):
            entry = self._table.get(key)
            if entry is None or now - entry.last > self.forget_after:
                entry = self._table[key] = _Failures()
            entry.count += 1
            entry.last = now
            if entry.count >= limit:
                lock = min(self.max_lock, self.base_lock * 2 ** (entry.count - limit))
                entry.locked_until = now + lock
        return self.locked_for(ip, user)

    def succeeded(self, ip: str, user: str) -> None:
        for key, _ in self._limits(ip, user):
            self._table.pop(key, None)

    def _prune(self, now: float) -> None:
        if len(self._table) < self.max_entries:
            return
        for key in [k for k, e in self._table.items()
                    if now - e.last > self.forget_after and e.locked_until <= now]:
            del self._table[key]
        while len(self._table) >= self.max_entries:  # still full: forget the oldest
            del self._table[min(self._table, key=lambda k: self._table[k].last)]


# Failed log-ins leave a warning line and an audit entry; an attacker can repeat them,
# so at most REPORT_BURST at once and one per 1/REPORT_RATE seconds after that.
REPORT_RATE = 0.1
REPORT_BURST = 10


@dataclass(frozen=True)
class Verdict:
    """Outcome of a log-in attempt: ``ok``; or ``locked`` (refused unchecked, answer 429);
    or wrong credentials (401). ``retry_after``: seconds of the lock now in force."""

    ok: bool
    locked: bool = False
    retry_after: float = 0.0

    @property
    def retry_after_header(self) -> bytes:
        """The ``Retry-After`` value: whole seconds, at least 1."""
        return str(max(1, math.ceil(self.retry_after))).encode("ascii")


class LoginGuard:
    """Checks credentials behind a :class:`LoginThrottle`; reports failures, rate-limited.

    ``record(user, ip, reason, unreported)`` stores one audit entry and returns a
    Deferred; ``unreported`` counts the failures since the last one reported.
    """

    def __init__(self, credentials, clock, record: Callable, where: str,
                 throttle: LoginThrottle | None = None, rate: float = REPORT_RATE,
                 burst: int = REPORT_BURST):
        self.credentials = credentials
        self.throttle = throttle if throttle is not None else LoginThrottle(clock)
        self.record = record
        self.where = where
        self._bucket = TokenBucket(rate, burst, clock.seconds)
        self.unreported = 0

    def check(self, ip: str, user: str, password: str) -> Verdict:
        """Refused without a password check while locked; failures counted and reported."""
        wait = self.throttle.locked_for(ip, user)
        if wait > 0:
            self._report(ip, user, "locked")
            return Verdict(False, True, wait)
        if not self.credentials.check(user, password):
            lock = self.throttle.failed(ip, user)
            self._report(ip, user, "wrong credentials")
            return Verdict(False, False, lock)
        self.throttle.succeeded(ip, user)
        return Verdict(True)

    def _report(self, ip: str, user: str, reason: str) -> None:
        if not self._bucket.take():
            self.unreported += 1
            return
        unreported, self.unreported = self.unreported, 0
        _log.warn("{where}: failed log-in for {user!r} from {ip} ({reason}; {unreported} "
                  "earlier failures not logged)", where=self.where, user=user, ip=ip,
                  reason=reason, unreported=unreported)
        self.record(user, ip, reason, unreported).addErrback(
            lambda f: _log.failure("{where}: could not store an audit entry", f,
                                   where=self.where))
