"""twistd ``--logger`` factories for the packaged systemd services.

``twistd --nodaemon --logger=ct_service_log.edge ctedge`` sends every log event both
to standard output, which systemd hands to the journal (each line carries an
``<N>`` syslog priority prefix, so ``journalctl -p warning`` works), and to
``/var/log/codetogether/edge.log``, rotated by size. If the file cannot be opened
the service still runs and logs to the journal only, saying why once.

The Debian package installs this module into the runtime's site-packages.
"""

from __future__ import annotations

import os
import sys

from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LogLevel,
    eventAsText,
    formatEventAsClassicLogText,
)
from twisted.python.logfile import LogFile
from zope.interface import implementer

LOG_DIR = "/var/log/codetogether"
ROTATE_BYTES = 10 * 1024 * 1024
KEEP_ROTATED = 10

_PRIORITY = {
    LogLevel.debug: 7,
    LogLevel.info: 6,
    LogLevel.warn: 4,
    LogLevel.error: 3,
    LogLevel.critical: 2,
}


def journal_line(event) -> str | None:
    """One event as journal text: ``<priority>system: message``, one line per line."""
    text = eventAsText(event, includeTimestamp=False, includeSystem=True)
    if not text:
        return None
    prefix = f"<{_PRIORITY.get(event.get('log_level'), 6)}>"
    return "".join(prefix + line + "\n" for line in text.splitlines())


@implementer(ILogObserver)
class TeeObserver:
    """Writes each event to the journal stream and, when open, to the log file."""

    def __init__(self, stream, file_observer=None):
        self.stream = stream
        self.file_observer = file_observer

    def __call__(self, event):
        line = journal_line(event)
        if line is not None:
            try:
                self.stream.write(line)
                self.stream.flush()
            except (OSError, ValueError):
                pass
        if self.file_observer is not None:
            self.file_observer(event)


def make_observer(name: str, directory: str = LOG_DIR, stream=None) -> TeeObserver:
    """The observer for service ``name``, logging to ``directory/name.log`` too."""
    stream = stream if stream is not None else sys.stdout
    try:
        log_file = LogFile(f"{name}.log", directory, rotateLength=ROTATE_BYTES,
                           maxRotatedFiles=KEEP_ROTATED, defaultMode=0o640)
    except OSError as e:
        stream.write(f"<4>log file {os.path.join(directory, name + '.log')} unavailable "
                     f"({e.strerror or e}); logging to the journal only\n")
        stream.flush()
        return TeeObserver(stream)
    return TeeObserver(stream, FileLogObserver(log_file, formatEventAsClassicLogText))


def edge() -> TeeObserver:
    return make_observer("edge")


def locator() -> TeeObserver:
    return make_observer("locator")


def turn() -> TeeObserver:
    return make_observer("turn")
