#!/usr/bin/python3
"""Build, lint, install, run, remove and purge the Debian packages on this machine.

    packaging/test-packages.py [--debs DIR] [--keep-build]

Steps (each printed as it runs):
  1. copy the source tree (tracked and untracked, not ignored files) to a scratch
     directory and run ``dpkg-buildpackage -us -uc -b`` there (or take the .deb
     files of ``--debs DIR``);
  2. ``lintian`` on the result: no errors allowed;
  3. ``systemd-analyze security --offline=true`` on every unit (exposure < 3.0,
     also with the privileged-ports drop-in);
  4. ``apt-get install`` the packages here; check user, directories, modes, the
     generated Twisted plugin cache, that nothing is enabled or started;
  5. ``systemd-analyze verify`` on the installed units;
  6. edit the installed configuration (test ports on 127.0.0.1), reinstall the
     same packages as an upgrade and check the edits survived;
  7. start edge, locator and TURN relay from the installed unit files as systemd
     would (packaging/run-unit.py: User=, EnvironmentFile=, ExecStart=, a private
     mount namespace with ProtectSystem=strict ...), GET /health from edge and
     locator, a STUN Binding request to the relay, then SIGTERM and a clean exit;
  8. ``dpkg --remove`` (configuration stays), ``dpkg --purge``: nothing is left
     (files, directories, user, group, systemd helper state).

Needs root on Debian 12 with dpkg-dev, debhelper, dh-virtualenv, lintian,
python3-venv and systemd (for systemd-analyze). Refuses to run when codetogether
packages, the codetogether user or its directories already exist. Whatever
happens, the packages are purged at the end so the machine is left as found.
"""

from __future__ import annotations

import glob
import hashlib
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
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_UNIT = os.path.join(ROOT, "packaging", "run-unit.py")
PACKAGES = ["codetogether-edge", "codetogether-locator", "codetogether-turn",
            "codetogether-runtime"]
UNITS = {"ctedge": "codetogether-edge", "ctlocator": "codetogether-locator",
         "ctturn": "codetogether-turn"}
UNIT_DIR = "/lib/systemd/system"
RUNTIME = "/opt/codetogether/runtime"
CREATED_PATHS = ["/etc/codetogether", "/var/lib/codetogether", "/var/log/codetogether",
                 "/opt/codetogether", "/usr/share/codetogether"]
TOOLS = {"dpkg-buildpackage": "dpkg-dev", "dh": "debhelper", "dh_virtualenv": "dh-virtualenv",
         "lintian": "lintian", "systemd-analyze": "systemd", "apt-get": "apt",
         "mount": "mount"}
MAX_EXPOSURE = 3.0
BUILD_ENV_DROP = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")


class Failure(Exception):
    pass


def step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def info(text: str) -> None:
    print(f"    {text}", flush=True)


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Failure(message)
    info(f"ok: {message}")


def run(cmd: list[str], *, env=None, cwd=None, quiet=False, check_rc=True,
        timeout=900) -> subprocess.CompletedProcess:
    if not quiet:
        info("$ " + " ".join(cmd))
    proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if check_rc and proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-60:])
        raise Failure(f"{' '.join(cmd)} exited {proc.returncode}:\n{tail}")
    return proc


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in BUILD_ENV_DROP}
    env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
    env["DEBIAN_FRONTEND"] = "noninteractive"
    env["LC_ALL"] = "C.UTF-8"
    return env


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- preflight


def installed_packages() -> list[str]:
    proc = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Abbrev}\n",
                           "codetogether-*"], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True)
    out = []
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1] not in ("un", "pn"):
            out.append(parts[0])
    return out


