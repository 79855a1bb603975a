"""One engine object per database driver: SQL dialect differences and connection set-up.

Store code writes SQL once, with ``?`` placeholders and portable types; the engine
converts placeholders for the driver, fills in type names, builds the statements
whose syntax differs (insert-ignore, upsert, integer division) and runs the
per-connection set-up. Engines hold no connections: :class:`ct.storage.database.Database`
does, through an ``adbapi.ConnectionPool``.
"""

from __future__ import annotations

import os
import ssl
import stat
import tempfile
from typing import Any, Sequence

from twisted.logger import Logger

from ct.common.files import make_private_sqlite
from ct.storage.config import DatabaseConfig

_log = Logger()


class Engine:
    """Behaviour shared by the three dialects; subclasses fill in the differences."""

    dialect = ""
    module_name = ""
    paramstyle_percent = True
    #: Bound parameters one statement may carry (the driver's or server's limit).
    max_params = 60000
    #: Type names substituted into migration SQL as ``{ID}``, ``{TEXT}`` ...
    types: dict[str, str] = {}

    def __init__(self, config: DatabaseConfig):
        self.config = config

    # ------------------------------------------------------------ connecting

    def connect_args(self) -> tuple[tuple, dict]:
        raise NotImplementedError

    def on_connect(self, conn) -> None:
        """Per-connection set-up, run in the pool thread right after connecting."""

    def close(self) -> None:
        """Release resources the engine created (temporary TLS files)."""

    # ------------------------------------------------------------ errors

    def is_disconnect(self, exc: BaseException) -> bool:
        """True when ``exc`` means the connection is gone (so a retry may succeed)."""
        return False

    # ------------------------------------------------------------ SQL

    def convert(self, sql: str, has_args: bool) -> str:
        """``?`` placeholders to the driver's style."""
        if not self.paramstyle_percent:
            return sql
        if has_args:
            sql = sql.replace("%", "%%")
        return sql.replace("?", "%s")

    def format_schema(self, sql: str) -> str:
        return sql.format(**self.types)

    def insert_ignore(self, table: str, columns: Sequence[str], rows: int, conflict: str) -> str:
        """Multi-row INSERT that skips rows whose ``conflict`` key already exists."""
        raise NotImplementedError

    def upsert(self, table: str, columns: Sequence[str], keys: Sequence[str],
               update: Sequence[str]) -> str:
        """One-row INSERT that updates ``update`` columns when ``keys`` already exist."""
        cols = ", ".join(columns)
        marks = ", ".join("?" for _ in columns)
        sets = ", ".join(f"{c} = excluded.{c}" for c in update)
        return (f"INSERT INTO {table} ({cols}) VALUES ({marks}) "
                f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {sets}")

    def int_div(self, a: str, b: str) -> str:
        return f"({a}) / ({b})"

    def create_table(self, name: str, columns: Sequence[str],
                     indexes: Sequence[tuple[str, Sequence[str], bool]] = ()) -> list[str]:
        """Statements creating a table and its indexes, if they do not exist yet."""
        body = ",\n  ".join(self.format_schema(c) for c in columns)
        statements = [f"CREATE TABLE IF NOT EXISTS {name} (\n  {body}\n)"]
        for index, cols, unique in indexes:
            kind = "UNIQUE INDEX" if unique else "INDEX"
            statements.append(
                f"CREATE {kind} IF NOT EXISTS {index} ON {name} ({', '.join(cols)})")
        return statements

    @staticmethod
    def _values(columns: Sequence[str], rows: int) -> str:
        one = "(" + ", ".join("?" for _ in columns) + ")"
        return ", ".join(one for _ in range(rows))


class SqliteEngine(Engine):
    """sqlite3: exactly one connection, WAL journal, busy timeout."""

    dialect = "sqlite"
    module_name = "sqlite3"
    paramstyle_percent = False
    max_params = 32000  # SQLITE_MAX_VARIABLE_NUMBER is 32766 since 3.32
    types = {
        "ID": "VARCHAR(255)", "SHORT": "VARCHAR(64)", "URL": "VARCHAR(2048)",
        "TEXT": "TEXT", "BIGINT": "BIGINT", "INT": "INTEGER", "DOUBLE": "REAL",
        "BOOL": "SMALLINT", "SERIAL_PK": "INTEGER PRIMARY KEY AUTOINCREMENT",
    }

    def connect_args(self):
        path = self.config.sqlite_path
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        make_private_sqlite(path)
        return (path,), {"timeout": self.config.connect_timeout, "check_same_thread": False}

    def on_connect(self, conn):
        cur = conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(self.config.connect_timeout * 1000)}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    def insert_ignore(self, table, columns, rows, conflict):
        return f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) VALUES " + \
            self._values(columns, rows)


