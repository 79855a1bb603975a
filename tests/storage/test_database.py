"""Database: connection errors, reconnecting, engine SQL, per dialect."""

from __future__ import annotations

import dataclasses
import socket

from twisted.internet import defer, reactor
from twisted.trial import unittest

from ct.storage.config import DatabaseConfig, TLSConfig, sqlite_config
from ct.storage.database import Database, DatabaseUnavailable, StorageError
from ct.storage.engines import MySQLEngine, PostgresEngine, SqliteEngine
from ct.storage.migrations import prepare_database
from tests.storage import dbs

PASSWORD = "pw-Zq8-never-shown"


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class UnreachableTests(unittest.TestCase):
    """An unreachable database stops start-up with a message naming where and why."""

    @defer.inlineCallbacks
    def check(self, config, *expected):
        db = Database(config, reactor)
        self.addCleanup(db.close)
        e = yield self.assertFailure(prepare_database(db), DatabaseUnavailable)
        message = str(e)
        self.assertIsInstance(e, StorageError)
        self.assertTrue(message.startswith("cannot connect to "), message)
        for part in expected:
            self.assertIn(part, message)
        self.assertNotIn(PASSWORD, message)
        self.assertNotIn(PASSWORD, repr(config))
        return message

    def test_postgres_refused(self):
        port = closed_port()
        config = DatabaseConfig(dialect="postgres", host="127.0.0.1", port=port,
                                user="postgres", password=PASSWORD, database="test")
        return self.check(config, "postgres database 'test'", f"127.0.0.1:{port}",
                          "user 'postgres'", "refused")

    def test_mysql_refused(self):
        port = closed_port()
        config = DatabaseConfig(dialect="mysql", host="127.0.0.1", port=port, user="root",
                                password=PASSWORD, database="test")
        return self.check(config, "mysql database 'test'", f"127.0.0.1:{port}", "refused")

    def test_mysql_wrong_password(self):
        dbs.admin("mysql").close()
        config = DatabaseConfig(dialect="mysql", host=dbs.MYSQL_HOST, port=int(dbs.MYSQL_PORT),
                                user="root", password=PASSWORD, database="test")
        return self.check(config, "Access denied")

    def test_sqlite_unopenable(self):
        directory = self.mktemp()
        import os

        os.makedirs(directory)
        return self.check(sqlite_config(directory), "sqlite database", "unable to open")


class TLSRequiredTests(unittest.TestCase):
    """sslMode require against a server without TLS is refused, never clear text."""

    @defer.inlineCallbacks
    def check(self, dialect, query, *expected):
        conn = dbs.admin(dialect)
        try:
            cur = conn.cursor()
            cur.execute(query)
            row = cur.fetchone()
        finally:
            conn.close()
        if row and str(row[-1]).lower() not in ("off", "disabled", "no"):
            raise unittest.SkipTest(f"this {dialect} server offers TLS ({row})")
        config = dataclasses.replace(dbs.fresh_database(self, dialect),
                                     tls=TLSConfig(mode="require"))
        db = Database(config, reactor)
        self.addCleanup(db.close)
        e = yield self.assertFailure(prepare_database(db), DatabaseUnavailable)
        self.assertIn("tls=require", str(e))
        self.assertTrue(any(x in str(e) for x in expected), str(e))

    def test_postgres(self):
        return self.check("postgres", "SHOW ssl", "SSL was required")

    def test_mysql(self):
        # PyMySQL refuses by itself; older releases went on in clear text, which the
        # engine's Ssl_cipher check catches.
        return self.check("mysql", "SHOW VARIABLES LIKE 'have_ssl'",
                          "SSL is required but the server doesn't support it",
                          "the server does not offer TLS but sslMode is require")


class ReconnectSuite:
    """cp_reconnect: after the server drops our connection the next interaction works."""

    dialect = ""

    def setUp(self):
        config = dbs.fresh_database(self, self.dialect)
        # One connection, so the one we kill is the one the next interaction uses.
        self.config = dataclasses.replace(config, pool_size=1)

    def open(self, retries):
        db = Database(self.config, reactor, retries=retries)
        self.addCleanup(db.close)
        return db

    def my_connection_id(self, db):
        sql = "SELECT pg_backend_pid()" if self.dialect == "postgres" else "SELECT CONNECTION_ID()"

        def run(txn):
            txn.execute(sql)
            return txn.fetchone()[0]

        return db.runInteraction("connection id", run)

    def kill(self, connection_id):
        conn = dbs.admin(self.dialect)
        try:
            cur = conn.cursor()
            if self.dialect == "postgres":
                cur.execute("SELECT pg_terminate_backend(%s)", (connection_id,))
                self.assertEqual(cur.fetchone()[0], True)
            else:
                cur.execute(f"KILL {int(connection_id)}")
        finally:
            conn.close()

    @defer.inlineCallbacks
    def test_next_interaction_succeeds_after_server_drops_connection(self):
        db = self.open(retries=0)
        first = yield self.my_connection_id(db)
        self.kill(first)
        # Without retries the interaction that meets the dead connection fails clearly...
        e = yield self.assertFailure(self.my_connection_id(db), DatabaseUnavailable)
        self.assertIn("lost connection to", str(e))
        self.flushLoggedErrors()  # adbapi logs the failed rollback
        # ...and the pool has reconnected for the next one.
        second = yield self.my_connection_id(db)
        self.assertNotEqual(second, first)

    @defer.inlineCallbacks
    def test_retry_hides_a_dropped_connection(self):
        db = self.open(retries=1)
        first = yield self.my_connection_id(db)
        self.kill(first)
        second = yield self.my_connection_id(db)
        self.assertNotEqual(second, first)
        self.flushLoggedErrors()


