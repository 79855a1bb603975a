#!/usr/bin/env python3
"""Relay benchmark: one ``twistd ctedge`` against the y-websocket server, on loopback.

Both servers are driven by the same Node.js ``ws`` load generator (``node/loadgen.js``),
pinned to another core than the server. Measured per server:

* idle: websocket connections held in groups of 10 (a session or a room each) at each
  step, and the server's resident memory per connection (VmRSS delta from the idle server);
* fan-out of 100-byte frames from 1 sender to N receivers, at fixed rates (latency
  p50/p99 from the sender's send to each receiver's receipt) and closed loop (a window of
  frames in flight: delivered frames/s and server CPU µs per delivered frame, utime+stime
  from /proc/<pid>/stat).

Usage: ``python3 bench/relay/run.py [--quick|--full] [--servers edge,y] [--json out.json]``.
Every wait is bounded; only 127.0.0.1 is used; every process started is stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
NODE_DIR = HERE / "node"
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

EDGE_ENV = {
    "CT_HTTP_LISTEN": "tcp:0:interface=127.0.0.1",
    "CT_PROBE_INTERVAL": "0",
    "CT_RATE_LIMIT": "1000000000",
    "CT_RATE_BURST": "1000000000",
    "CT_MAX_PARTICIPANTS": "10000",
    "CT_MAX_SESSIONS_PER_HOST": "1000000",
    "CT_MAXCONNECTIONS": "0",
}


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def ensure_node_modules() -> None:
    if (NODE_DIR / "node_modules" / "y-websocket").is_dir() and (NODE_DIR / "node_modules" / "ws").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("bench/relay needs node and npm (apt-get install nodejs npm)")
    log("installing node dependencies (npm ci) ...")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, timeout=600)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(cpu: str | None, argv: list[str]) -> list[str]:
    if cpu and shutil.which("taskset"):
        return ["taskset", "-c", cpu, *argv]
    return argv


def proc_cpu(pid: int) -> float:
    """utime + stime of ``pid`` in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def proc_sched(pid: int) -> tuple[float, float]:
    """(seconds running, seconds runnable but waiting for a core) of ``pid``'s main thread."""
    with open(f"/proc/{pid}/schedstat") as f:
        run, wait, _ = f.read().split()
    return int(run) / 1e9, int(wait) / 1e9


def proc_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class Server:
    """One server process (edge or y-websocket) pinned to ``cpu``; stopped by ``stop``."""

    def __init__(self, kind: str, cpu: str | None, python: str):
        self.kind = kind
        self.dir = tempfile.mkdtemp(prefix=f"ct-bench-{kind}-")
        self.log_path = Path(self.dir) / "server.log"
        logf = open(self.log_path, "wb")
        if kind == "edge":
            env = {k: v for k, v in os.environ.items() if not k.startswith("CT_")}
            env.update(EDGE_ENV)
            env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
            twistd = str(Path(python).parent / "twistd")
            argv = [twistd, "-n", "--pidfile=", f"--logfile={self.log_path}", "ctedge"]
            self.proc = subprocess.Popen(pinned(cpu, argv), env=env, cwd=self.dir,
                                         stdout=logf, stderr=subprocess.STDOUT)
            self.port = int(self._wait(r"available on port .*?(\d+) \(HTTP\)").group(1))
        else:
            self.port = free_port()
            env = dict(os.environ, HOST="127.0.0.1", PORT=str(self.port))
            argv = ["node", "--expose-gc", "-r", str(NODE_DIR / "gc_on_signal.js"),
                    str(NODE_DIR / "node_modules/y-websocket/bin/server.cjs")]
            self.proc = subprocess.Popen(pinned(cpu, argv), env=env, cwd=self.dir,
                                         stdout=logf, stderr=subprocess.STDOUT)
            self._wait(r"running at")
        self.pid = self.proc.pid
        self.url = f"ws://127.0.0.1:{self.port}"

    def _wait(self, pattern: str, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.log_path.read_text(errors="replace"))
            if match:
                return match
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited:\n{self.log_path.read_text()}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.kind} server did not start within {timeout} s")

    def cpu(self) -> float:
        return proc_cpu(self.pid)

    def rss(self) -> int:
        return proc_rss(self.pid)

    def full_gc_rss(self) -> int | None:
        """y-websocket only: RSS after a forced full V8 collection (see gc_on_signal.js)."""
        if self.kind != "y":
            return None
        self.proc.send_signal(signal.SIGUSR2)
        return settle_rss(self, 2.0)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


