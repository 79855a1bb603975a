"""Run the project's daemons as real processes (``twistd -n ...``) for end-to-end tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TWISTD = [str(Path(sys.executable).parent / "twistd")]


class Daemon:
    """A ``twistd -n <plugin>`` child process whose log goes to a file we can read."""

    def __init__(self, plugin: str, env: dict[str, str], args=(), name: str | None = None):
        self.plugin = plugin
        self.dir = tempfile.mkdtemp(prefix=f"ct-{plugin}-")
        self.log_path = Path(self.dir) / "twistd.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("CT_")}
        full_env.update(env)
        full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            TWISTD + ["-n", "--pidfile=", f"--logfile={self.log_path}", plugin, *args],
            env=full_env, cwd=self.dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def log(self) -> str:
        try:
            return self.log_path.read_text()
        except FileNotFoundError:
            return ""

    def wait_for_log(self, pattern: str, timeout: float = 30.0) -> re.Match:
        """Block (tests only, outside the reactor) until the log matches ``pattern``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.log())
            if match:
                return match
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.plugin} exited with {self.proc.returncode}:\n"
                                     f"{self.output()}{self.log()}")
            time.sleep(0.05)
        raise AssertionError(f"{self.plugin}: no log line matching {pattern!r} within "
                             f"{timeout} s:\n{self.log()}")

    def port(self, label: str = "HTTP", timeout: float = 30.0) -> int:
        match = self.wait_for_log(rf"available on port .*?(\d+) \({label}\)", timeout)
        return int(match.group(1))

    def output(self) -> str:
        if self.proc.stdout is None or self.proc.poll() is None:
            return ""
        return self.proc.stdout.read().decode(errors="replace")

    def kill(self, sig=signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(timeout=30)

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


def run_to_exit(plugin: str, env: dict[str, str], args=(), timeout: float = 60.0):
    """Run ``twistd -n plugin`` expecting it to stop by itself; returns (code, all output)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CT_")}
    full_env.update(env)
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run(TWISTD + ["-n", "--pidfile=", plugin, *args], env=full_env,
                                cwd=tmp, capture_output=True, timeout=timeout)
    return result.returncode, (result.stdout + result.stderr).decode(errors="replace")