class ReconnectPostgresTests(ReconnectSuite, unittest.TestCase):
    dialect = "postgres"


class ReconnectMySQLTests(ReconnectSuite, unittest.TestCase):
    dialect = "mysql"


class EngineSQLTests(unittest.SynchronousTestCase):
    """Dialect differences, as SQL text (the suite runs them for real)."""

    def engines(self):
        pg = DatabaseConfig(dialect="postgres", host="h", port=1, user="u", database="d")
        my = dataclasses.replace(pg, dialect="mysql")
        return SqliteEngine(sqlite_config("x")), PostgresEngine(pg), MySQLEngine(my)

    def test_placeholders(self):
        sqlite, pg, my = self.engines()
        sql = "SELECT a FROM t WHERE a LIKE 'x%' AND b = ?"
        self.assertEqual(sqlite.convert(sql, True), sql)
        self.assertEqual(pg.convert(sql, True), "SELECT a FROM t WHERE a LIKE 'x%%' AND b = %s")
        self.assertEqual(my.convert("SELECT '50%'", False), "SELECT '50%'")

    def test_insert_ignore_and_upsert(self):
        sqlite, pg, my = self.engines()
        self.assertEqual(sqlite.insert_ignore("t", ["a", "b"], 2, "a"),
                         "INSERT OR IGNORE INTO t (a, b) VALUES (?, ?), (?, ?)")
        self.assertEqual(pg.insert_ignore("t", ["a"], 1, "a"),
                         "INSERT INTO t (a) VALUES (?) ON CONFLICT (a) DO NOTHING")
        self.assertEqual(my.insert_ignore("t", ["a"], 1, "a"),
                         "INSERT INTO t (a) VALUES (?) ON DUPLICATE KEY UPDATE a = a")
        self.assertEqual(pg.upsert("t", ["k", "v"], ["k"], ["v"]),
                         "INSERT INTO t (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET "
                         "v = excluded.v")
        self.assertEqual(my.upsert("t", ["k", "v"], ["k"], ["v"]),
                         "INSERT INTO t (k, v) VALUES (?, ?) ON DUPLICATE KEY UPDATE "
                         "v = VALUES(v)")

    def test_types_and_tables(self):
        sqlite, pg, my = self.engines()
        cols = ["seq {SERIAL_PK}", "body {TEXT}"]
        self.assertIn("seq INTEGER PRIMARY KEY AUTOINCREMENT", sqlite.create_table("t", cols)[0])
        self.assertIn("seq BIGSERIAL PRIMARY KEY", pg.create_table("t", cols)[0])
        (stmt,) = my.create_table("t", cols, [("t_body", ["body"], True)])
        self.assertIn("seq BIGINT AUTO_INCREMENT PRIMARY KEY", stmt)
        self.assertIn("UNIQUE KEY t_body (body)", stmt)
        self.assertTrue(stmt.endswith("COLLATE=utf8mb4_bin"))
        self.assertEqual(pg.create_table("t", cols, [("t_b", ["body"], False)])[1],
                         "CREATE INDEX IF NOT EXISTS t_b ON t (body)")
        self.assertEqual(my.int_div("a", "b"), "(a) DIV (b)")
        self.assertEqual(pg.int_div("a", "b"), "(a) / (b)")

    def test_postgres_connect_args_hide_nothing_needed(self):
        pg = PostgresEngine(DatabaseConfig(dialect="postgres", host="h", port=5,
                                           user="u", password="p", database="d",
                                           pg_schema="s"))
        _, kw = pg.connect_args()
        self.assertEqual((kw["host"], kw["port"], kw["dbname"], kw["password"], kw["sslmode"],
                          kw["options"]), ("h", 5, "d", "p", "disable", "-c search_path=s"))