class _ServerEngine(Engine):
    """A database server reached over the network; TLS files given inline live in
    private temporary files until the pool closes."""

    def __init__(self, config):
        super().__init__(config)
        self._tls_files = _TLSFiles()

    def close(self):
        self._tls_files.remove()


class PostgresEngine(_ServerEngine):
    """psycopg2 (the binary wheel)."""

    dialect = "postgres"
    module_name = "psycopg2"
    max_params = 65000
    types = {
        "ID": "VARCHAR(255)", "SHORT": "VARCHAR(64)", "URL": "VARCHAR(2048)",
        "TEXT": "TEXT", "BIGINT": "BIGINT", "INT": "INTEGER", "DOUBLE": "DOUBLE PRECISION",
        "BOOL": "SMALLINT", "SERIAL_PK": "BIGSERIAL PRIMARY KEY",
    }

    def connect_args(self):
        c = self.config
        kw: dict[str, Any] = {
            "host": c.host, "port": c.port, "user": c.user, "dbname": c.database,
            "connect_timeout": max(2, int(round(c.connect_timeout))),
            "application_name": "ct-locator",
            "sslmode": c.tls.mode,
        }
        if c.password:
            kw["password"] = c.password
        if c.tls.ca:
            kw["sslrootcert"] = self._tls_files.path("ca", c.tls.ca)
        if c.tls.cert:
            kw["sslcert"] = self._tls_files.path("cert", c.tls.cert)
            kw["sslkey"] = self._tls_files.path("key", c.tls.key)
        if c.pg_schema:
            kw["options"] = f"-c search_path={c.pg_schema}"
        return (), kw

    def on_connect(self, conn):
        conn.set_session(isolation_level="READ COMMITTED", autocommit=False)

    def is_disconnect(self, exc):
        import psycopg2

        if isinstance(exc, psycopg2.InterfaceError):
            return True
        if isinstance(exc, psycopg2.OperationalError):
            # Deadlocks and serialisation failures are OperationalErrors too: a retry
            # is the right answer for them as well.
            return True
        return False

    def insert_ignore(self, table, columns, rows, conflict):
        return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                f"{self._values(columns, rows)} ON CONFLICT ({conflict}) DO NOTHING")


# MySQL/MariaDB client error codes meaning the connection is gone or never was.
_MYSQL_DISCONNECT_CODES = {2003, 2006, 2013, 2055, 4031, 1927, 1053}
_MYSQL_RETRY_CODES = {1205, 1213}  # lock wait timeout, deadlock


