"""Session placements per second through the locator's client API, with p50/p99 latency.

Starts a real locator (SQLite, or PostgreSQL through locator-config.json) and three real
edges registered with it, all on loopback, then drives ``POST /api/v1/sessions`` with
``wrk`` (Debian package) on the other core, for each database. Prints a table and the
command to reproduce. Target: >= 2,000 placements/s at p99 < 20 ms on one locator process.

    .venv/bin/python bench/locator/placements.py [--seconds 10] [--connections 16]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.procutil import Daemon  # noqa: E402  (a test helper: starts twistd processes)

SECRET = "bench-edge-secret-0123456789"


def postgres_config(directory: str) -> str:
    schema = "ct_bench_" + uuid.uuid4().hex[:8]
    path = os.path.join(directory, "locator-config.json")
    with open(path, "w") as f:
        json.dump({"database": {"dialect": "postgres", "host": "127.0.0.1", "port": 5432,
                                "user": "postgres", "password": "", "schema": "test",
                                "pgSchema": schema}, "locatorMode": True}, f)
    return path


def run_one(label: str, locator_env: dict, seconds: int, connections: int) -> dict:
    work = tempfile.mkdtemp(prefix="ct-bench-locator-")
    env = {"CT_HTTP_LISTEN": "tcp:0:interface=127.0.0.1", "CT_EDGE_SECRET": SECRET,
           "CT_DATA_DIR": os.path.join(work, "locator"), "CT_DASHBOARD_PASSWORD": "x" * 16,
           "CT_PLACEMENT_RATE": "0",  # one client address: no per-address limit
           **locator_env}
    locator = Daemon("ctlocator", env)
    edges = []
    try:
        port = locator.port("HTTP", timeout=60)
        for i in range(3):
            edges.append(Daemon("ctedge", {
                "CT_HTTP_LISTEN": "tcp:0:interface=127.0.0.1", "CT_PROBE_INTERVAL": "0",
                "CT_LOCATOR": f"http://127.0.0.1:{port}", "CT_EDGE_SECRET": SECRET,
                "CT_EDGE_ID": f"e{i}", "CT_DATA_DIR": os.path.join(work, f"e{i}")}))
        for e in edges:
            e.wait_for_log("registered with the locator", timeout=30)
        # pin: locator on core 0, wrk on core 1
        subprocess.run(["taskset", "-pc", "0", str(locator.proc.pid)], capture_output=True)
        script = os.path.join(work, "post.lua")
        with open(script, "w") as f:
            f.write('wrk.method = "POST"\n')
        url = f"http://127.0.0.1:{port}/api/v1/sessions"
        with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=5) as r:
            assert json.load(r)["edge"].startswith("e")
        before = _cpu(locator.proc.pid)
        out = subprocess.run(["taskset", "-c", "1", "wrk", "-t", "1", "-c", str(connections),
                              "-d", f"{seconds}s", "--latency", "-s", script, url],
                             capture_output=True, text=True, timeout=seconds + 60).stdout
        cpu = _cpu(locator.proc.pid) - before
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        p50 = _latency(out, "50%")
        p99 = _latency(out, "99%")
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        return {"db": label, "placements/s": rps, "p50 ms": p50, "p99 ms": p99,
                "errors": int(errors.group(1)) if errors else 0,
                "locator cpu µs/placement": 1e6 * cpu / max(1.0, rps * seconds)}
    finally:
        for e in edges:
            e.stop()
        locator.stop()


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _latency(out: str, pct: str) -> float:
    m = re.search(rf"\s{re.escape(pct)}\s+([\d.]+)(us|ms|s)", out)
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--dbs", default="sqlite,postgres")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    rows = []
    for db in args.dbs.split(","):
        env = {}
        if db == "postgres":
            env["CT_LOCATOR_CONFIG"] = postgres_config(tempfile.mkdtemp())
        rows.append(run_one(db, env, args.seconds, args.connections))
    cols = list(rows[0])
    print("# locator placements via POST /api/v1/sessions (3 edges registered, wrk -c "
          f"{args.connections}, {args.seconds} s; locator pinned to core 0, wrk to core 1)")
    print("  ".join(f"{c:>24}" for c in cols))
    for r in rows:
        print("  ".join(f"{r[c]:>24.2f}" if isinstance(r[c], float) else f"{r[c]:>24}"
                        for c in cols))
    print("target: >= 2000 placements/s at p99 < 20 ms")
    print("reproduce: .venv/bin/python bench/locator/placements.py "
          f"--seconds {args.seconds} --connections {args.connections} --dbs {args.dbs}")


if __name__ == "__main__":
    main()
