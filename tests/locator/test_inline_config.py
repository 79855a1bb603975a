"""``CT_LOCATOR_CONFIG`` holding the JSON itself, as deployments of the product we replace
pass it (issue 15, item 2): same validation, same messages, never logged."""

from __future__ import annotations

import json
import tempfile
import urllib.request

from twisted.trial import unittest

from ct.locator.settings import parse_locator_config_source
from ct.storage.config import ConfigError, InlineConfig, load_locator_config
from tests.procutil import Daemon, run_to_exit
from tests.storage.dbs import fresh_database

SECRET = "inline-config-edge-secret"
PASSWORD = "inline-config-password-7d1f"  # PostgreSQL here trusts; it must not reach the log


def inline(config) -> str:
    database = {"dialect": "postgres", "host": config.host, "port": config.port,
                "user": config.user, "password": PASSWORD, "database": config.database,
                "pgSchema": config.pg_schema}
    return json.dumps({"database": database, "locatorMode": True})


class InlineConfigUnitTests(unittest.TestCase):
    def test_a_value_starting_with_a_brace_is_json_and_never_shown(self):
        value = parse_locator_config_source('  {"database": {"password": "x"}}')
        self.assertIsInstance(value, InlineConfig)
        self.assertNotIn("password", repr(value))

    def test_a_path_is_still_a_path(self):
        path = tempfile.mktemp()
        with open(path, "w") as f:
            f.write("{}")
        self.assertEqual(parse_locator_config_source(path), path)

    def test_same_messages_as_a_file(self):
        with self.assertRaisesRegex(ConfigError, r"locator config \(inline JSON in "
                                                 r"CT_LOCATOR_CONFIG\) is not valid JSON"):
            load_locator_config(InlineConfig("{nope"), tempfile.mkdtemp())
        with self.assertRaisesRegex(ConfigError, r"\(inline JSON in CT_LOCATOR_CONFIG\): "
                                                 r"database.port must be at most 65535"):
            load_locator_config(InlineConfig(
                '{"database": {"dialect": "postgres", "user": "u", "port": 70000}}'),
                tempfile.mkdtemp())


class InlineConfigDaemonTests(unittest.TestCase):
    timeout = 90

    def test_locator_runs_on_postgres_from_inline_json(self):
        config = fresh_database(self, "postgres")
        daemon = Daemon("ctlocator", {
            "CT_HTTP_LISTEN": "tcp:0:interface=127.0.0.1", "CT_EDGE_SECRET": SECRET,
            "CT_DASHBOARD_PASSWORD": "operator-password", "CT_DATA_DIR": tempfile.mkdtemp(),
            "CT_LOCATOR_CONFIG": inline(config)})
        self.addCleanup(daemon.stop)
        port = daemon.port("HTTP")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as answer:
            self.assertEqual(answer.status, 200)
        log = daemon.log()
        self.assertIn("postgres", log)
        self.assertIn("CT_LOCATOR_CONFIG=<inline JSON", log)
        self.assertNotIn(PASSWORD, log)

    def test_bad_inline_json_stops_start_up_with_one_line(self):
        code, output = run_to_exit("ctlocator", {
            "CT_LOCATOR_CONFIG": '{"database": {"dialect": "postgres", "user": "u", '
                                 '"port": 70000, "password": "' + PASSWORD + '"}}',
            "CT_HTTP_LISTEN": "tcp:0:interface=127.0.0.1", "CT_DATA_DIR": tempfile.mkdtemp()})
        self.assertEqual(code, 1)
        self.assertIn("locator config (inline JSON in CT_LOCATOR_CONFIG): database.port must be "
                      "at most 65535", output)
        self.assertNotIn("Traceback", output)
        self.assertNotIn(PASSWORD, output)
