"""A real deployment on loopback: one locator and several edges as twistd processes."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import tempfile
from pathlib import Path

from twisted.internet import defer, reactor

from ct.client.locator import LocatorClient
from tests.edge.util import sleep
from tests.procutil import Daemon
from tests.tlsutil import write_self_signed

EDGE_SECRET = "deployment-test-secret-0123456789"
OPERATOR = ("ctuser", "operator-password")


def self_signed_https(case) -> dict[str, str]:
    """Locator settings for HTTPS with a fresh self-signed certificate (in ``case``'s
    temporary directory)."""
    directory = Path(case.mktemp()).resolve()
    directory.mkdir(parents=True)
    cert, key = write_self_signed(directory)
    return {"CT_HTTPS_LISTEN": "ssl:0:interface=127.0.0.1", "CT_TLS_CERT": str(cert),
            "CT_TLS_KEY": str(key)}


class Deployment:
    def __init__(self, case, locator_env=None, edge_env=None):
        self.case = case
        self.root = tempfile.mkdtemp(prefix="ct-deploy-")
        self.locator_env = {
            "CT_HTTP_LISTEN": "tcp:0:interface=127.0.0.1",
            "CT_EDGE_SECRET": EDGE_SECRET,
            "CT_DASHBOARD_USER": OPERATOR[0], "CT_DASHBOARD_PASSWORD": OPERATOR[1],
            "CT_DATA_DIR": os.path.join(self.root, "locator"),
            "CT_EDGE_DEAD_AFTER": "5", "CT_LINK_GRACE": "60",
            **(locator_env or {})}
        self.edge_env = {
            "CT_HTTP_LISTEN": "tcp:0:interface=127.0.0.1", "CT_EDGE_SECRET": EDGE_SECRET,
            "CT_PROBE_INTERVAL": "0", "CT_REPORT_INTERVAL": "0.5", "CT_METRICS_INTERVAL": "1",
            "CT_TEAM_SECRET": "deployment-team-secret", **(edge_env or {})}
        self.locator = None
        self.locator_port = None
        self.edges: dict[str, Daemon] = {}
        self.edge_urls: dict[str, str] = {}
        case.addCleanup(self.stop_all)

    @property
    def locator_url(self) -> str:
        return f"http://127.0.0.1:{self.locator_port}"

    def client(self, forwarded_for: str | None = None) -> LocatorClient:
        headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else None
        return LocatorClient(reactor, self.locator_url, headers=headers)

    def start_locator(self, port: int | None = None) -> int:
        env = dict(self.locator_env)
        if port is not None:
            env["CT_HTTP_LISTEN"] = f"tcp:{port}:interface=127.0.0.1"
        self.locator = Daemon("ctlocator", env)
        self.locator_port = self.locator.port("HTTP")
        return self.locator_port

    def start_edge(self, name: str, region: str = "default", port: int | None = None,
                   **env) -> str:
        full = {**self.edge_env, "CT_LOCATOR": self.locator_url, "CT_REGION": region,
                "CT_EDGE_ID": name, "CT_DATA_DIR": os.path.join(self.root, name),
                **{k: str(v) for k, v in env.items()}}
        if port is not None:
            full["CT_HTTP_LISTEN"] = f"tcp:{port}:interface=127.0.0.1"
        daemon = Daemon("ctedge", full)
        self.edges[name] = daemon
        self.edge_urls[name] = f"http://127.0.0.1:{daemon.port('HTTP')}"
        return self.edge_urls[name]

    def edge_port(self, name: str) -> int:
        return int(self.edge_urls[name].rsplit(":", 1)[1])

    @defer.inlineCallbacks
    def wait_edges(self, predicate, timeout: float = 30.0):
        """Poll the operator API until ``predicate({edge: state})`` holds."""
        client = self.client()
        waited = 0.0
        while True:
            try:
                listing = yield client.edges(OPERATOR)
                states = {e["edge"]: e["state"] for e in listing["edges"]}
                if predicate(states):
                    return states
            except Exception:
                states = None
            if waited > timeout:
                raise AssertionError(f"edges did not reach the expected states: {states}")
            yield sleep(0.2)
            waited += 0.2

    def wait_online(self, names, timeout: float = 30.0):
        return self.wait_edges(lambda s: all(s.get(n) == "online" for n in names), timeout)

    def audit_rows(self, query: str, args=()):
        """Read the locator's SQLite database directly (tests only)."""
        path = os.path.join(self.locator_env["CT_DATA_DIR"], "locator.sqlite3")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute(query, args).fetchall()
        finally:
            conn.close()

    def stop_all(self):
        for daemon in list(self.edges.values()):
            daemon.stop()
        if self.locator is not None:
            self.locator.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lone_edges(case, names) -> dict[str, int]:
    """Edges without a locator (for a load balancer in front); their HTTP ports."""
    ports = {}
    for name in names:
        daemon = Daemon("ctedge", {"CT_HTTP_LISTEN": "tcp:0:interface=127.0.0.1",
                                   "CT_PROBE_INTERVAL": "0", "CT_EDGE_ID": name})
        case.addCleanup(daemon.stop)
        ports[name] = daemon.port("HTTP")
    return ports


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 10 s; closes its output pipe."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    if proc.stdout is not None:
        proc.stdout.close()
