"""Benchmark: our TURN relay and coturn side by side, same clients, pinned cores.

Each server runs pinned to core 0 (coturn with one relay thread); the echo peer
(coturn's ``turnutils_peer``) and the clients (``bench/turn/client.py`` over ChannelData
and over Send/Data indications, and coturn's own ``turnutils_uclient`` over UDP, TCP and
TLS) run on core 1. Server CPU comes from ``/proc/<pid>/stat``, memory from
``/proc/<pid>/status``.

    .venv/bin/python bench/turn/run.py            # full run, about 5 minutes
    .venv/bin/python bench/turn/run.py --quick    # shorter steps, about 2 minutes
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from client import Client  # noqa: E402
from ct.turn import stun  # noqa: E402

SECRET = "bench-secret"
PROFILE = [a for a in os.environ.get("CT_TURN_BENCH_PROFILE", "").split(" ") if a]
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def udp_drops() -> dict[int, int]:
    """Datagrams the kernel dropped per local UDP port (socket buffer full)."""
    out: dict[int, int] = {}
    for path in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = open(path).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            port = int(fields[1].rsplit(":", 1)[1], 16)
            out[port] = out.get(port, 0) + int(fields[-1])
    return out


def free_port() -> int:
    """A port free for UDP and TCP, with the next one free for TCP (the TLS listener)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as t, socket.socket() as tls:
                try:
                    t.bind(("127.0.0.1", port))
                    tls.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


UCLIENT_STEPS = {  # name: uclient flags (-y: its clients relay to each other; -c: no RTCP)
    "udp_channel": [],
    "udp_send": ["-s"],
    "tcp_channel": ["-t"],
    "tcp_send": ["-t", "-s"],
    "tls_channel": ["-t", "-S"],
    "tls_send": ["-t", "-S", "-s"],
}


def uclient(port: int, flags: list[str], clients: int, messages: int) -> dict:
    """coturn's ``turnutils_uclient`` against ``port``: what it sent, received and lost."""
    tls = "-S" in flags
    cmd = ["taskset", "-c", "1", shutil.which("turnutils_uclient"), *flags, "-y", "-c",
           "-m", str(clients), "-n", str(messages), "-l", "160", "-z", "20", "-W", SECRET,
           "-u", "bench", "-p", str(port + 1 if tls else port), "127.0.0.1"]
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, timeout=120)
    output = result.stdout.decode(errors="replace")
    totals = re.findall(r"tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\n", output)
    sent, received = (int(totals[-1][0]), int(totals[-1][1])) if totals else (0, 0)
    jitter = re.findall(r"Average jitter ([\d.]+) ms", output)
    errors = re.findall(r"error \d{3}[^\n]*", output)
    return {"exit": result.returncode, "sent": sent, "received": received,
            "loss": (sent - received) / sent if sent else None,
            "jitter_ms": float(jitter[-1]) if jitter else None, "errors": errors[:3],
            "error_count": len(errors)}


def wait_for_stun(port: int, timeout: float = 20.0) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.sendto(stun.encode_message(stun.BINDING, stun.REQUEST, b"bench-probe!"),
                     ("127.0.0.1", port))
            try:
                s.recv(2048)
                return
            except socket.timeout:
                continue
    raise RuntimeError(f"no STUN answer on port {port}")


