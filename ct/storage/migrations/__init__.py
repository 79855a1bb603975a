"""Versioned schema migrations, run at start-up by :func:`prepare_database`.

Each migration is a module ``vNNN_name.py`` in this package with a function
``statements(engine) -> list[str]`` (portable SQL built through the engine, with
per-dialect branches where SQL differs) and optionally ``run(txn)`` for data
changes. They are applied in order, each in its own transaction, and recorded in
``applied_migrations``; ``schema_version`` holds one row:

* ``version``: the highest migration applied;
* ``compat_version``: the oldest schema version whose code can still use this
  database. A locator whose :data:`SCHEMA_VERSION` is below it refuses to start.

DDL on MySQL/MariaDB is not transactional, so every statement is written to be
safe to repeat (``CREATE ... IF NOT EXISTS``).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass
from types import ModuleType

from twisted.internet import defer
from twisted.logger import Logger

from ct.storage.database import Database, StorageError

_log = Logger()

_NAME = re.compile(r"^v(\d{3})_(\w+)$")

#: Raise when a migration makes the schema unusable for code of older versions.
SCHEMA_COMPAT_VERSION = 1


class SchemaTooNew(StorageError):
    """The database was upgraded by a newer locator that this one cannot work with."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    module: ModuleType


def discover() -> list[Migration]:
    """The migrations of this package, ordered by version."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        match = _NAME.match(info.name)
        if not match:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.append(Migration(int(match.group(1)), match.group(2), module))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..n without gaps, got {versions}")
    return found


MIGRATIONS = discover()
#: The schema version this code creates and understands.
SCHEMA_VERSION = MIGRATIONS[-1].version


_PG_LOCK_KEY = 0x6374_6C6F  # "ctlo": serialises schema work of concurrent locators


def _lock(txn) -> None:
    """PostgreSQL: hold an advisory lock until this transaction ends (concurrent
    ``CREATE TABLE IF NOT EXISTS`` can otherwise collide)."""
    if txn.engine.dialect == "postgres":
        txn.execute("SELECT pg_advisory_xact_lock(?)", (_PG_LOCK_KEY,))
        txn.fetchall()


def _bookkeeping(txn) -> tuple[int, int] | None:
    engine = txn.engine
    _lock(txn)
    if engine.dialect == "postgres" and engine.config.pg_schema:
        txn.execute(f"CREATE SCHEMA IF NOT EXISTS {engine.config.pg_schema}")
    for sql in engine.create_table("schema_version", [
        "singleton {INT} NOT NULL PRIMARY KEY",
        "version {INT} NOT NULL",
        "compat_version {INT} NOT NULL",
        "upgraded_at {BIGINT} NOT NULL",
    ]) + engine.create_table("applied_migrations", [
        "version {INT} NOT NULL PRIMARY KEY",
        "name {ID} NOT NULL",
        "applied_at {BIGINT} NOT NULL",
    ]):
        txn.execute(sql)
    txn.execute("SELECT version, compat_version FROM schema_version WHERE singleton = 1")
    row = txn.fetchone()
    return (int(row[0]), int(row[1])) if row else None


def _apply(txn, migration: Migration, compat_version: int, now_ms: int) -> bool:
    _lock(txn)
    # Another locator may have applied it since we looked.
    txn.execute("SELECT 1 FROM applied_migrations WHERE version = ?", (migration.version,))
    if txn.fetchone() is not None:
        return False
    for sql in migration.module.statements(txn.engine):
        txn.execute(sql)
    run = getattr(migration.module, "run", None)
    if run is not None:
        run(txn)
    txn.execute(txn.engine.insert_ignore("applied_migrations", ["version", "name", "applied_at"],
                                         1, "version"),
                (migration.version, migration.name, now_ms))
    txn.execute(txn.engine.upsert("schema_version",
                                  ["singleton", "version", "compat_version", "upgraded_at"],
                                  ["singleton"], ["version", "compat_version", "upgraded_at"]),
                (1, migration.version, compat_version, now_ms))
    return True


@defer.inlineCallbacks
def prepare_database(db: Database, clock=None, migrations: list[Migration] | None = None,
                     compat_version: int = SCHEMA_COMPAT_VERSION):
    """Create or upgrade the schema; fires with the schema version in use.

    Fails with :class:`~ct.storage.database.DatabaseUnavailable` when the database
    cannot be reached and :class:`SchemaTooNew` when a newer locator upgraded it
    beyond what this code can use.
    """
    migrations = MIGRATIONS if migrations is None else migrations
    ours = migrations[-1].version if migrations else 0
    current = yield db.runInteraction("read schema version", _bookkeeping)
    if current is not None:
        version, compat = current
        if compat > ours:
            raise SchemaTooNew(
                f"{db.describe()} has schema version {version}, which needs a locator "
                f"supporting schema {compat} or later; this locator supports up to "
                f"schema {ours}: upgrade the locator (or restore a backup made before "
                f"the upgrade)"
            )
        if version >= ours:
            if version > ours:
                _log.warn("{db} has schema version {version}, newer than this locator's "
                          "{ours}, and is still compatible with it", db=db.describe(),
                          version=version, ours=ours)
            return version
    start = current[0] if current else 0
    for migration in migrations:
        if migration.version <= start:
            continue
        now_ms = int((clock.seconds() if clock is not None else _wall()) * 1000)
        _log.info("applying schema migration {version} ({name}) to {db}",
                  version=migration.version, name=migration.name, db=db.describe())
        yield db.runInteraction(f"migration {migration.version}", _apply, migration,
                                compat_version, now_ms)
    return ours


def _wall() -> float:
    import time

    return time.time()
