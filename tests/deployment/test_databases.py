"""The locator daemon on PostgreSQL and MariaDB (real servers): same behaviour as on SQLite,
and a clear refusal to start when its database is unreachable."""

from __future__ import annotations

import json
import os
import tempfile

from twisted.internet import defer, reactor
from twisted.trial import unittest

from tests.deployment.util import OPERATOR, Deployment
from tests.edge.util import host_and_guests, wait_for
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
        host, _ = yield host_and_guests(self, placed["server"])
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


class DatabaseOutageHealthTests(unittest.TestCase):
    """The database goes away under a running locator: /health says so (503), sessions on
    edges go on, and when the database is back the locator recovers by itself."""

    timeout = 120

    @defer.inlineCallbacks
    def test_health_follows_the_database(self):
        import urllib.error
        import urllib.request

        from twisted.internet import threads
        from twisted.protocols.portforward import ProxyFactory

        config = fresh_database(self, "postgres")
        factory = ProxyFactory(config.host, config.port)
        listening = reactor.listenTCP(0, factory, interface="127.0.0.1")
        port = listening.getHost().port
        proxied = config.__class__(**{**config.__dict__, "port": port})
        d = Deployment(self, locator_env={"CT_LOCATOR_CONFIG": write_config(proxied)})
        # The locator runs in another process, so the proxy must keep serving while we wait.
        started = yield threads.deferToThread(d.start_locator)
        url = f"http://127.0.0.1:{started}/health"

        def health():
            try:
                with urllib.request.urlopen(url, timeout=10) as r:
                    return r.status, json.load(r)
            except urllib.error.HTTPError as e:
                return e.code, json.load(e)

        status, body = yield threads.deferToThread(health)
        self.assertEqual((status, body["checks"]["database"]), (200, "ok"))

        yield listening.stopListening()  # the database "goes down"
        from twisted.internet import task

        for _ in range(3):  # drop every proxied connection (pool connections included)
            for conn in [c for c in reactor.getReaders() if hasattr(c, "protocol") and
                         c.protocol.__class__.__name__ in ("ProxyServer", "ProxyClient")]:
                conn.protocol.transport.abortConnection()
            yield task.deferLater(reactor, 0.1, lambda: None)
        status, body = yield threads.deferToThread(health)
        self.assertEqual(status, 503)
        self.assertEqual(body["status"], "failing")
        self.assertIn("failing", body["checks"]["database"])

        listening = reactor.listenTCP(port, factory, interface="127.0.0.1")  # back
        self.addCleanup(listening.stopListening)

        @defer.inlineCallbacks
        def recovered():
            for _ in range(40):
                status, body = yield threads.deferToThread(health)
                if status == 200:
                    return body
                yield task.deferLater(reactor, 0.25, lambda: None)
            raise AssertionError(f"locator did not recover: {body}")

        body = yield recovered()
        self.assertEqual(body["checks"]["database"], "ok")