def self_signed(workdir: str) -> tuple[str, str]:
    """A throw-away certificate and key for the TLS listeners of both servers."""
    cert, key = os.path.join(workdir, "cert.pem"), os.path.join(workdir, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=localhost", "-keyout", key, "-out", cert], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    return cert, key


def start_ours(port: int, ports: tuple[int, int], workdir: str) -> subprocess.Popen:
    cert, key = os.path.join(workdir, "cert.pem"), os.path.join(workdir, "key.pem")
    env = dict(os.environ, PYTHONPATH=ROOT, CT_TURN_SECRET=SECRET,
               CT_TURN_LISTEN_UDP=f"127.0.0.1:{port}", CT_TURN_LISTEN_TCP=f"127.0.0.1:{port}",
               CT_TURN_LISTEN_TLS=f"127.0.0.1:{port + 1}", CT_TURN_TLS_CERT=cert,
               CT_TURN_TLS_KEY=key, CT_TURN_RELAY_ADDRESS="127.0.0.1",
               CT_TURN_RELAY_PORTS=f"{ports[0]}-{ports[1]}", CT_TURN_ALLOW_PEERS="127.0.0.0/8",
               CT_TURN_REALM="bench",
               # one user on one address opens thousands of allocations and floods them:
               # lift the default quotas, bandwidth and unauthenticated rate limits
               CT_TURN_MAX_ALLOCATIONS="0", CT_TURN_USER_QUOTA="0", CT_TURN_BANDWIDTH="0",
               CT_TURN_UNAUTHENTICATED_RATE="0")
    cmd = ["taskset", "-c", "0", sys.executable, "-c",
           "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=", *PROFILE,
           "-l", os.path.join(workdir, "ours.log"), "ctturn"]
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def start_coturn(port: int, ports: tuple[int, int], workdir: str) -> subprocess.Popen:
    cmd = ["taskset", "-c", "0", shutil.which("turnserver"), "-n",
           "--listening-ip=127.0.0.1", f"--listening-port={port}", "--relay-ip=127.0.0.1",
           f"--min-port={ports[0]}", f"--max-port={ports[1]}", "--use-auth-secret",
           f"--static-auth-secret={SECRET}", "--realm=bench", "--no-dtls",
           f"--tls-listening-port={port + 1}", f"--cert={workdir}/cert.pem",
           f"--pkey={workdir}/key.pem",
           "--allow-loopback-peers", "--no-cli", "--relay-threads=1", "--simple-log",
           "--no-stdout-log", f"--log-file={workdir}/coturn.log",
           f"--pidfile={workdir}/coturn.pid", f"--userdb={workdir}/turndb.sqlite"]
    return subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def measure(name, start, peer, args, workdir) -> dict:
    port = free_port()
    proc = start(port, args.relay_ports, workdir)
    out: dict = {"server": name}
    # Client sockets stay open until the end, so no later session reuses a source
    # port whose deleted allocation the server may still remember (coturn answers 437).
    clients = []
    try:
        wait_for_stun(port)
        pid = proc.pid
        time.sleep(0.5)
        server = ("127.0.0.1", port)

        # allocations/s and memory per allocation
        client = Client(server, peer, SECRET)
        rss0, cpu0 = rss_bytes(pid), cpu_seconds(pid)
        took = client.open(args.allocations, bind=False)
        time.sleep(0.5)
        rss1, cpu1 = rss_bytes(pid), cpu_seconds(pid)
        out["allocations_per_s"] = args.allocations / took
        out["cpu_us_per_allocation"] = (cpu1 - cpu0) * 1e6 / args.allocations
        out["bytes_per_allocation"] = (rss1 - rss0) / args.allocations
        client.delete_all()
        clients.append(client)

        # quiet relay: one stream, paced slower than any batching hold
        client = Client(server, peer, SECRET)
        client.open(1)
        out.update({f"quiet_rtt_{k}": v for k, v in
                    client.rtt(args.quiet_rtt_count, interval=0.02).items()})
        client.delete_all()
        clients.append(client)

        # flood: CPU per echoed message
        client = Client(server, peer, SECRET)
        client.open(args.flood_sessions)
        client.flood(1.0, window=args.window)  # warm-up
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        result = client.flood(args.flood_seconds, window=args.window)
        cpu1, t1 = cpu_seconds(pid), time.monotonic()
        out["flood_echoes_per_s"] = result["echoes"] / (t1 - t0)
        out["flood_cpu_us_per_echo"] = (cpu1 - cpu0) * 1e6 / max(1, result["echoes"])
        out["flood_server_cpu_share"] = (cpu1 - cpu0) / (t1 - t0)
        out["flood_reprimed"] = result["reprimed"]
        time.sleep(1.0)  # let the windows drain
        out.update({f"rtt_{k}": v for k, v in client.rtt(args.rtt_count).items()})
        client.delete_all()
        clients.append(client)

        # the same flood through Send and Data indications (no channel bound)
        client = Client(server, peer, SECRET, mode="indication")
        client.open(args.flood_sessions)
        client.flood(1.0, window=args.window)  # warm-up
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        result = client.flood(args.flood_seconds, window=args.window)
        cpu1, t1 = cpu_seconds(pid), time.monotonic()
        out["send_flood_echoes_per_s"] = result["echoes"] / (t1 - t0)
        out["send_flood_cpu_us_per_echo"] = (cpu1 - cpu0) * 1e6 / max(1, result["echoes"])
        out["send_flood_server_cpu_share"] = (cpu1 - cpu0) / (t1 - t0)
        time.sleep(1.0)
        out.update({f"send_rtt_{k}": v for k, v in client.rtt(args.rtt_count // 2).items()})
        client.delete_all()
        clients.append(client)

        # paced ladder of audio-like streams
        client = Client(server, peer, SECRET)
        client.open(max(args.ladder))
        ladder = {}
        for sessions in args.ladder:
            drops0 = udp_drops()
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            result = client.paced(args.paced_seconds, count=sessions)
            cpu1, t1 = cpu_seconds(pid), time.monotonic()
            drops1 = udp_drops()
            dropped = {p: n - drops0.get(p, 0) for p, n in drops1.items()
                       if n != drops0.get(p, 0)}
            ladder[sessions] = {"loss": result["loss"], "sent": result["sent"],
                                "cpu_share": (cpu1 - cpu0) / (t1 - t0),
                                "client_max_late_s": result["client_max_late_s"],
                                "client_skipped": result["client_skipped"],
                                "kernel_drops_server_socket": dropped.pop(port, 0),
                                "kernel_drops_peer_socket": dropped.pop(peer[1], 0),
                                "kernel_drops_other_sockets": sum(dropped.values())}
        out["ladder"] = ladder
        client.delete_all()
        clients.append(client)

        # the most streams again, through Send and Data indications
        client = Client(server, peer, SECRET, mode="indication")
        client.open(max(args.ladder))
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        result = client.paced(args.paced_seconds, count=max(args.ladder))
        cpu1, t1 = cpu_seconds(pid), time.monotonic()
        out["send_paced"] = {"loss": result["loss"], "sent": result["sent"],
                             "cpu_share": (cpu1 - cpu0) / (t1 - t0)}
        out["rss_end_bytes"] = rss_bytes(pid)
        client.delete_all()
        clients.append(client)

        # coturn's own client over UDP (channels, Send indications), TCP and TLS
        if shutil.which("turnutils_uclient"):
            runs = {}
            for name, flags in UCLIENT_STEPS.items():
                cpu0 = cpu_seconds(pid)
                run = uclient(port, flags, args.uclient_clients, args.uclient_messages)
                run["server_cpu_s"] = cpu_seconds(pid) - cpu0
                runs[name] = run
            out["uclient"] = runs
    finally:
        for client in clients:
            client.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return out


def table(ours: dict, coturn: dict | None, args) -> str:
    rows = []

    def pick(result, key, ladder):
        if result is None:
            return None
        if ladder is None:
            return result.get(key)
        if isinstance(ladder, tuple):  # a nested step: ("uclient", "udp_send")
            return result.get(ladder[0], {}).get(ladder[1], {}).get(key)
        if ladder == "send":
            return result.get("send_paced", {}).get(key)
        return result["ladder"][ladder][key]

    def row(label, key, fmt, better="lower", ladder=None):
        a = pick(ours, key, ladder)
        b = pick(coturn, key, ladder)
        ratio = ""
        if better and a is not None and b not in (None, 0) and a != 0:
            ratio = f"{(b / a if better == 'lower' else a / b):.2f}"
        rows.append(f"| {label} | {fmt.format(a) if a is not None else '-'} | "
                    f"{fmt.format(b) if b is not None else '-'} | {ratio} |")
    row("flood: server CPU µs per echoed message", "flood_cpu_us_per_echo", "{:.1f}")
    row("flood: echoed messages/s (client-bound)", "flood_echoes_per_s", "{:.0f}", "higher")
    row("flood: server CPU share", "flood_server_cpu_share", "{:.2f}")
    row("Send/Data flood: server CPU µs per echoed message", "send_flood_cpu_us_per_echo",
        "{:.1f}")
    row("Send/Data flood: echoed messages/s (client-bound)", "send_flood_echoes_per_s",
        "{:.0f}", "higher")
    for n in args.ladder:
        row(f"paced {n} streams: loss", "loss", "{:.4%}", ladder=n)
        row(f"paced {n} streams: server CPU share", "cpu_share", "{:.3f}", ladder=n)
    n = max(args.ladder)
    row(f"Send/Data paced {n} streams: loss", "loss", "{:.4%}", ladder="send")
    row(f"Send/Data paced {n} streams: server CPU share", "cpu_share", "{:.3f}", ladder="send")
    row("allocations/s (client pipelined 64)", "allocations_per_s", "{:.0f}", "higher")
    row("server CPU µs per allocation", "cpu_us_per_allocation", "{:.0f}")
    row("memory per allocation (bytes, RSS)", "bytes_per_allocation", "{:.0f}")
    row("quiet relay, one stream 20 ms apart: RTT p50 (µs)", "quiet_rtt_p50_us", "{:.0f}")
    row("quiet relay, one stream 20 ms apart: RTT p99 (µs)", "quiet_rtt_p99_us", "{:.0f}")
    row("relayed RTT p50 (µs)", "rtt_p50_us", "{:.0f}")
    row("relayed RTT p99 (µs)", "rtt_p99_us", "{:.0f}")
    row("Send/Data relayed RTT p50 (µs)", "send_rtt_p50_us", "{:.0f}")
    row("Send/Data relayed RTT p99 (µs)", "send_rtt_p99_us", "{:.0f}")
    for name in UCLIENT_STEPS:
        label = f"uclient {name.replace('_', ' ')} ({args.uclient_clients} clients × " \
                f"{args.uclient_messages})"
        row(f"{label}: loss", "loss", "{:.4%}", ladder=("uclient", name))
        row(f"{label}: server CPU s", "server_cpu_s", "{:.2f}", ladder=("uclient", name))
        row(f"{label}: error answers", "error_count", "{}", None, ladder=("uclient", name))
    head = ["| metric | ours | coturn | ratio (ours as a fraction of coturn; >1 better) |",
            "|---|---|---|---|"]
    return "\n".join(head + rows)


def data_path() -> str:
    """Which UDP data path our relay will run (the daemon imports the same tree)."""
    from ct.common.settings import parse_bool
    if not parse_bool(os.environ.get("CT_TURN_FAST_PATH", "true")):
        return "Python (CT_TURN_FAST_PATH=false)"
    from ct.turn.sockets import FAST_PATH
    if FAST_PATH is None:
        return ("Python: ct/turn/_fastpath is not built (make setup, or "
                "python setup.py build_ext --inplace)")
    return "compiled (" + os.path.basename(FAST_PATH.__file__) + ")"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter steps")
    parser.add_argument("--only", choices=("ours", "coturn"))
    parser.add_argument("--json", help="also write the raw figures here")
    args = parser.parse_args(argv)
    args.relay_ports = (50000, 59999)
    args.allocations = 1000 if args.quick else 2000
    args.flood_sessions = 8
    args.window = 16
    args.flood_seconds = 3.0 if args.quick else 8.0
    args.paced_seconds = 4.0 if args.quick else 10.0
    args.ladder = [100, 200, 400]
    args.rtt_count = 500 if args.quick else 2000
    args.quiet_rtt_count = 200 if args.quick else 1000
    args.uclient_clients = 10 if args.quick else 20
    args.uclient_messages = 50 if args.quick else 200
    if os.cpu_count() < 2:
        print("needs two cores", file=sys.stderr)
        return 2
    os.sched_setaffinity(0, {1})
    workdir = tempfile.mkdtemp(prefix="turn-bench-")
    self_signed(workdir)
    peer_port = free_port()
    peer = subprocess.Popen(["taskset", "-c", "1", shutil.which("turnutils_peer"),
                             "-L", "127.0.0.1", "-p", str(peer_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = {}
    path = data_path()
    print(f"our relay's UDP data path: {path}", file=sys.stderr)
    try:
        time.sleep(0.5)
        peer_addr = ("127.0.0.1", peer_port)
        if args.only in (None, "ours"):
            results["ours"] = measure("ours", start_ours, peer_addr, args, workdir)
            results["ours"]["data_path"] = path
        if args.only in (None, "coturn") and shutil.which("turnserver"):
            results["coturn"] = measure("coturn", start_coturn, peer_addr, args, workdir)
    finally:
        peer.terminate()
        peer.wait(5)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    if "ours" in results:
        print(table(results["ours"], results.get("coturn"), args))
    else:
        print(json.dumps(results, indent=2))
    print()
    print(f"our relay's UDP data path: {path}")
    print("reproduce: cd " + ROOT + " && .venv/bin/python bench/turn/run.py"
          + (" --quick" if args.quick else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
