"""Files that hold what only the server's user may read."""

from __future__ import annotations

import os
import stat

from twisted.logger import Logger

_log = Logger()

PRIVATE = stat.S_IRUSR | stat.S_IWUSR  # 0600


def make_private_sqlite(path: str) -> None:
    """Create an SQLite database file readable by its owner only (0600) before SQLite opens
    it, whatever the umask; tighten it and its ``-wal``/``-shm``/``-journal`` files if they
    are looser. SQLite gives the files it creates beside the database the database's mode."""
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW, PRIVATE))
    except OSError:
        return  # not a file we can create: SQLite's own error says why when it opens it
    for name in (path, path + "-wal", path + "-shm", path + "-journal"):
        try:
            mode = os.stat(name, follow_symlinks=False).st_mode
            if stat.S_ISREG(mode) and mode & 0o077:
                os.chmod(name, PRIVATE)
        except FileNotFoundError:
            continue
        except OSError as e:
            _log.warn("cannot make {name} private (0600): {error}", name=name, error=e)
