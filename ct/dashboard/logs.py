"""The server log for ``/logs``: the tail of twistd's ``--logfile``, or recent events in memory."""

from __future__ import annotations

import collections
import os
import sys
from typing import Sequence

from twisted.logger import ILogObserver, formatEventAsClassicLogText
from zope.interface import implementer

RING_LINES = 2000
TAIL_BYTES = 512 * 1024


@implementer(ILogObserver)
class LogRing:
    """Keeps the last ``capacity`` log lines (classic twistd text format)."""

    def __init__(self, capacity: int = RING_LINES):
        self.lines: collections.deque[str] = collections.deque(maxlen=capacity)

    def __call__(self, event) -> None:
        try:
            text = formatEventAsClassicLogText(event)
        except Exception:  # a broken event must never break logging
            return
        if text:
            self.lines.extend(text.rstrip("\n").split("\n"))


def log_file_from_argv(argv: Sequence[str] = None) -> str | None:
    """twistd's ``--logfile``/``-l`` value when it names a file (not ``-``)."""
    argv = list(sys.argv if argv is None else argv)
    path = None
    for i, arg in enumerate(argv):
        if arg.startswith("--logfile="):
            path = arg.split("=", 1)[1]
        elif arg in ("--logfile", "-l") and i + 1 < len(argv):
            path = argv[i + 1]
        elif arg.startswith("-l") and len(arg) > 2 and not arg.startswith("--"):
            path = arg[2:]
    if not path or path == "-":
        return None
    return os.path.abspath(path)


def tail_file(path: str, max_bytes: int = TAIL_BYTES) -> list[str]:
    """The last lines of ``path`` (at most ``max_bytes``; the first partial line dropped)."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        start = max(0, size - max_bytes)
        f.seek(start)
        data = f.read(max_bytes)
    lines = data.decode("utf-8", errors="replace").split("\n")
    if start > 0:
        lines = lines[1:]
    if lines and lines[-1] == "":
        lines.pop()
    return lines


class ServerLog:
    """Where ``/logs`` reads from: the log file when there is one, else the ring."""

    def __init__(self, ring: LogRing, path: str | None = None, reactor=None):
        self.ring = ring
        self.path = path
        self.reactor = reactor  # the file is read in this reactor's thread pool

    def source(self) -> str:
        return self.path if self.path and os.path.exists(self.path) else "memory"

    def lines(self, limit: int = RING_LINES):
        """Deferred list of the last lines; the file is read in a pool thread."""
        from twisted.internet import defer, threads

        if not self.path or self.reactor is None:
            return defer.succeed(list(self.ring.lines)[-limit:])
        reactor = self.reactor

        def read():
            try:
                return tail_file(self.path)[-limit:]
            except OSError:
                return None

        d = threads.deferToThreadPool(reactor, reactor.getThreadPool(), read)
        return d.addCallback(lambda got: got if got is not None
                             else list(self.ring.lines)[-limit:])
