"""Files holding the server's data are private to its user (finding 21, SQLite part)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from twisted.trial import unittest

from ct.storage.config import sqlite_config
from ct.storage.engines import create_engine


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


class SqliteFileModeTests(unittest.TestCase):
    def setUp(self):
        old = os.umask(0o022)  # the usual umask outside systemd: files would be 0644
        self.addCleanup(os.umask, old)
        self.path = Path(self.mktemp()) / "locator.sqlite3"

    def open(self):
        engine = create_engine(sqlite_config(str(self.path)))
        args, kwargs = engine.connect_args()
        conn = sqlite3.connect(*args, **kwargs)
        self.addCleanup(conn.close)
        engine.on_connect(conn)
        conn.execute("CREATE TABLE IF NOT EXISTS t (v TEXT)")
        conn.execute("INSERT INTO t VALUES ('audit entry')")
        conn.commit()
        return conn

    def test_finding_21_sqlite_database_wal_and_shm_are_0600(self):
        self.open()
        for name in ("", "-wal", "-shm"):
            path = Path(str(self.path) + name)
            self.assertTrue(path.exists(), path)
            self.assertEqual(mode(path), 0o600, path)

    def test_finding_21_existing_loose_files_are_tightened(self):
        self.open().close()
        for name in ("", "-wal", "-shm"):
            path = Path(str(self.path) + name)
            if path.exists():
                path.chmod(0o644)
        conn = self.open()
        self.assertEqual(conn.execute("SELECT count(*) FROM t").fetchone()[0], 2)
        for name in ("", "-wal", "-shm"):
            self.assertEqual(mode(Path(str(self.path) + name)), 0o600, name)