def leftovers() -> list[str]:
    """What an install leaves behind on this machine, if anything."""
    found = [p for p in CREATED_PATHS if os.path.lexists(p)]
    found += [f"package {p}" for p in installed_packages()]
    for db, name in (("passwd", "codetogether"), ("group", "codetogether")):
        if run(["getent", db, name], quiet=True, check_rc=False).returncode == 0:
            found.append(f"{db} entry {name}")
    found += glob.glob("/var/lib/systemd/deb-systemd-helper-*/**/ct*.service", recursive=True)
    found += glob.glob("/etc/systemd/system/**/ct*.service", recursive=True)
    found += glob.glob(f"{UNIT_DIR}/ct*.service")
    return found


def preflight() -> None:
    step("preflight")
    if os.geteuid() != 0:
        raise Failure("must run as root (installs packages on this machine)")
    if not os.path.exists("/etc/debian_version"):
        raise Failure("needs Debian")
    missing = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
    if missing:
        raise Failure("missing tools; install: apt-get install " + " ".join(missing))
    dirty = leftovers()
    if dirty:
        raise Failure("refusing to run: this machine already has " + ", ".join(dirty)
                      + " (purge with: dpkg --purge " + " ".join(PACKAGES) + ")")
    info("debian " + open("/etc/debian_version").read().strip()
         + "; no codetogether packages, user or directories present")


# ---------------------------------------------------------------- build


def source_files() -> list[str]:
    proc = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    if proc.returncode == 0:
        return [f for f in proc.stdout.decode().split("\0") if f and os.path.isfile(
            os.path.join(ROOT, f))]
    skip = {".git", ".venv", ".run", "test-artifacts", ".pytest_cache", ".hypothesis"}
    out = []
    for top, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in skip and not d.endswith(".egg-info")]
        out += [os.path.relpath(os.path.join(top, f), ROOT) for f in files]
    return out


def build(scratch: str) -> list[str]:
    step("build: dpkg-buildpackage -us -uc -b")
    src = os.path.join(scratch, "src")
    for rel in source_files():
        dest = os.path.join(src, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, rel), dest)
    info(f"source copied to {src}")
    started = time.monotonic()
    log = os.path.join(scratch, "build.log")
    with open(log, "w") as out:
        proc = subprocess.run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src,
                              env=clean_env(), stdout=out, stderr=subprocess.STDOUT,
                              timeout=1200)
    if proc.returncode != 0:
        tail = "".join(open(log).readlines()[-60:])
        raise Failure(f"dpkg-buildpackage failed ({proc.returncode}); end of {log}:\n{tail}")
    debs = sorted(glob.glob(os.path.join(scratch, "*.deb")))
    info(f"built in {time.monotonic() - started:.0f} s: "
         + ", ".join(f"{os.path.basename(d)} ({os.path.getsize(d) // 1024} KiB)" for d in debs))
    return debs


def check_deb_contents(debs: list[str]) -> None:
    step("package contents")
    names = {}
    for deb in debs:
        name = run(["dpkg-deb", "-f", deb, "Package"], quiet=True).stdout.strip()
        names[name] = deb
        listing = run(["dpkg-deb", "-c", deb], quiet=True).stdout
        check("dropin.cache" not in listing and "__pycache__" not in listing,
              f"{name}: no dropin.cache, no __pycache__ shipped")
    check(sorted(names) == sorted(PACKAGES), "packages: " + ", ".join(sorted(names)))
    listing = run(["dpkg-deb", "-c", names["codetogether-runtime"]], quiet=True).stdout
    for path in (f".{RUNTIME}/bin/twistd", "/site-packages/twisted/plugins/ct_plugins.py",
                 "/site-packages/ct_service_log.py", "/site-packages/ct/edge/tap.py",
                 "/site-packages/ct/webclient/static/join.js",
                 "/site-packages/ct/webclient/static/join.css",
                 "/site-packages/ct/turn/_fastpath.cpython-"):
        check(path in listing, f"runtime ships {path.lstrip('.')}")


