"""A PostgreSQL server of a test's own, which the test may stop, start and restart.

The shared server on 127.0.0.1:5432 serves every other test, so a test that restarts
PostgreSQL gets its own: ``initdb`` into a temporary directory, ``pg_ctl`` on a free
loopback port, trust authentication, stopped and removed by the test's cleanup. As root
the server runs as the ``postgres`` system user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile

from twisted.trial.unittest import SkipTest

from ct.storage.config import DatabaseConfig
from tests.deployment.test_haproxy import free_port


def _bindir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return os.path.dirname(found[-1]) if found else None


class PrivatePostgres:
    """One throw-away cluster; :meth:`config` gives the locator its database."""

    def __init__(self, case):
        self.bindir = _bindir()
        if self.bindir is None:
            raise SkipTest("PostgreSQL server binaries are not installed "
                           "(/usr/lib/postgresql/*/bin)")
        self.as_user = None
        if os.geteuid() == 0:
            try:
                self.as_user = pwd.getpwnam("postgres")
            except KeyError:
                raise SkipTest("running as root without a 'postgres' user to run the server")
        self.root = tempfile.mkdtemp(prefix="ct-pg-")
        self.data = os.path.join(self.root, "data")
        self.port = free_port()
        self.logfile = os.path.join(self.root, "server.log")
        if self.as_user is not None:
            os.chown(self.root, self.as_user.pw_uid, self.as_user.pw_gid)
        case.addCleanup(self.remove)
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8")
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                    f"unix_socket_directories = '{self.root}'\nfsync = off\n"
                    "max_connections = 200\n")
        self.start()
        conn = self.admin()
        try:
            conn.cursor().execute("CREATE SCHEMA ct")
        finally:
            conn.close()

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        command = [os.path.join(self.bindir, tool), *args]
        if self.as_user is not None:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              cwd=self.root)
        if done.returncode != 0:
            raise AssertionError(f"{tool} failed ({done.returncode}): "
                                 f"{done.stdout}{done.stderr}{self.log()}")

    def log(self) -> str:
        try:
            with open(self.logfile) as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def start(self) -> None:
        self._run("pg_ctl", "-D", self.data, "-l", self.logfile, "-w", "-t", "30", "start")

    def stop(self) -> None:
        """A fast shutdown: every open connection is terminated by the server."""
        self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "30", "stop")

    def restart(self) -> None:
        self._run("pg_ctl", "-D", self.data, "-l", self.logfile, "-m", "fast", "-w",
                  "-t", "30", "restart")

    def config(self) -> DatabaseConfig:
        return DatabaseConfig(dialect="postgres", host="127.0.0.1", port=self.port,
                              user="postgres", database="postgres", pg_schema="ct")

    def admin(self):
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres",
                                dbname="postgres", connect_timeout=3)
        conn.autocommit = True
        return conn

    def remove(self) -> None:
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            try:
                self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
            except Exception:
                pass
        shutil.rmtree(self.root, ignore_errors=True)
