"""Audit entries stored per second by LocatorStore.insert_audit_batch, per dialect and batch size.

Reproduce (from the repository root, servers as in docs/storage.md):

    .venv/bin/python bench/locator/audit_insert.py
    .venv/bin/python bench/locator/audit_insert.py --dialects postgres,sqlite,mysql \
        --entries 50000 --batches 1,100,1000,5000

Each run uses a throw-away schema (PostgreSQL), database (MySQL) or file (SQLite)
and removes it. Batches are inserted one after the other, as one edge flushing its
buffer would; the figure includes JSON encoding and the Deferred round trip.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from twisted.internet import defer, task  # noqa: E402

from ct.storage.config import DatabaseConfig, sqlite_config  # noqa: E402
from ct.storage.database import Database  # noqa: E402
from ct.storage.migrations import prepare_database  # noqa: E402
from ct.storage.store import AuditEntry, LocatorStore  # noqa: E402

TARGET_PG = 10_000


def admin(dialect):
    if dialect == "postgres":
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test")
        conn.autocommit = True
        return conn
    import pymysql

    return pymysql.connect(host="127.0.0.1", port=3306, user="root", password="",
                           database="test", autocommit=True)


def scratch(dialect):
    """(config, remove) for a throw-away place to write to."""
    if dialect == "sqlite":
        directory = tempfile.mkdtemp(prefix="ct-bench-")
        path = os.path.join(directory, "bench.sqlite3")

        def remove():
            for name in os.listdir(directory):
                os.unlink(os.path.join(directory, name))
            os.rmdir(directory)

        return sqlite_config(path), remove
    name = "ct_bench_" + uuid.uuid4().hex[:10]
    conn = admin(dialect)
    if dialect == "postgres":
        conn.cursor().execute(f"CREATE SCHEMA {name}")
        config = DatabaseConfig(dialect="postgres", host="127.0.0.1", port=5432,
                                user="postgres", database="test", pg_schema=name)
        drop = f"DROP SCHEMA {name} CASCADE"
    else:
        conn.cursor().execute(f"CREATE DATABASE {name}")
        config = DatabaseConfig(dialect="mysql", host="127.0.0.1", port=3306, user="root",
                                database=name)
        drop = f"DROP DATABASE {name}"
    conn.close()

    def remove():
        c = admin(dialect)
        c.cursor().execute(drop)
        c.close()

    return config, remove


def entries(n, start):
    now = time.time()
    return [AuditEntry(entry_id=str(uuid.uuid4()), at=now, kind="participant_joined",
                       edge_id="edge-1", session_id=f"session-{(start + i) // 10}",
                       user=f"user{(start + i) % 50}@example.com",
                       details={"client": "vscode", "version": "2024.2.1", "seq": start + i})
            for i in range(n)]


@defer.inlineCallbacks
def run_one(reactor, dialect, batch, total):
    config, remove = scratch(dialect)
    db = Database(config, reactor)
    try:
        yield prepare_database(db)
        store = LocatorStore(db, reactor)
        batches = [entries(batch, i) for i in range(0, total, batch)]
        stored = 0
        started = time.perf_counter()
        for b in batches:
            stored += yield store.insert_audit_batch(b)
        elapsed = time.perf_counter() - started
        assert stored == len(batches) * batch, (stored, total)
        return stored, elapsed
    finally:
        db.close()
        remove()


@defer.inlineCallbacks
def main(reactor, args):
    print(f"# audit insert benchmark: {os.cpu_count()} CPUs, entries per run {args.entries}")
    print(f"{'dialect':<10} {'batch':>6} {'entries':>8} {'seconds':>8} {'entries/s':>10}")
    results = {}
    for dialect in args.dialects.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            total = args.entries if batch >= 50 else min(args.entries, 500 * batch)
            total = max(batch, total - total % batch)
            try:
                stored, elapsed = yield run_one(reactor, dialect, batch, total)
            except Exception as e:  # a server that is not there
                print(f"{dialect:<10} {batch:>6} skipped: {e}")
                break
            rate = stored / elapsed
            results[(dialect, batch)] = rate
            print(f"{dialect:<10} {batch:>6} {stored:>8} {elapsed:>8.2f} {rate:>10.0f}")
    best_pg = max((r for (d, _), r in results.items() if d == "postgres"), default=None)
    if best_pg is not None:
        verdict = "meets" if best_pg >= TARGET_PG else "MISSES"
        print(f"# PostgreSQL best {best_pg:.0f} entries/s: {verdict} the target of "
              f"{TARGET_PG} entries/s")
    print("# reproduce: .venv/bin/python bench/locator/audit_insert.py "
          f"--dialects {args.dialects} --entries {args.entries} --batches {args.batches}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dialects", default="postgres,sqlite")
    parser.add_argument("--entries", type=int, default=20000)
    parser.add_argument("--batches", default="1,100,1000,5000")
    options = parser.parse_args()
    task.react(main, [options])