def lint(scratch: str, debs: list[str]) -> None:
    step("lintian (errors fail)")
    changes = glob.glob(os.path.join(scratch, "*.changes"))
    targets = changes or debs
    proc = run(["lintian", "--fail-on", "error", *targets], env=clean_env(), check_rc=False,
               timeout=900)
    lines = [l for l in proc.stdout.splitlines() if re.match(r"^[EWIPO]: ", l)]
    counts: dict[str, int] = {}
    for line in lines:
        tag = line.split()[0] + " " + line.split()[2]
        counts[tag] = counts.get(tag, 0) + 1
    for tag, n in sorted(counts.items()):
        info(f"{n:5d} {tag}")
    errors = [l for l in lines if l.startswith("E: ")]
    check(proc.returncode == 0 and not errors,
          "lintian: no errors" if not errors else "lintian errors:\n" + "\n".join(errors[:30]))


# ---------------------------------------------------------------- units


def exposure(unit_path: str) -> tuple[float, str]:
    proc = run(["systemd-analyze", "security", "--offline=true", "--no-pager", unit_path],
               quiet=True, check_rc=False)
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", proc.stdout)
    if not match:
        raise Failure(f"systemd-analyze security gave no figure for {unit_path}:\n"
                      + proc.stdout[-2000:])
    return float(match.group(1)), match.group(2)


def analyze_security(scratch: str, debs: list[str]) -> dict[str, float]:
    step("systemd-analyze security --offline=true (exposure must be < 3.0)")
    extract = os.path.join(scratch, "extract")
    for deb in debs:
        run(["dpkg-deb", "-x", deb, extract], quiet=True)
    drop_in = open(os.path.join(extract, "usr/share/codetogether/examples/"
                                "privileged-ports.conf")).read()
    figures = {}
    for unit in UNITS:
        path = os.path.join(extract, UNIT_DIR.lstrip("/"), unit + ".service")
        level, word = exposure(path)
        figures[unit] = level
        check(level < MAX_EXPOSURE, f"{unit}.service exposure {level} {word}")
        # The same unit with the drop-in for ports below 1024 appended.
        variant = os.path.join(scratch, "lowports", unit + ".service")
        os.makedirs(os.path.dirname(variant), exist_ok=True)
        with open(variant, "w") as f:
            f.write(open(path).read() + "\n" + drop_in)
        level, word = exposure(variant)
        figures[unit + "+privileged-ports"] = level
        check(level < MAX_EXPOSURE,
              f"{unit}.service with privileged-ports.conf exposure {level} {word}")
    return figures


def verify_units() -> None:
    step("systemd-analyze verify (installed units)")
    paths = [os.path.join(UNIT_DIR, u + ".service") for u in UNITS]
    proc = run(["systemd-analyze", "verify", *paths], check_rc=False)
    relevant = [l for l in proc.stdout.splitlines() if "ct" in l and ".service" in l]
    for line in proc.stdout.splitlines():
        info("| " + line)
    check(proc.returncode == 0 and not relevant, "systemd-analyze verify accepts "
          + ", ".join(os.path.basename(p) for p in paths))


# ---------------------------------------------------------------- install


def apt(*args: str) -> None:
    """apt-get, waiting for the dpkg lock other jobs on this machine may hold."""
    run(["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=600", *args], env=clean_env(),
        timeout=1200)


def apt_install(debs: list[str], *extra: str) -> None:
    apt("install", "--no-install-recommends", *extra, *[os.path.abspath(d) for d in debs])


def mode_owner(path: str) -> str:
    st = os.stat(path)
    import grp
    import pwd
    return f"{st.st_mode & 0o7777:04o} {pwd.getpwuid(st.st_uid).pw_name}:" \
           f"{grp.getgrgid(st.st_gid).gr_name}"


