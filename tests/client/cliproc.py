"""``ct-client`` as users run it, in a child process driven from the test's reactor."""

from __future__ import annotations

import os
import re
import signal
import sys

from twisted.internet import defer, protocol, reactor

from tests.edge.util import sleep, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class CliProcess(protocol.ProcessProtocol):
    """``python -m ct.client.cli ARGS`` (or ``program ARGS``): collects output lines, takes
    input lines."""

    def __init__(self, case, *args: str, env: dict[str, str] | None = None,
                 program: list[str] | None = None):
        self.lines: list[str] = []
        self.errors = b""
        self._buffer = b""
        self.exited: defer.Deferred = defer.Deferred()
        self.status = None
        environ = {k: v for k, v in os.environ.items() if not k.startswith("CT_")}
        environ.update({"PYTHONPATH": ROOT, "PYTHONUNBUFFERED": "1", **(env or {})})
        argv = [*(program or [sys.executable, "-m", "ct.client.cli"]), *args]
        reactor.spawnProcess(self, argv[0], argv, env=environ, path=ROOT)
        case.addCleanup(self.stop)

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        *done, self._buffer = self._buffer.split(b"\n")
        self.lines.extend(line.decode("utf-8", "replace") for line in done)

    def errReceived(self, data: bytes) -> None:
        self.errors += data

    def processEnded(self, reason) -> None:
        self.status = reason.value.exitCode
        self.exited.callback(self.status)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def send(self, line: str) -> None:
        self.transport.write(line.encode() + b"\n")

    def close_input(self) -> None:
        self.transport.closeStdin()

    @defer.inlineCallbacks
    def wait_line(self, pattern: str, timeout: float = 20.0, start: int = 0):
        """The first output line (from index ``start``) matching ``pattern``; fails on time-out."""
        regex = re.compile(pattern)
        found = []

        def seen():
            for line in self.lines[start:]:
                if regex.search(line):
                    found.append(line)
                    return True
            if self.status is not None:
                raise AssertionError(f"ct-client exited ({self.status}) before {pattern!r}:\n"
                                     f"{self.output}\n{self.errors.decode(errors='replace')}")
            return False
        try:
            yield wait_for(seen, timeout=timeout, step=0.02)
        except AssertionError as e:
            raise AssertionError(f"{e}; waiting for {pattern!r}; output so far:\n{self.output}\n"
                                 f"stderr:\n{self.errors.decode(errors='replace')[-3000:]}")
        return found[0]

    @defer.inlineCallbacks
    def wait_exit(self, timeout: float = 20.0):
        yield wait_for(lambda: self.status is not None, timeout=timeout)
        return self.status

    @defer.inlineCallbacks
    def stop(self):
        """SIGTERM (a clean leave), then SIGKILL after 10 s; waits until it has exited."""
        if self.status is None:
            try:
                self.transport.signalProcess(signal.SIGTERM)
            except Exception:
                pass
            for _ in range(200):
                if self.status is not None:
                    break
                yield sleep(0.05)
            if self.status is None:
                try:
                    self.transport.signalProcess(signal.SIGKILL)
                except Exception:
                    pass
                yield self.exited
