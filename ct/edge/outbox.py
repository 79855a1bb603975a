"""Durable outbox of audit entries and metric snapshots bound for the locator.

Records go to an SQLite file in the edge's data directory (through one pool thread, so
the reactor never waits for the disk), in one transaction per reactor turn. The link
sends them in order, and deletes them once the locator has stored them. The file
survives a restart of the edge; the locator's insert is idempotent, so a record sent
twice (acknowledgement lost) is still stored once.

Bounded: past ``max_records`` the oldest metric snapshots go first, then the oldest
audit entries; every drop is counted (``dropped``) and logged once per episode.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.enterprise import adbapi
from twisted.internet import defer
from twisted.logger import Logger

_log = Logger()

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    body TEXT NOT NULL
)
"""


class Outbox:
    def __init__(self, reactor, path: str, max_records: int = 100_000):
        self.reactor = reactor
        self.path = path
        self.max_records = max_records
        self.depth = 0  # records on disk (kept in step with every write)
        self.dropped = 0
        self._pending: list[tuple[str, str]] = []
        self._flush_call = None
        self._flushing: defer.Deferred | None = None
        self._overflowing = False
        self.on_added = None  # callable: new records are on disk
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.pool = adbapi.ConnectionPool("sqlite3", path, cp_min=1, cp_max=1,
                                          cp_reactor=reactor, cp_openfun=None,
                                          check_same_thread=False, timeout=30)

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
        """Queue a record; it is on disk after the current reactor turn."""
        self._pending.append((kind, json.dumps(body, separators=(",", ":"))))
        if self._flush_call is None:
            self._flush_call = self.reactor.callLater(0, self.flush)

    def flush(self) -> defer.Deferred:
        self._flush_call = None
        if self._flushing is not None:
            # One writer at a time; the running flush picks up what arrives meanwhile.
            return self._flushing
        if not self._pending:
            return defer.succeed(None)
        rows, self._pending = self._pending, []
        d = self._flushing = self.pool.runInteraction(self._write, rows)

        def done(result):
            self._flushing = None
            if self._pending:
                return self.flush()
            return result

        d.addBoth(done)
        return d

    def _write(self, txn, rows):
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
        self.reactor.callFromThread(self._written, depth - dropped, dropped)

    def _written(self, depth, dropped):
        self.depth = depth
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
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
            self._flush_call = None
        yield self.flush()
        if self._flushing is not None:
            yield self._flushing
        self.pool.close()