def check_installed() -> None:
    step("installed layout")
    check(run(["getent", "passwd", "codetogether"], quiet=True, check_rc=False).returncode == 0,
          "system user codetogether exists")
    shell = run(["getent", "passwd", "codetogether"], quiet=True).stdout.strip().split(":")[-1]
    check(shell.endswith("nologin"), f"its shell is {shell}")
    for path, want in (("/etc/codetogether", "0750 root:codetogether"),
                       ("/var/lib/codetogether", "0750 codetogether:codetogether"),
                       ("/var/log/codetogether", "0750 codetogether:codetogether")):
        check(mode_owner(path) == want, f"{path} is {want}")
    for name in ("edge.env", "locator.env", "locator-config.json", "turn.env"):
        path = f"/etc/codetogether/{name}"
        check(os.path.isfile(path) and mode_owner(path) == "0640 root:codetogether",
              f"{path} installed 0640 root:codetogether")
        check(open(path).read() == open(f"/usr/share/codetogether/examples/{name}").read(),
              f"{name} is the commented example")
    json.load(open("/etc/codetogether/locator-config.json"))
    caches = glob.glob(f"{RUNTIME}/lib/python3*/site-packages/twisted/plugins/dropin.cache")
    check(len(caches) == 1, "postinst generated the Twisted plugin cache")
    owned = run(["dpkg", "-L", "codetogether-runtime"], quiet=True).stdout
    check("dropin.cache" not in owned, "the plugin cache is not a packaged file")
    check(glob.glob(f"{RUNTIME}/lib/python3*/site-packages/ct/__pycache__/*.pyc") != [],
          "postinst compiled the byte code")
    for unit in UNITS:
        wants = f"/etc/systemd/system/multi-user.target.wants/{unit}.service"
        check(not os.path.exists(wants), f"{unit} not enabled on first install")
    proc = run([f"{RUNTIME}/bin/twistd", "--help"], quiet=True)
    for unit in UNITS:
        check(unit in proc.stdout, f"twistd lists the {unit} plugin")


