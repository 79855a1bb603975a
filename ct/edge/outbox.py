"""Durable outbox of audit entries and metric snapshots bound for the locator.

Records go to an SQLite file in the edge's data directory (through one pool thread, so
the reactor never waits for the disk), in one transaction per reactor turn. The link
sends them in order, and deletes them once the locator has stored them. The file
survives a restart of the edge; the locator's insert is idempotent, so a record sent
twice (acknowledgement lost) is still stored once. The file (and SQLite's ``-wal`` and
``-shm`` beside it) is created readable by its owner only (0600).

Bounded: past ``max_records`` the oldest metric snapshots go first, then the oldest
audit entries; every drop is counted (``dropped``) and logged once per episode.

When a write fails (a full disk, an I/O error) nothing is lost: the records stay in memory,
in order, and the write is retried with back-off (``retry_delays``). Memory is bounded too:
past ``max_unwritten`` records held, the oldest metric snapshots go first, then the oldest
audit entries, counted in ``dropped``. ``health()`` reports the episode (``/health``).
"""

from __future__ import annotations

import json
import os
from collections import deque
from typing import Any

from twisted.enterprise import adbapi
from twisted.internet import defer
from twisted.logger import Logger

from ct.common.files import make_private_sqlite

_log = Logger()

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    body TEXT NOT NULL
)
"""

RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # seconds between write attempts; the last repeats


class Outbox:
    def __init__(self, reactor, path: str, max_records: int = 100_000,
                 max_unwritten: int = 10_000, retry_delays=RETRY_DELAYS, clock=None):
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        self.path = path
        self.max_records = max_records
        self.max_unwritten = max_unwritten
        self.retry_delays = tuple(retry_delays)
        self.depth = 0  # records on disk (kept in step with every write)
        self.dropped = 0  # records lost: over max_records on disk or max_unwritten in memory
        self.write_failures = 0  # failed write attempts, in all
        self._pending: deque[tuple[str, str]] = deque()  # in memory, oldest first
        self._pending_metrics = 0  # how many of them are metric snapshots
        self._writing = 0  # records in the write under way (still only in memory)
        self._failing_since: float | None = None  # first failure of the current episode
        self._failures_in_a_row = 0
        self._last_error: str | None = None
        self._flush_call = None  # the next write attempt (now, or after a back-off)
        self._flushing: defer.Deferred | None = None
        self._overflowing = False
        self._shedding = False
        self.on_added = None  # callable: new records are on disk
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, mode=0o700, exist_ok=True)
        make_private_sqlite(path)
        self.pool = adbapi.ConnectionPool("sqlite3", path, cp_min=1, cp_max=1,
                                          cp_reactor=reactor, cp_openfun=None,
                                          check_same_thread=False, timeout=30)

    @property
    def unwritten(self) -> int:
        """Records held in memory, not yet on disk."""
        return len(self._pending) + self._writing

    @defer.inlineCallbacks
    def open(self):
        def setup(txn):
            txn.execute("PRAGMA journal_mode=WAL")
            txn.execute(SCHEMA)
            txn.execute("SELECT COUNT(*) FROM outbox")
            return txn.fetchone()[0]

        self.depth = yield self.pool.runInteraction(setup)
        if self.depth:
            _log.info("outbox {path}: {n} records waiting for the locator", path=self.path,
                      n=self.depth)

    def add(self, kind: str, body: dict[str, Any]) -> None:
        """Queue a record; it is on disk after the current reactor turn (or, while writes
        fail, after the next successful retry)."""
        self._pending.append((kind, json.dumps(body, separators=(",", ":"))))
        if kind == "metrics":
            self._pending_metrics += 1
        if self.unwritten > self.max_unwritten:
            self._shed()
        if self._flush_call is None:
            self._flush_call = self.clock.callLater(0, self.flush)

    def _shed(self) -> None:
        """Over ``max_unwritten`` in memory: drop the oldest snapshot, else the oldest entry."""
        pending = self._pending
        while self.unwritten > self.max_unwritten and pending:
            if self._pending_metrics:
                for i, (kind, _) in enumerate(pending):
                    if kind == "metrics":
                        del pending[i]
                        break
                self._pending_metrics -= 1
            else:
                pending.popleft()
            self.dropped += 1
        if not self._shedding:
            self._shedding = True
            _log.warn("outbox: more than {max} records waiting in memory for the disk: "
                      "dropping the oldest metric snapshots, then audit entries "
                      "(CT_OUTBOX_MEMORY_MAX)", max=self.max_unwritten)

    def flush(self) -> defer.Deferred:
        """Write what is pending; fires (never fails) once this attempt is over."""
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        if self._flushing is not None:
            # One writer at a time; the running flush picks up what arrives meanwhile.
            return self._flushing
        if not self._pending:
            return defer.succeed(None)
        rows = list(self._pending)
        self._pending.clear()
        self._pending_metrics = 0
        self._writing = len(rows)
        d = self._flushing = self.pool.runInteraction(self._write, rows)
        d.addCallbacks(self._written, self._write_failed, errbackArgs=(rows,))

        def done(_):
            self._flushing = None
            if self._pending and self._flush_call is None:
                return self.flush()

        return d.addCallback(done)

    def _write(self, txn, rows):
        """In the pool thread: insert, apply ``max_records``; committed after it returns."""
        txn.executemany("INSERT INTO outbox (kind, body) VALUES (?, ?)", rows)
        txn.execute("SELECT COUNT(*) FROM outbox")
        depth = txn.fetchone()[0]
        dropped = 0
        excess = depth - self.max_records
        for kind in ("metrics", "audit"):
            if excess <= 0:
                break
            txn.execute("DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE kind = ? "
                        "ORDER BY seq LIMIT ?)", (kind, excess))
            dropped += txn.rowcount
            excess -= txn.rowcount
        return depth - dropped, dropped

    def _written(self, result) -> None:
        depth, dropped = result
        self._writing = 0
        self.depth = depth
        if self._failing_since is not None:
            _log.info("outbox {path} writable again after {n} failed attempts; nothing held "
                      "in memory was lost beyond {dropped} dropped records in all",
                      path=self.path, n=self._failures_in_a_row, dropped=self.dropped)
            self._failing_since = None
            self._failures_in_a_row = 0
            self._last_error = None
        if self._shedding and self.unwritten <= self.max_unwritten:
            self._shedding = False
        if dropped:
            self.dropped += dropped
            if not self._overflowing:
                _log.warn("outbox full ({max} records): dropping the oldest metric snapshots, "
                          "then audit entries, until the locator is reachable",
                          max=self.max_records)
            self._overflowing = True
        elif self._overflowing and depth < self.max_records:
            _log.info("outbox below its limit again; {n} records were dropped in all",
                      n=self.dropped)
            self._overflowing = False
        if self.on_added is not None:
            self.on_added()

    def _write_failed(self, failure, rows) -> None:
        """Keep the rows (in front of newer ones), and try again after a back-off."""
        self._writing = 0
        self._pending.extendleft(reversed(rows))
        self._pending_metrics += sum(1 for kind, _ in rows if kind == "metrics")
        if self.unwritten > self.max_unwritten:
            self._shed()
        self.write_failures += 1
        self._failures_in_a_row += 1
        self._last_error = str(failure.value) or failure.type.__name__
        delays = self.retry_delays
        delay = delays[min(self._failures_in_a_row - 1, len(delays) - 1)]
        if self._failing_since is None:
            self._failing_since = self.clock.seconds()
            _log.warn("outbox {path}: cannot write ({error}); keeping records in memory "
                      "(up to {max}) and retrying", path=self.path, error=self._last_error,
                      max=self.max_unwritten)
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = self.clock.callLater(delay, self.flush)

    def health(self) -> tuple[bool, str]:
        """``(ok, detail)``: not ok while writes fail (the edge answers /health "degraded")."""
        if self._failing_since is None:
            return True, "ok"
        since = self.clock.seconds() - self._failing_since
        return False, (f"cannot write the outbox for {since:.0f} s ({self._last_error}); "
                       f"{self.unwritten} records held in memory (limit {self.max_unwritten}), "
                       f"{self.dropped} dropped in all")
    def peek(self, limit: int = 500) -> defer.Deferred:
        """The oldest records: ``[(seq, kind, body dict), ...]``."""

        def read(txn):
            txn.execute("SELECT seq, kind, body FROM outbox ORDER BY seq LIMIT ?", (limit,))
            return [(seq, kind, json.loads(body)) for seq, kind, body in txn.fetchall()]

        return self.pool.runInteraction(read)

    def remove(self, seqs) -> defer.Deferred:
        seqs = list(seqs)

        def delete(txn):
            txn.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
            txn.execute("SELECT COUNT(*) FROM outbox")
            return txn.fetchone()[0]

        d = self.pool.runInteraction(delete)

        def removed(depth):
            self.depth = depth
            return depth

        return d.addCallback(removed)

    @defer.inlineCallbacks
    def close(self):
        """One last write of what is pending, stop retrying, close the file."""
        if self._flushing is not None:
            yield self._flushing
        if self._pending:
            yield self.flush()
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        if self.unwritten:
            self.dropped += self.unwritten
            _log.error("outbox {path}: stopping with {n} records that could not be written "
                       "({error}); they are lost", path=self.path, n=self.unwritten,
                       error=self._last_error)
            self._pending.clear()
            self._pending_metrics = 0
        self.pool.close()
