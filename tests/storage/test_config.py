"""locator-config.json parsing: typed results and errors that name the field."""

from __future__ import annotations

import json
import os

from twisted.trial import unittest

from ct.storage.config import (
    ConfigError,
    DatabaseConfig,
    TLSConfig,
    load_locator_config,
    parse_locator_config,
)

DATA = "/var/lib/ct-test"


def db(**fields):
    section = {"dialect": "postgres", "user": "ct", "password": "hunter2", "schema": "ctdb"}
    section.update(fields)
    return {"database": section, "locatorMode": True}


class ParseTests(unittest.SynchronousTestCase):
    def parse(self, data):
        return parse_locator_config(data, DATA)

    def error(self, data) -> str:
        return str(self.assertRaises(ConfigError, self.parse, data))

    def test_no_database_section_means_sqlite_in_data_dir(self):
        config = self.parse({"locatorMode": True})
        self.assertEqual(config.database, DatabaseConfig(
            dialect="sqlite", sqlite_path=os.path.join(DATA, "locator.sqlite3")))
        self.assertTrue(config.locator_mode)

    def test_postgres_with_defaults(self):
        config = self.parse(db()).database
        self.assertEqual(config, DatabaseConfig(
            dialect="postgres", host="localhost", port=5432, user="ct", password="hunter2",
            database="ctdb", tls=TLSConfig(mode="disable")))

    def test_mysql_port_default_and_aliases(self):
        config = self.parse(db(dialect="MariaDB", host="db.internal", port="3307")).database
        self.assertEqual((config.dialect, config.host, config.port), ("mysql", "db.internal",
                                                                      3307))
        self.assertEqual(self.parse(db(dialect="mysql")).database.port, 3306)

    def test_postgres_database_and_schema(self):
        config = self.parse(db(database="ct", schema="locator")).database
        self.assertEqual((config.database, config.pg_schema), ("ct", "locator"))

    def test_password_never_shown(self):
        config = self.parse(db()).database
        self.assertNotIn("hunter2", repr(config))
        self.assertNotIn("hunter2", config.describe())
        self.assertEqual(config.describe(),
                         "postgres database 'ctdb' at localhost:5432 as user 'ct' tls=disable")

    def test_tls(self):
        def mode(**fields):
            return self.parse(db(**fields)).database.tls.mode

        self.assertEqual(mode(sslEnabled=True), "verify-full")
        self.assertEqual(mode(sslEnabled=True, rejectUnauthorized=False), "require")
        self.assertEqual(mode(sslEnabled=True, sslMode="VERIFY_CA"), "verify-ca")
        self.assertEqual(mode(sslMode="REQUIRED"), "require")
        self.assertEqual(mode(sslMode="require", rejectUnauthorized=True), "verify-full")
        self.assertEqual(mode(sslEnabled=False), "disable")
        pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
        tls = self.parse(db(sslEnabled=True, ca=pem)).database.tls
        self.assertEqual((tls.ca, tls.verify_certificate, tls.verify_hostname), (pem, True, True))

    def test_errors_name_the_field(self):
        cases = [
            ([], "top level must be a JSON object"),
            ({"database": "x"}, "database must be a JSON object"),
            ({"database": {}}, "database.dialect is required"),
            (db(dialect="oracle"), "database.dialect must be one of mysql, postgres or sqlite"),
            (db(port=70000), "database.port must be at most 65535"),
            (db(port="abc"), "database.port must be a number"),
            (db(port=True), "database.port must be a number"),
            (db(user=None), "database.user is required"),
            (db(schema=None), "database.schema (the database name) is required"),
            (db(password=5), "database.password must be a string"),
            (db(sslMode="sometimes"), "database.sslMode must be one of"),
            (db(sslEnabled="yes"), "database.sslEnabled must be true or false"),
            (db(sslEnabled=False, sslMode="require"), "sslEnabled is false"),
            (db(sslMode="verify-full", rejectUnauthorized=False), "rejectUnauthorized is false"),
            (db(sslEnabled=True, ca="/nonexistent/ca.pem"), "database.ca: file not found"),
            (db(sslEnabled=True, cert="-----BEGIN X"), "cert and database.key must be given"),
            (db(ca="-----BEGIN X"), "TLS is disabled"),
            (db(dialect="mysql", pgSchema="x"), "pgSchema is only meaningful for postgres"),
            (db(hots="typo"), "unknown field(s): hots"),
            ({"locatorMode": "yes"}, "locatorMode must be true or false"),
        ]
        for data, expected in cases:
            message = self.error(data)
            self.assertIn(expected, message, data)
            self.assertNotIn("hunter2", message)

    def test_sqlite_explicit_path(self):
        config = self.parse({"database": {"dialect": "sqlite", "path": "/tmp/x.db"}}).database
        self.assertEqual((config.dialect, config.sqlite_path, config.pool_size),
                         ("sqlite", "/tmp/x.db", 1))


class LoadTests(unittest.SynchronousTestCase):
    def write(self, text) -> str:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_no_file_means_sqlite(self):
        config = load_locator_config(None, "/data")
        self.assertEqual(config.database.sqlite_path, "/data/locator.sqlite3")

    def test_file(self):
        path = self.write(json.dumps(db(dialect="mysql")))
        self.assertEqual(load_locator_config(path, DATA).database.dialect, "mysql")

    def test_errors_name_the_file(self):
        path = self.write("{not json")
        e = self.assertRaises(ConfigError, load_locator_config, path, DATA)
        self.assertIn(f"locator config {path} is not valid JSON", str(e))
        path = self.write(json.dumps(db(port=0)))
        e = self.assertRaises(ConfigError, load_locator_config, path, DATA)
        self.assertIn(f"locator config {path}: database.port must be at least 1", str(e))
        e = self.assertRaises(ConfigError, load_locator_config, "/nonexistent.json", DATA)
        self.assertIn("cannot read locator config /nonexistent.json", str(e))