class LoadGen:
    """``node loadgen.js``: JSON events on stdout, commands on stdin."""

    def __init__(self, cpu: str | None, command: str, server: Server, timeout: float, **opts):
        argv = ["node", str(NODE_DIR / "loadgen.js"), command, "--server", server.kind,
                "--url", server.url, "--timeout", str(int(timeout))]
        for key, value in opts.items():
            argv += [f"--{key}", str(value)]
        self.proc = subprocess.Popen(pinned(cpu, argv), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        self.deadline = time.monotonic() + timeout

    def event(self, timeout: float = 300.0) -> dict:
        """The next JSON event (bounded by ``timeout`` and the generator's own time limit)."""
        import select

        limit = min(time.monotonic() + timeout, self.deadline)
        while True:
            left = limit - time.monotonic()
            if left <= 0:
                raise RuntimeError("load generator: no event in time")
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                line = self.proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"load generator exited ({self.proc.wait(timeout=5)})")
                event = json.loads(line)
                if event.get("event") == "error":
                    raise RuntimeError(f"load generator: {event['message']}")
                return event

    def say(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (subprocess.TimeoutExpired, BrokenPipeError, OSError):
                self.proc.kill()
                self.proc.wait(timeout=10)


def settle_rss(server: Server, seconds: float = 2.0) -> int:
    """RSS once it stops moving (bounded): the last of a few samples."""
    time.sleep(seconds / 2)
    last = server.rss()
    for _ in range(10):
        time.sleep(seconds / 4)
        now = server.rss()
        if abs(now - last) < 64 * 1024:
            return now
        last = now
    return last


def run_idle(kind: str, args) -> dict:
    server = Server(kind, args.server_cpu, args.python)
    gen = None
    try:
        time.sleep(0.5)
        base = settle_rss(server, 1.0)
        cpu0 = server.cpu()
        gen = LoadGen(args.client_cpu, "idle", server, timeout=args.idle_timeout,
                      steps=",".join(map(str, args.steps)), group=10)
        steps = []
        for target in args.steps:
            event = gen.event(timeout=args.idle_timeout)
            assert event["event"] == "step", event
            time.sleep(args.idle_wait)  # idle: both servers ping every 20-30 s
            rss = settle_rss(server)
            rss_gc = server.full_gc_rss()
            gen.say("count")
            event = gen.event(timeout=60)
            n = event["connections"]
            held = n - event["closed"]
            previous = steps[-1] if steps else {"connections": 0, "rss": base}
            steps.append({"connections": n, "held": held, "rss": rss,
                          "bytes_per_conn": (rss - base) / max(1, n),
                          "marginal_bytes_per_conn": (rss - previous["rss"])
                          / max(1, n - previous["connections"]),
                          "bytes_per_conn_after_gc": None if rss_gc is None else (rss_gc - base) / max(1, n)})
            log(f"{kind} idle {n} connections ({event['closed']} closed): RSS {rss / 2**20:.1f} MiB, "
                f"{(rss - base) / max(1, n):.0f} B/conn, {steps[-1]['marginal_bytes_per_conn']:.0f} "
                "B/conn since the previous step")
            gen.say("next")
        gen.event(timeout=60)
        return {"base_rss": base, "steps": steps, "setup_cpu_s": server.cpu() - cpu0}
    finally:
        if gen is not None:
            gen.stop()
        server.stop()


def run_fanout(kind: str, receivers: int, rate: int, args) -> dict:
    server = Server(kind, args.server_cpu, args.python)
    gen = None
    try:
        gen = LoadGen(args.client_cpu, "fanout", server, timeout=args.duration + 120,
                      receivers=receivers, rate=rate, duration=args.duration,
                      warmup=args.warmup, window=args.window, size=100)
        gen.event(timeout=60)  # connected
        gen.event(timeout=60)  # warm-up done
        cpu0, t0, sched0 = server.cpu(), time.monotonic(), proc_sched(server.pid)
        gen.say("start")
        done = gen.event(timeout=args.duration + 60)
        cpu1, t1, sched1 = server.cpu(), time.monotonic(), proc_sched(server.pid)
        gen.say("close")
        server_cpu = cpu1 - cpu0
        result = dict(done, receivers=receivers, rate=rate, server_cpu_s=server_cpu,
                      wall_s=t1 - t0)
        result["deliveries_per_s"] = done["deliveries"] / done["seconds"]
        result["us_per_delivery"] = 1e6 * server_cpu / max(1, done["deliveries"])
        result["server_cpu_pct"] = 100 * server_cpu / (t1 - t0)
        result["client_cpu_pct"] = 100 * done["client_cpu_s"] / done["seconds"]
        # time the server was ready to run but its core was busy with another process
        result["server_wait_pct"] = 100 * (sched1[1] - sched0[1]) / (t1 - t0)
        mode = f"{rate}/s" if rate else "closed loop"
        log(f"{kind} fan-out 1->{receivers} {mode}: {result['deliveries_per_s']:.0f} deliveries/s, "
            f"{result['us_per_delivery']:.2f} us/delivery, server CPU {result['server_cpu_pct']:.0f}% "
            f"(waiting for its core {result['server_wait_pct']:.0f}%), "
            f"client CPU {result['client_cpu_pct']:.0f}%, p50 {done['p50_ms']:.3f} ms, "
            f"p99 {done['p99_ms']:.3f} ms, lost {done['lost']}")
        return result
    finally:
        if gen is not None:
            gen.stop()
        server.stop()


def ratio(a, b) -> str:
    if a is None or b in (None, 0):
        return "-"
    return f"{a / b:.2f}"


def table(results: dict, args) -> str:
    kinds = [k for k in ("edge", "y") if k in results]
    head = "| measure | " + " | ".join({"edge": "ct edge", "y": "y-websocket"}[k] for k in kinds)
    head += " | ratio edge/y |" if len(kinds) == 2 else " |"
    rows = [head, "|" + "---|" * (len(kinds) + 1 + (len(kinds) == 2))]

    def row(label, getter, fmt):
        values = []
        for k in kinds:
            try:
                values.append(getter(results[k]))
            except (KeyError, IndexError, TypeError):
                values.append(None)
        cells = [fmt(v) if v is not None else "-" for v in values]
        line = f"| {label} | " + " | ".join(cells)
        if len(kinds) == 2:
            line += f" | {ratio(values[0], values[1])}"
        rows.append(line + " |")

    for i, n in enumerate(args.steps if "idle" in args.only else []):
        row(f"idle: connections held of {n}", lambda r, i=i: r["idle"]["steps"][i]["held"], str)
        row(f"idle: KB per connection at {n} (RSS growth / {n})",
            lambda r, i=i: r["idle"]["steps"][i]["bytes_per_conn"] / 1000, lambda v: f"{v:.2f}")
        row(f"idle: KB per connection at {n} after a forced full GC (y-websocket only)",
            lambda r, i=i: r["idle"]["steps"][i]["bytes_per_conn_after_gc"] / 1000,
            lambda v: f"{v:.2f}")
        row(f"idle: KB per connection added to reach {n}",
            lambda r, i=i: r["idle"]["steps"][i]["marginal_bytes_per_conn"] / 1000,
            lambda v: f"{v:.2f}")
    for n in args.receivers if "fanout" in args.only else []:
        for rate in args.rates:
            key = f"fanout-{n}-{rate}"
            row(f"1→{n} at {rate} frames/s: p50 ms", lambda r, k=key: r[k]["p50_ms"], lambda v: f"{v:.3f}")
            row(f"1→{n} at {rate} frames/s: p99 ms", lambda r, k=key: r[k]["p99_ms"], lambda v: f"{v:.3f}")
            row(f"1→{n} at {rate} frames/s: server CPU µs/delivery",
                lambda r, k=key: r[k]["us_per_delivery"], lambda v: f"{v:.2f}")
            row(f"1→{n} at {rate} frames/s: lost", lambda r, k=key: r[k]["lost"], str)
        key = f"fanout-{n}-0"
        row(f"1→{n} closed loop: deliveries/s", lambda r, k=key: r[k]["deliveries_per_s"],
            lambda v: f"{v:,.0f}")
        row(f"1→{n} closed loop: server CPU µs/delivery", lambda r, k=key: r[k]["us_per_delivery"],
            lambda v: f"{v:.2f}")
        row(f"1→{n} closed loop: server CPU %", lambda r, k=key: r[k]["server_cpu_pct"],
            lambda v: f"{v:.0f}")
        row(f"1→{n} closed loop: server waiting for its core %",
            lambda r, k=key: r[k]["server_wait_pct"], lambda v: f"{v:.0f}")
        row(f"1→{n} closed loop: load generator CPU %", lambda r, k=key: r[k]["client_cpu_pct"],
            lambda v: f"{v:.0f}")
        row(f"1→{n} closed loop: lost", lambda r, k=key: r[k]["lost"], str)
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small run (default): 1k/5k idle, 2 s phases")
    size.add_argument("--full", action="store_true", help="1k/5k/10k/15k idle, 100 and 1000 frames/s, 5 s phases")
    parser.add_argument("--servers", default="edge,y", help="edge,y (default both)")
    parser.add_argument("--only", default="idle,fanout", help="idle,fanout (default both)")
    parser.add_argument("--steps", help="idle connection steps, e.g. 1000,5000")
    parser.add_argument("--receivers", default="10,100")
    parser.add_argument("--rates", help="fixed rates in frames/s, e.g. 100,1000")
    parser.add_argument("--duration", type=float, help="seconds per measured phase")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--window", type=int, default=32, help="closed loop: frames in flight")
    parser.add_argument("--idle-wait", type=float,
                        help="seconds to hold each idle step before measuring (default 2, --full 35: "
                        "a ping round of both servers)")
    parser.add_argument("--nice", type=int, default=0,
                        help="run servers and load generator at this nice level (e.g. -10 on a "
                        "shared machine; needs root for negative values)")
    parser.add_argument("--server-cpu", default="0", help="core for the server (taskset)")
    parser.add_argument("--client-cpu", default="1", help="core for the load generator")
    parser.add_argument("--python", default=str(ROOT / ".venv/bin/python"),
                        help="python whose twistd runs the edge")
    parser.add_argument("--json", help="also write every figure to this file")
    args = parser.parse_args(argv)
    full = args.full
    args.steps = [int(x) for x in (args.steps or ("1000,5000,10000,15000" if full else "1000,5000")).split(",")]
    args.receivers = [int(x) for x in args.receivers.split(",")]
    args.rates = [int(x) for x in (args.rates or ("100,1000" if full else "1000")).split(",")]
    args.duration = args.duration or (5.0 if full else 2.0)
    args.idle_timeout = 120.0 + len(args.steps) * (60.0 + (args.idle_wait or 35.0))
    if args.idle_wait is None:
        args.idle_wait = 35.0 if full else 2.0
    if args.nice:
        try:
            os.nice(args.nice)  # inherited by every process started from here
        except OSError as e:
            log(f"could not change the nice level: {e}")
    servers = args.servers.split(",")
    only = args.only = args.only.split(",")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(args.steps) + 2048  # per process: the server or the load generator
    try:
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        log(f"could not raise the open-files limit to {want} (now {soft}); run as root or ulimit -n")
    ensure_node_modules()

    results: dict = {k: {} for k in servers}
    for kind in servers:
        if "idle" in only:
            results[kind]["idle"] = run_idle(kind, args)
        if "fanout" in only:
            for n in args.receivers:
                for rate in [*args.rates, 0]:
                    results[kind][f"fanout-{n}-{rate}"] = run_fanout(kind, n, rate, args)

    command = "python3 bench/relay/run.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    print(f"\nbench/relay, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, "
          f"server on core {args.server_cpu}, load generator on core {args.client_cpu}, "
          f"nice {os.nice(0)}\n")
    print(table(results, args))
    print(f"\nreproduce: {command}")
    if args.json:
        Path(args.json).write_text(json.dumps({"command": command, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
