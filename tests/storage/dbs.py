"""Throw-away databases on the real servers of this machine, one per test.

* SQLite: a file in the test's temporary directory.
* PostgreSQL: a fresh schema ``ct_test_<random>`` in database ``test`` on
  127.0.0.1:5432 (user postgres), dropped afterwards.
* MariaDB/MySQL: a fresh database ``ct_test_<random>`` on 127.0.0.1:3306 (root,
  no password), dropped afterwards.

``CT_TEST_PG`` / ``CT_TEST_MYSQL`` (``host:port``) point elsewhere. A dialect is
skipped, with the reason, only when its server does not answer; with
``CT_TEST_REQUIRE_DATABASES=1`` (for CI) an unreachable server fails the tests instead.
"""

from __future__ import annotations

import os
import uuid

from twisted.trial.unittest import SkipTest

from ct.storage.config import DatabaseConfig, sqlite_config

PG_HOST, PG_PORT = os.environ.get("CT_TEST_PG", "127.0.0.1:5432").rsplit(":", 1)
MYSQL_HOST, MYSQL_PORT = os.environ.get("CT_TEST_MYSQL", "127.0.0.1:3306").rsplit(":", 1)

_unreachable: dict[str, str] = {}


def _admin_connect(dialect: str):
    if dialect == "postgres":
        import psycopg2

        conn = psycopg2.connect(host=PG_HOST, port=int(PG_PORT), user="postgres",
                                dbname="test", connect_timeout=3)
        conn.autocommit = True
        return conn
    import pymysql

    return pymysql.connect(host=MYSQL_HOST, port=int(MYSQL_PORT), user="root", password="",
                           database="test", connect_timeout=3, autocommit=True)


def _unavailable(reason: str):
    if os.environ.get("CT_TEST_REQUIRE_DATABASES", "").lower() in ("1", "true", "yes"):
        raise AssertionError(reason + " (CT_TEST_REQUIRE_DATABASES is set)")
    raise SkipTest(reason)


def admin(dialect: str):
    """An autocommit connection with rights to create and drop schemas; skips if down."""
    if dialect in _unreachable:
        _unavailable(_unreachable[dialect])
    try:
        return _admin_connect(dialect)
    except Exception as e:
        where = f"{PG_HOST}:{PG_PORT}" if dialect == "postgres" else f"{MYSQL_HOST}:{MYSQL_PORT}"
        _unreachable[dialect] = f"{dialect} server at {where} not reachable: {' '.join(str(e).split())}"
        _unavailable(_unreachable[dialect])


def fresh_database(testcase, dialect: str) -> DatabaseConfig:
    """A new empty database for ``testcase``, removed by its cleanup."""
    if dialect == "sqlite":
        return sqlite_config(os.path.join(testcase.mktemp(), "locator.sqlite3"))
    name = "ct_test_" + uuid.uuid4().hex[:12]
    conn = admin(dialect)
    cur = conn.cursor()
    if dialect == "postgres":
        cur.execute(f"CREATE SCHEMA {name}")
        drop = f"DROP SCHEMA IF EXISTS {name} CASCADE"
        config = DatabaseConfig(dialect="postgres", host=PG_HOST, port=int(PG_PORT),
                                user="postgres", database="test", pg_schema=name)
    else:
        cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        drop = f"DROP DATABASE IF EXISTS {name}"
        config = DatabaseConfig(dialect="mysql", host=MYSQL_HOST, port=int(MYSQL_PORT),
                                user="root", database=name)
    conn.close()

    def remove():
        c = admin(dialect)
        try:
            c.cursor().execute(drop)
        finally:
            c.close()

    testcase.addCleanup(remove)
    return config
