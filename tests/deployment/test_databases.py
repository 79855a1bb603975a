"""The locator daemon on PostgreSQL and MariaDB (real servers): same behaviour as on SQLite,
and a clear refusal to start when its database is unreachable."""

from __future__ import annotations

import json
import os
import tempfile

from twisted.internet import defer, reactor
from twisted.trial import unittest

from ct.client.session import SessionClient
from tests.deployment.util import OPERATOR, Deployment
from tests.edge.util import close_all, wait_for
from tests.procutil import run_to_exit
from tests.storage.dbs import admin, fresh_database


def write_config(config) -> str:
    database = {"dialect": config.dialect, "host": config.host, "port": config.port,
                "user": config.user, "password": config.password or "",
                "schema": config.database}
    if config.pg_schema:
        database["pgSchema"] = config.pg_schema
    path = os.path.join(tempfile.mkdtemp(prefix="ct-locator-config-"), "locator-config.json")
    with open(path, "w") as f:
        json.dump({"database": database, "locatorMode": True}, f)
    return path


class LocatorOnServerDatabaseMixin:
    dialect = None
    timeout = 180

    def count(self, config, sql, args=()):
        conn = admin(self.dialect)
        try:
            cur = conn.cursor()
            if self.dialect == "postgres":
                cur.execute(f"SET search_path TO {config.pg_schema}")
            else:
                cur.execute(f"USE {config.database}")
            cur.execute(sql, args)
            return cur.fetchone()[0]
        finally:
            conn.close()

    @defer.inlineCallbacks
    def test_suspension_and_audit_live_in_the_server_database(self):
        config = fresh_database(self, self.dialect)
        d = Deployment(self, locator_env={"CT_LOCATOR_CONFIG": write_config(config)})
        port = d.start_locator()
        d.start_edge("e1")
        d.start_edge("e2")
        yield d.wait_online(["e1", "e2"])
        yield d.client().suspend("e1", True, OPERATOR)
        d.locator.stop()
        d.start_locator(port)
        yield d.wait_edges(lambda s: s.get("e1") == "suspended" and s.get("e2") == "online")
        placed = yield d.client().start_session()
        self.assertEqual(placed["edge"], "e2")
        host = SessionClient(reactor, placed["server"], "alice")
        yield host.host()
        guest = SessionClient.from_link(reactor, str(host.link), "bob")
        yield guest.join_link()
        self.addCleanup(close_all, [host, guest])
        yield wait_for(lambda: self.count(
            config, "SELECT COUNT(*) FROM audit_entries WHERE session_id = %s",
            (host.session,)) == 2, timeout=30, step=0.3)
        self.assertEqual(self.count(config, "SELECT COUNT(*) FROM edges WHERE suspended <> 0"), 1)

    def test_unreachable_database_stops_startup_with_a_clear_message(self):
        config = fresh_database(self, self.dialect)
        bad = config.__class__(**{**config.__dict__, "port": 1})
        code, output = run_to_exit("ctlocator", {
            "CT_LOCATOR_CONFIG": write_config(bad), "CT_HTTP_LISTEN": "tcp:0:interface=127.0.0.1",
            "CT_DATA_DIR": tempfile.mkdtemp(), "CT_EDGE_SECRET": "x" * 20})
        self.assertNotEqual(code, 0)
        self.assertIn("locator cannot start: cannot connect to", output)
        self.assertIn(":1", output)
        self.assertNotIn("services available", output)


class PostgresLocatorTests(LocatorOnServerDatabaseMixin, unittest.TestCase):
    dialect = "postgres"


class MariaDBLocatorTests(LocatorOnServerDatabaseMixin, unittest.TestCase):
    dialect = "mysql"