class MySQLEngine(_ServerEngine):
    """PyMySQL, for MySQL and MariaDB."""

    dialect = "mysql"
    module_name = "pymysql"
    max_params = 60000  # PyMySQL interpolates client-side; bounded by max_allowed_packet
    types = {
        "ID": "VARCHAR(255)", "SHORT": "VARCHAR(64)", "URL": "VARCHAR(2048)",
        "TEXT": "LONGTEXT", "BIGINT": "BIGINT", "INT": "INTEGER", "DOUBLE": "DOUBLE",
        "BOOL": "SMALLINT", "SERIAL_PK": "BIGINT AUTO_INCREMENT PRIMARY KEY",
    }
    table_options = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"

    def connect_args(self):
        c = self.config
        kw: dict[str, Any] = {
            "host": c.host, "port": c.port, "user": c.user, "password": c.password or "",
            "database": c.database, "charset": "utf8mb4", "autocommit": False,
            "connect_timeout": c.connect_timeout,
            "init_command": "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION',"
                            " time_zone = '+00:00'",
        }
        if c.tls.enabled:
            kw["ssl"] = self._ssl_context()
        return (), kw

    def _ssl_context(self) -> ssl.SSLContext:
        tls = self.config.tls
        ctx = ssl.create_default_context()
        ctx.check_hostname = tls.verify_hostname
        if not tls.verify_certificate:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if tls.ca:
            ctx.load_verify_locations(cafile=self._tls_files.path("ca", tls.ca))
        if tls.cert:
            ctx.load_cert_chain(self._tls_files.path("cert", tls.cert),
                                self._tls_files.path("key", tls.key))
        return ctx

    def on_connect(self, conn):
        cur = conn.cursor()
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        if self.config.tls.mode in ("require", "verify-ca", "verify-full"):
            # PyMySQL silently goes on in clear text when the server offers no TLS.
            cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            row = cur.fetchone()
            if not row or not row[1]:
                raise ConnectionError(
                    f"the server does not offer TLS but sslMode is {self.config.tls.mode}")
        cur.close()
        conn.commit()

    def is_disconnect(self, exc):
        import pymysql

        if isinstance(exc, pymysql.err.InterfaceError):
            return True
        if isinstance(exc, pymysql.err.OperationalError) and exc.args:
            code = exc.args[0]
            return code in _MYSQL_DISCONNECT_CODES or code in _MYSQL_RETRY_CODES
        return False

    def insert_ignore(self, table, columns, rows, conflict):
        # Not INSERT IGNORE: that would also turn real errors (bad values) into warnings.
        # "col = col" leaves a duplicate untouched and counts 0 affected rows for it.
        return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                f"{self._values(columns, rows)} ON DUPLICATE KEY UPDATE {conflict} = {conflict}")

    def upsert(self, table, columns, keys, update):
        cols = ", ".join(columns)
        marks = ", ".join("?" for _ in columns)
        sets = ", ".join(f"{c} = VALUES({c})" for c in update)
        return f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON DUPLICATE KEY UPDATE {sets}"

    def int_div(self, a, b):
        return f"({a}) DIV ({b})"

    def create_table(self, name, columns, indexes=()):
        # MySQL has no CREATE INDEX IF NOT EXISTS: declare indexes inside the table.
        parts = [self.format_schema(c) for c in columns]
        for index, cols, unique in indexes:
            kind = "UNIQUE KEY" if unique else "KEY"
            parts.append(f"{kind} {index} ({', '.join(cols)})")
        body = ",\n  ".join(parts)
        return [f"CREATE TABLE IF NOT EXISTS {name} (\n  {body}\n){self.table_options}"]


class _TLSFiles:
    """File paths for TLS material given inline as PEM text (drivers want files)."""

    def __init__(self):
        self._dir: str | None = None

    def path(self, name: str, value: str) -> str:
        if not value.lstrip().startswith("-----BEGIN"):
            return value
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="ct-db-tls-")
        target = os.path.join(self._dir, name + ".pem")
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "w") as f:
            f.write(value)
        return target

    def remove(self):
        if self._dir is None:
            return
        for name in os.listdir(self._dir):
            os.unlink(os.path.join(self._dir, name))
        os.rmdir(self._dir)
        self._dir = None


ENGINES = {"sqlite": SqliteEngine, "postgres": PostgresEngine, "mysql": MySQLEngine}


def create_engine(config: DatabaseConfig) -> Engine:
    return ENGINES[config.dialect](config)
