"""The locator's database handle: an ``adbapi.ConnectionPool`` behind ``runInteraction``.

Store code is plain DB-API code in functions ``fn(txn, *args)`` that run in a pool
thread inside one transaction; :meth:`Database.runInteraction` returns a Deferred
that fires in the reactor thread with ``fn``'s result. Nothing here blocks the
reactor. ``txn`` is a :class:`Cursor`: SQL uses ``?`` placeholders whatever the
driver, and ``txn.engine`` knows the dialect's syntax.

A connection that the server dropped is replaced (``cp_reconnect``) and the
interaction is run again (``retries``, once by default), so ``fn`` must be safe to
run twice; every store function is (upserts and insert-ignore).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

from twisted.enterprise import adbapi
from twisted.internet import defer
from twisted.logger import Logger

from ct.storage.config import DatabaseConfig
from ct.storage.engines import Engine, create_engine

_log = Logger()


class StorageError(Exception):
    """The database cannot be used: unreachable, refused us, or has an unusable schema."""


DATABASE_RETRY_AFTER = 5  # seconds clients and edges are told to wait while it is away


class DatabaseUnavailable(StorageError):
    """Connecting failed or the connection was lost (after retrying)."""


class _ConnectFailed(Exception):
    def __init__(self, original: BaseException):
        super().__init__(str(original))
        self.original = original


class _Connection(adbapi.Connection):
    """adbapi's connection without the traceback it logs ("Rollback failed") for every
    rollback on a connection the server dropped: a database restart would fill the log.
    The loss still surfaces as ``ConnectionLost``, which :class:`Database` handles."""

    def rollback(self):
        if not self._pool.reconnect:
            self._connection.rollback()
            return
        try:
            self._connection.rollback()
            cursor = self._connection.cursor()
            cursor.execute(self._pool.good_sql)
            cursor.close()
            self._connection.commit()
            return
        except Exception:
            pass
        self._pool.disconnect(self._connection)
        raise adbapi.ConnectionLost()


class _Transaction(adbapi.Transaction):
    """adbapi's transaction without the "Cursor creation failed" traceback on a dropped
    connection (it reconnects, as adbapi does)."""

    def reopen(self):
        if self._cursor is not None:
            self.close()
        try:
            self._cursor = self._connection.cursor()
            return
        except Exception:
            if not self._pool.reconnect:
                raise
        self._connection.reconnect()
        self._cursor = self._connection.cursor()


class _Pool(adbapi.ConnectionPool):
    """A ConnectionPool whose connect failures are told apart from query failures, and
    whose lost connections are errors to handle rather than tracebacks in the log."""

    connectionFactory = _Connection
    transactionFactory = _Transaction

    def connect(self):
        try:
            return super().connect()
        except Exception as e:
            raise _ConnectFailed(e) from e

    def _runInteraction(self, interaction, *args, **kw):
        conn = self.connectionFactory(self)
        trans = self.transactionFactory(self, conn)
        try:
            result = interaction(trans, *args, **kw)
            trans.close()
            conn.commit()
            return result
        except BaseException:
            try:
                conn.rollback()
            except adbapi.ConnectionLost:
                pass  # the interaction's own error says why; Database retries or reports
            except Exception:
                _log.failure("database rollback failed")
            raise


class Cursor:
    """What ``fn(txn)`` receives: a DB-API cursor speaking ``?`` placeholders."""

    def __init__(self, txn: adbapi.Transaction, engine: Engine):
        self._txn = txn
        self.engine = engine

    def execute(self, sql: str, args: Sequence[Any] = ()) -> None:
        if args:
            self._txn.execute(self.engine.convert(sql, True), tuple(args))
        else:
            self._txn.execute(self.engine.convert(sql, False))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._txn.executemany(self.engine.convert(sql, True), [tuple(r) for r in rows])

    def fetchone(self):
        return self._txn.fetchone()

    def fetchall(self) -> list:
        return list(self._txn.fetchall())

    @property
    def rowcount(self) -> int:
        return self._txn.rowcount

    @property
    def description(self):
        return self._txn.description

    def insert_ignore_many(self, table: str, columns: Sequence[str],
                           rows: Sequence[Sequence[Any]], conflict: str) -> int:
        """Insert ``rows``, skipping those whose ``conflict`` key exists; return how many
        were new. One multi-row statement per chunk (the parameter limit)."""
        if not rows:
            return 0
        per_statement = max(1, min(1000, self.engine.max_params // len(columns)))
        stored = 0
        for start in range(0, len(rows), per_statement):
            chunk = rows[start:start + per_statement]
            sql = self.engine.insert_ignore(table, columns, len(chunk), conflict)
            self.execute(sql, [v for row in chunk for v in row])
            stored += max(0, self.rowcount)
        return stored


class Database:
    """A pool of connections to one database, used through :meth:`runInteraction`."""

    def __init__(self, config: DatabaseConfig, reactor, retries: int = 1):
        self.config = config
        self.engine = create_engine(config)
        self.retries = retries
        self._reactor = reactor
        args, kwargs = self.engine.connect_args()
        size = 1 if config.dialect == "sqlite" else config.pool_size
        self._pool = _Pool(
            self.engine.module_name, *args,
            cp_min=1, cp_max=size, cp_reconnect=True, cp_noisy=False,
            cp_openfun=self.engine.on_connect, cp_reactor=reactor,
            **kwargs,
        )
        self._closed = False
        self.available = True  # False from a DatabaseUnavailable until a call succeeds

    @property
    def dialect(self) -> str:
        return self.engine.dialect

    def describe(self) -> str:
        return self.config.describe()

    @defer.inlineCallbacks
    def runInteraction(self, description: str, fn: Callable[..., Any], *args, **kwargs):
        """Run ``fn(txn, *args, **kwargs)`` in one transaction in a pool thread."""
        if self._closed:
            raise StorageError(f"{description}: the database is closed")
        try:
            result = yield self._run(description, fn, args, kwargs)
        except DatabaseUnavailable as e:
            self._went_away(str(e))
            raise
        self._came_back()
        return result

    @defer.inlineCallbacks
    def _run(self, description, fn, args, kwargs):
        attempt = 0
        while True:
            try:
                result = yield self._pool.runInteraction(self._wrap, fn, args, kwargs)
                return result
            except _ConnectFailed as e:
                raise DatabaseUnavailable(
                    f"cannot connect to {self.describe()}: {self._reason(e.original)}"
                ) from None
            except Exception as e:
                if not (self.engine.is_disconnect(e) or isinstance(e, adbapi.ConnectionLost)):
                    raise
                if attempt >= self.retries:
                    raise DatabaseUnavailable(
                        f"{description}: lost connection to {self.describe()}: "
                        f"{self._reason(e)}"
                    ) from None
                attempt += 1
                # A replaced connection is routine (a server restart drops every pooled
                # one); only an outage that outlasts the retry is worth a warning.
                _log.debug("{description}: database connection lost ({reason}); retrying",
                           description=description, reason=self._reason(e))

    def _went_away(self, reason: str) -> None:
        """Log the first failure of an outage, once: callers answer 503 meanwhile."""
        if self.available:
            self.available = False
            _log.warn("database unavailable: {reason}; requests that need it answer 503 "
                      "until it is back", reason=reason)

    def _came_back(self) -> None:
        if not self.available:
            self.available = True
            _log.info("database is back: {db}", db=self.describe())

    def _wrap(self, txn, fn, args, kwargs):
        return fn(Cursor(txn, self.engine), *args, **kwargs)

    def _reason(self, exc: BaseException) -> str:
        text = " ".join(str(exc).split()) or type(exc).__name__
        if self.config.password:
            text = text.replace(self.config.password, "****")
        return text

    def close(self) -> None:
        """Close every connection and stop the pool's threads."""
        if self._closed:
            return
        self._closed = True
        self._pool.close()
        self.engine.close()
