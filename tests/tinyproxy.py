"""A real HTTP proxy for the tests: Debian's tinyproxy on loopback, its log read back.

``scripts/system-deps.sh`` installs it (package ``tinyproxy-bin``); tests skip, saying so,
when it is missing.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

TINYPROXY = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
MISSING = None if Path(TINYPROXY).exists() else \
    "tinyproxy is not installed (scripts/system-deps.sh installs tinyproxy-bin)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TinyProxy:
    """``tinyproxy -d`` on 127.0.0.1:``port`` (chosen when not given); stopped at cleanup."""

    def __init__(self, case, port: int | None = None, user: str | None = None,
                 password: str | None = None):
        self.port = port or free_port()
        self.user, self.password = user, password
        self.dir = Path(tempfile.mkdtemp(prefix="ct-tinyproxy-"))
        self.log_path = self.dir / "tinyproxy.log"
        self.proc: subprocess.Popen | None = None
        case.addCleanup(self.stop)

    @property
    def url(self) -> str:
        auth = f"{self.user}:{self.password}@" if self.user else ""
        return f"http://{auth}127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        config = [f"Port {self.port}", "Listen 127.0.0.1", "Timeout 60",
                  f'LogFile "{self.log_path}"', "LogLevel Connect", "MaxClients 50"]
        if self.user:
            config.append(f"BasicAuth {self.user} {self.password}")
        (self.dir / "tinyproxy.conf").write_text("\n".join(config) + "\n")
        self.proc = subprocess.Popen([TINYPROXY, "-d", "-c", str(self.dir / "tinyproxy.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"tinyproxy exited with {self.proc.returncode}:\n"
                                     f"{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"tinyproxy did not listen on {self.port} within {timeout} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tunnels_to(self, port: int) -> int:
        """How many CONNECT requests to 127.0.0.1:``port`` the proxy has logged."""
        return len(re.findall(rf"Request \(file descriptor \d+\): CONNECT 127\.0\.0\.1:{port} ",
                              self.log()))