def set_env(path: str, values: dict[str, str]) -> None:
    """Edit an env file as an operator would: change or append NAME=value lines."""
    lines = open(path).read().splitlines()
    for key, value in values.items():
        lines.append(f"{key}={value}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def configure() -> dict[str, int]:
    step("configure test ports in /etc/codetogether (as an operator would)")
    ports = {"edge": free_port(), "locator": free_port(), "turn": free_port(socket.SOCK_DGRAM)}
    relay = free_port(socket.SOCK_DGRAM)
    set_env("/etc/codetogether/edge.env", {
        "CT_HTTP_LISTEN": f"tcp:{ports['edge']}:interface=127.0.0.1",
        "CT_PROBE_INTERVAL": "1",
        "CT_LOCATOR": f"http://127.0.0.1:{ports['locator']}",
        "CT_EDGE_SECRET": "packaging-test-secret-0123456789",
        "CT_DRAIN_TIMEOUT": "2",
    })
    set_env("/etc/codetogether/locator.env", {
        "CT_HTTP_LISTEN": f"tcp:{ports['locator']}:interface=127.0.0.1",
        "CT_EDGE_SECRET": "packaging-test-secret-0123456789",
    })
    set_env("/etc/codetogether/turn.env", {
        "CT_TURN_LISTEN_UDP": f"127.0.0.1:{ports['turn']}",
        "CT_TURN_LISTEN_TCP": "none",
        "CT_TURN_LISTEN_TLS": "none",
        "CT_TURN_RELAY_ADDRESS": "127.0.0.1",
        "CT_TURN_RELAY_PORTS": f"{relay}-{relay}",
        "CT_TURN_SECRET": "packaging-test-turn-secret",
    })
    for name, port in ports.items():
        info(f"{name}: 127.0.0.1:{port}")
    return ports


def digests() -> dict[str, str]:
    return {p: hashlib.sha256(open(p, "rb").read()).hexdigest()
            for p in sorted(glob.glob("/etc/codetogether/*"))}


def reinstall_keeps_config(debs: list[str]) -> None:
    step("upgrade path: reinstall the same packages; edited configuration must survive")
    before = digests()
    apt_install(debs, "--reinstall")
    after = digests()
    check(before == after, "configuration files unchanged: "
          + ", ".join(os.path.basename(p) for p in after))
    caches = glob.glob(f"{RUNTIME}/lib/python3*/site-packages/twisted/plugins/dropin.cache")
    check(len(caches) == 1, "plugin cache regenerated after the upgrade")


# ---------------------------------------------------------------- run services


class Service:
    def __init__(self, unit: str, scratch: str):
        self.unit = unit
        self.path = os.path.join(UNIT_DIR, unit + ".service")
        self.journal = os.path.join(scratch, unit + ".journal")
        self.proc = None

    def start(self) -> None:
        plan = run(["/usr/bin/python3", RUN_UNIT, "--show", self.path], quiet=True).stdout
        for line in plan.splitlines():
            if line.split(":")[0] in ("argv", "user", "cwd", "umask", "directories",
                                      "protect_system", "timeout_stop"):
                info(f"{self.unit} {line}")
        self.out = open(self.journal, "w")
        self.proc = subprocess.Popen(["/usr/bin/python3", RUN_UNIT, self.path],
                                     stdout=self.out, stderr=subprocess.STDOUT,
                                     env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        info(f"{self.unit} started, pid {self.proc.pid}")

    def output(self) -> str:
        if not self.out.closed:
            self.out.flush()
        return open(self.journal).read()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise Failure(f"{self.unit} did not stop within {timeout} s of SIGTERM")
        self.out.close()
        return self.proc.returncode


def get_health(service: Service, port: int, deadline_s: float = 60.0) -> dict:
    url = f"http://127.0.0.1:{port}/health"
    deadline = time.monotonic() + deadline_s
    last_error = None
    while time.monotonic() < deadline:
        if not service.alive():
            raise Failure(f"{service.unit} exited ({service.proc.returncode}) before "
                          f"answering /health:\n{service.output()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                body = json.loads(response.read())
                info(f"GET {url} -> {response.status} {json.dumps(body)[:300]}")
                return body
        except urllib.error.HTTPError as e:
            last_error = f"HTTP {e.code} {e.read()[:300]!r}"
        except (OSError, ValueError) as e:
            last_error = str(e)
        time.sleep(0.5)
    raise Failure(f"{url} did not answer 200 within {deadline_s} s ({last_error}):\n"
                  + service.output()[-3000:])


def wait_for_health(service: Service, port: int, wanted, deadline_s: float = 30.0,
                    step_s: float = 1.0) -> dict:
    """The service's /health once ``wanted(body)`` holds (or the last answer)."""
    deadline = time.monotonic() + deadline_s
    body = {}
    while time.monotonic() < deadline:
        body = get_health(service, port)
        if wanted(body):
            break
        time.sleep(step_s)
    return body


def stun_binding(port: int, service: Service, deadline_s: float = 30.0) -> str:
    """A STUN Binding request (RFC 8489) to the relay; returns the response type."""
    txid = os.urandom(12)
    request = (0x0001).to_bytes(2, "big") + (0).to_bytes(2, "big") \
        + (0x2112A442).to_bytes(4, "big") + txid
    deadline = time.monotonic() + deadline_s
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        while time.monotonic() < deadline:
            if not service.alive():
                raise Failure(f"{service.unit} exited before answering STUN:\n"
                              + service.output()[-3000:])
            s.sendto(request, ("127.0.0.1", port))
            try:
                data, _ = s.recvfrom(2048)
            except socket.timeout:
                continue
            if len(data) >= 20 and data[8:20] == txid:
                return f"0x{int.from_bytes(data[:2], 'big'):04x}"
    raise Failure(f"no STUN answer from 127.0.0.1:{port} within {deadline_s} s")


class WebSocket:
    """Just enough of a websocket client (RFC 6455) to host a session on the edge."""

    def __init__(self, port: int, path: str):
        import base64

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise Failure(f"edge closed the websocket handshake on {path}")
            head += chunk
        head, self.buffer = head.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise Failure(f"websocket handshake refused: {head[:200]!r}")

    def send_json(self, message: dict) -> None:
        payload = json.dumps(message).encode()
        mask = os.urandom(4)
        if len(payload) < 126:
            header = bytes([0x81, 0x80 | len(payload)])
        else:
            header = bytes([0x81, 0x80 | 126]) + len(payload).to_bytes(2, "big")
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Failure("websocket closed without a close frame")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def frame(self) -> tuple[int, bytes]:
        first, second = self._read(2)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(self._read(2), "big")
        elif length == 127:
            length = int.from_bytes(self._read(8), "big")
        return first & 0x0F, self._read(length)

    def next_json(self) -> dict:
        for _ in range(50):
            opcode, payload = self.frame()
            if opcode == 0x1:
                return json.loads(payload)
            if opcode == 0x8:
                raise Failure(f"websocket closed: {payload!r}")
        raise Failure("no text frame")

    def close_code(self) -> tuple[int, str]:
        for _ in range(1000):
            opcode, payload = self.frame()
            if opcode == 0x8:
                if len(payload) < 2:
                    return 1005, ""
                return int.from_bytes(payload[:2], "big"), payload[2:].decode(errors="replace")
        raise Failure("no close frame")


def run_services(scratch: str, ports: dict[str, int]) -> None:
    step("start the services from the installed unit files, as systemd would")
    services = {u: Service(u, scratch) for u in ("ctlocator", "ctedge", "ctturn")}
    host = None
    try:
        services["ctlocator"].start()
        body = get_health(services["ctlocator"], ports["locator"])
        check(body.get("status") == "ok" and body.get("role") == "locator",
              "locator /health: status ok")
        services["ctedge"].start()
        services["ctturn"].start()
        body = get_health(services["ctedge"], ports["edge"])
        check(body.get("status") == "ok" and body.get("role") == "edge",
              "edge /health: status ok")
        body = wait_for_health(services["ctlocator"], ports["locator"],
                               lambda b: b.get("edges_online", 0) >= 1)
        check(body.get("edges_online", 0) >= 1,
              f"the edge linked to the locator (edges_online={body.get('edges_online')})")
        host = WebSocket(ports["edge"], "/ws/session")
        host.send_json({"type": "host", "v": 1, "name": "packaging-test",
                        "client": "packaging-test"})
        reply = host.next_json()
        check(reply.get("type") == "hosted", f"hosted a session on the edge ({reply.get('type')})")
        kind = stun_binding(ports["turn"], services["ctturn"])
        check(kind == "0x0101", f"TURN relay answered the Binding request ({kind})")
        for unit, service in services.items():
            check(service.alive(), f"{unit} still running")
        # The edge stops first, its session still running: it tells the locator at once,
        # which places nothing there while it drains (CT_DRAIN_TIMEOUT=2).
        services["ctedge"].proc.send_signal(signal.SIGTERM)
        body = wait_for_health(services["ctlocator"], ports["locator"],
                               lambda b: b.get("edges_draining", 0) >= 1, 10, 0.1)
        check(body.get("edges_draining") == 1,
              f"the stopping edge told the locator it drains (edges_draining="
              f"{body.get('edges_draining')})")
        services["ctedge"].proc.wait(30)
    finally:
        codes = {unit: service.stop() for unit, service in services.items()}
    step("SIGTERM: clean exit, logs in the journal stream and the log file")
    code, reason = host.close_code()
    check(code == 4010, f"the edge ended the hosted session on stop: close {code} {reason!r}")
    edge_log = open("/var/log/codetogether/edge.log").read()
    check("stopping: waiting up to 2 s for 1 sessions to end" in edge_log,
          "the edge drained for CT_DRAIN_TIMEOUT before ending the session")
    locator_log = open("/var/log/codetogether/locator.log").read()
    check(re.search(r"edge \S+ is stopping: no new sessions", locator_log) is not None,
          "the locator logged that the edge is stopping")
    check(os.path.isfile("/var/lib/codetogether/edge/edge-id"),
          "the edge kept its id in CT_DATA_DIR/edge (writable under ProtectSystem=strict)")
    for unit, service in services.items():
        # twistd re-raises the signal it stopped on; systemd counts death by
        # SIGTERM of the main process as a clean stop (no restart, not failed).
        check(codes[unit] in (0, -signal.SIGTERM),
              f"{unit} stopped cleanly after SIGTERM (status {codes[unit]})")
        journal = service.output()
        check(re.search(r"^<6>", journal, re.M) is not None,
              f"{unit} wrote prioritised lines for the journal")
        logfile = f"/var/log/codetogether/{unit[2:]}.log"
        text = open(logfile).read() if os.path.exists(logfile) else ""
        check("Server Shut Down." in text, f"{logfile} ends with the shutdown message")
        check(mode_owner(logfile) == "0640 codetogether:codetogether",
              f"{logfile} is 0640 codetogether:codetogether")
        for line in text.splitlines()[-3:]:
            info("| " + line)
    check(os.path.exists("/var/lib/codetogether/locator.sqlite3"),
          "locator kept its SQLite database in /var/lib/codetogether")


# ---------------------------------------------------------------- remove / purge


def remove_and_purge(file_lists: dict[str, list[str]]) -> None:
    step("dpkg --remove: programs go, configuration stays")
    apt("remove", *PACKAGES)
    check(not os.path.exists("/opt/codetogether"), "/opt/codetogether removed")
    check(os.path.exists("/etc/codetogether/edge.env"), "configuration kept after remove")
    step("dpkg --purge: nothing is left behind")
    apt("purge", *PACKAGES)
    left = [p for files in file_lists.values() for p in files
            if os.path.lexists(p) and not os.path.isdir(p)]
    check(not left, "every packaged file is gone" + (f": {left[:10]}" if left else ""))
    dirty = leftovers()
    check(not dirty, "no package, user, group, directory or unit state left"
          + (f": {dirty}" if dirty else ""))


def purge_everything() -> None:
    """Best effort: leave the machine as found even after a failure."""
    present = installed_packages()
    if present:
        subprocess.run(["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=600", "purge",
                        *present], env=clean_env(), stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    for path in CREATED_PATHS:
        if os.path.lexists(path):
            shutil.rmtree(path, ignore_errors=True)
    for db in ("passwd", "group"):
        if subprocess.run(["getent", db, "codetogether"],
                          stdout=subprocess.DEVNULL).returncode == 0:
            tool = "userdel" if db == "passwd" else "groupdel"
            subprocess.run([tool, "codetogether"], stderr=subprocess.DEVNULL)


def main(argv: list[str]) -> int:
    debs_dir = None
    keep = "--keep-build" in argv
    if "--debs" in argv:
        debs_dir = argv[argv.index("--debs") + 1]
    started = time.monotonic()
    scratch = tempfile.mkdtemp(prefix="ct-packaging-")
    installed = False
    try:
        preflight()
        if debs_dir:
            debs = sorted(glob.glob(os.path.join(debs_dir, "*.deb")))
            info(f"using {len(debs)} packages from {debs_dir}")
        else:
            debs = build(scratch)
        check_deb_contents(debs)
        lint(debs_dir or scratch, debs)
        figures = analyze_security(scratch, debs)
        step("install: apt-get install ./*.deb")
        installed = True
        apt_install(debs)
        file_lists = {p: run(["dpkg", "-L", p], quiet=True).stdout.split() for p in PACKAGES}
        check_installed()
        verify_units()
        ports = configure()
        reinstall_keeps_config(debs)
        run_services(scratch, ports)
        remove_and_purge(file_lists)
        installed = False
        step(f"PASS in {time.monotonic() - started:.0f} s; exposure: "
             + ", ".join(f"{k} {v}" for k, v in figures.items()))
        return 0
    except Failure as e:
        print(f"\nFAIL: {e}", flush=True)
        return 1
    finally:
        if installed:
            step("cleanup after failure: purge everything")
            purge_everything()
            info("left behind: " + (", ".join(leftovers()) or "nothing"))
        if keep:
            info(f"build kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
