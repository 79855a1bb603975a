"""Several locators behind HAProxy: placements/s and p99 with 1, 2 and 3 locators on one
PostgreSQL database, and the time from a locator's death to the last failed placement.

Starts real locators (a fresh PostgreSQL schema), three real edges linked through HAProxy
(``docs/examples/haproxy-locators.cfg`` with this run's ports) and drives
``POST /api/v1/sessions`` through HAProxy with ``wrk`` (Debian package). The failover run
places sessions through HAProxy from this process (8 at a time, each retried on a
retryable answer) while one locator is killed with SIGKILL, and reports the failed
attempts and when the last one happened. Goal: throughput does not fall as locators are
added (this machine has 2 cores for everything), failover under 5 s.

    .venv/bin/python bench/locator/ha.py [--seconds 10] [--connections 16]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.locator.placements import _latency  # noqa: E402
from tests.procutil import Daemon  # noqa: E402  (a test helper: starts twistd processes)

SECRET = "bench-edge-secret-0123456789"
EXAMPLE = ROOT / "docs" / "examples" / "haproxy-locators.cfg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Setup:
    """``n`` locators on one fresh PostgreSQL schema, HAProxy in front, three edges."""

    def __init__(self, n: int):
        self.work = tempfile.mkdtemp(prefix="ct-bench-ha-")
        self.schema = "ct_bench_" + uuid.uuid4().hex[:8]
        config = os.path.join(self.work, "locator-config.json")
        with open(config, "w") as f:
            json.dump({"database": {"dialect": "postgres", "host": "127.0.0.1", "port": 5432,
                                    "user": "postgres", "password": "", "schema": "test",
                                    "pgSchema": self.schema}}, f)
        self.locators = []
        self.edges = []
        self.proxy = None
        self.ports = [free_port() for _ in range(3)]
        env = {"CT_EDGE_SECRET": SECRET, "CT_DASHBOARD_PASSWORD": "x" * 16,
               "CT_PLACEMENT_RATE": "0", "CT_LOCATOR_CONFIG": config}
        for i in range(n):
            self.locators.append(Daemon("ctlocator", {
                **env, "CT_DATA_DIR": os.path.join(self.work, f"l{i}"),
                "CT_HTTP_LISTEN": f"tcp:{self.ports[i]}:interface=127.0.0.1"}))
            self.locators[-1].port("HTTP", timeout=60)
        self.proxy_port = free_port()
        text = EXAMPLE.read_text().replace("bind 127.0.0.1:8080",
                                           f"bind 127.0.0.1:{self.proxy_port}")
        text = text.replace("log stdout format raw local0", "").replace("option httplog", "")
        lines = []
        for line in text.splitlines():  # only the locators started in this run
            m = re.search(r"server locator(\d) 127\.0\.0\.1:208\d", line)
            if m:
                i = int(m.group(1)) - 1
                if i >= n:
                    continue
                line = line.replace(f"127.0.0.1:208{i + 1}", f"127.0.0.1:{self.ports[i]}")
            lines.append(line)
        path = os.path.join(self.work, "haproxy.cfg")
        Path(path).write_text("\n".join(lines) + "\n")
        self.proxy = subprocess.Popen(["haproxy", "-db", "-f", path], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.proxy_port}"
        for i in range(3):
            self.edges.append(Daemon("ctedge", {
                "CT_HTTP_LISTEN": "tcp:0:interface=127.0.0.1", "CT_PROBE_INTERVAL": "0",
                "CT_LOCATOR": self.url, "CT_EDGE_SECRET": SECRET, "CT_EDGE_ID": f"e{i}",
                "CT_DATA_DIR": os.path.join(self.work, f"e{i}")}))
        for e in self.edges:
            e.wait_for_log("registered with the locator", timeout=60)
        deadline = time.monotonic() + 30
        while True:  # every locator sees the three edges
            if all(self.edges_on(i) == 3 for i in range(n)):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("edges not seen by every locator")
            time.sleep(0.2)

    def edges_on(self, i: int) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[i]}/health",
                                        timeout=5) as r:
                return json.load(r)["edges_online"]
        except Exception:
            return -1

    def stop(self):
        for d in self.edges + self.locators:
            d.stop()
        if self.proxy is not None:
            self.proxy.terminate()
            self.proxy.wait(timeout=10)
        try:
            import psycopg2

            conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test")
            conn.autocommit = True
            conn.cursor().execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
            conn.close()
        except Exception as e:
            print(f"# could not drop {self.schema}: {e}")


def throughput(n: int, seconds: int, connections: int) -> dict:
    setup = Setup(n)
    try:
        script = os.path.join(setup.work, "post.lua")
        Path(script).write_text('wrk.method = "POST"\n')
        out = subprocess.run(["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s",
                              "--latency", "-s", script, setup.url + "/api/v1/sessions"],
                             capture_output=True, text=True, timeout=seconds + 60).stdout
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        return {"locators": n, "placements/s": rps, "p50 ms": _latency(out, "50%"),
                "p99 ms": _latency(out, "99%"),
                "errors": int(errors.group(1)) if errors else 0}
    finally:
        setup.stop()


def failover(seconds_after: float = 10.0, workers: int = 8) -> dict:
    setup = Setup(3)
    failures: list[tuple[float, str]] = []
    done = [0]
    stop = threading.Event()
    lock = threading.Lock()

    def worker():
        while not stop.is_set():
            for _attempt in range(50):
                try:
                    req = urllib.request.Request(setup.url + "/api/v1/sessions", method="POST")
                    with urllib.request.urlopen(req, timeout=5) as r:
                        r.read()
                    break
                except (urllib.error.URLError, OSError) as e:
                    with lock:
                        failures.append((time.monotonic(), type(e).__name__))
                    time.sleep(0.1)
            with lock:
                done[0] += 1

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    try:
        for t in threads:
            t.start()
        time.sleep(3)
        killed_at = time.monotonic()
        setup.locators[0].kill()
        time.sleep(seconds_after)
        stop.set()
        for t in threads:
            t.join(timeout=10)
        after = [(t - killed_at, why) for t, why in failures if t >= killed_at]
        return {"placements": done[0], "failed attempts": len(after),
                "last failure s after kill": round(max(t for t, _ in after), 2) if after
                else None, "kinds": sorted({w for _, w in after})}
    finally:
        setup.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    for tool in ("wrk", "haproxy"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed: apt-get install {tool}")
    rows = [throughput(n, args.seconds, args.connections) for n in (1, 2, 3)]
    print(f"# placements through HAProxy (3 edges, wrk -c {args.connections}, "
          f"{args.seconds} s, {os.cpu_count()} CPUs for everything)")
    cols = list(rows[0])
    print("  ".join(f"{c:>14}" for c in cols))
    for r in rows:
        print("  ".join(f"{r[c]:>14.2f}" if isinstance(r[c], float) else f"{r[c]:>14}"
                        for c in cols))
    result = failover()
    print("# failover: one of 3 locators killed (SIGKILL) under load, 8 clients retrying")
    for k, v in result.items():
        print(f"{k:>28}: {v}")
    print("reproduce: .venv/bin/python bench/locator/ha.py "
          f"--seconds {args.seconds} --connections {args.connections}")


if __name__ == "__main__":
    main()
