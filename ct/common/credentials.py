"""Dashboard and operator credentials: configured, or generated once and kept in a 0600 file."""

from __future__ import annotations

import base64
import errno
import os
import secrets
from dataclasses import dataclass

from twisted.logger import Logger
from twisted.python import usage

from ct.common.tokens import same_secret

_log = Logger()

DEFAULT_USER = "ctuser"
PASSWORD_FILE = "dashboard-password"  # under CT_DATA_DIR
MAX_PASSWORD_FILE = 1024


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str
    generated: bool = False

    def check(self, user: str, password: str) -> bool:
        """Constant-time check of both fields (no early exit on a wrong user)."""
        user_ok = same_secret(user, self.user)
        password_ok = same_secret(password, self.password)
        return user_ok and password_ok


def dashboard_credentials(user: str | None, password: str | None, data_dir: str,
                          token=secrets.token_urlsafe) -> Credentials:
    """``user`` (None: ``ctuser``) with ``password``; without one, a password generated once
    and kept in ``data_dir/dashboard-password`` (mode 0600); the log says only where."""
    user = user or DEFAULT_USER
    if password:
        return Credentials(user, password)
    path = os.path.join(data_dir, PASSWORD_FILE)
    try:
        password, created = stored_password(path, token)
    except (OSError, ValueError) as e:
        raise usage.UsageError(f"CT_DATA_DIR: the generated dashboard password: {e} (or set "
                               "CT_DASHBOARD_PASSWORD)") from None
    _log.warn("no dashboard password configured (CT_DASHBOARD_PASSWORD): user {user}, "
              "password {what} in {path} (readable by this server's user only)", user=user,
              what="generated and stored" if created else "stored earlier", path=path)
    return Credentials(user, password, generated=True)


def stored_password(path: str, token=secrets.token_urlsafe) -> tuple[str, bool]:
    """The password kept in ``path``, or a new one written there first (mode 0600).

    Returns ``(password, created)``. A file others may read is made 0600; a symbolic
    link, an empty or oversized file is refused (ValueError) rather than trusted.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return _create_password(path, token), True
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ValueError(f"{path} is a symbolic link; refusing it") from None
        raise
    with os.fdopen(fd, "rb") as f:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
            _log.warn("{path} was readable by others: made it 0600", path=path)
        data = f.read(MAX_PASSWORD_FILE + 1)
    password = data.decode("utf-8", "replace").strip()
    if not password or len(data) > MAX_PASSWORD_FILE or "\n" in password:
        raise ValueError(f"{path} does not hold one password: delete it to generate a new one")
    return password, False


def _create_password(path: str, token) -> str:
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    password = token(18)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:  # another daemon sharing CT_DATA_DIR was first
        return stored_password(path, token)[0]
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(password + "\n")
        f.flush()
        os.fsync(f.fileno())
    return password


def basic_auth(request) -> tuple[str, str] | None:
    """``(user, password)`` from an ``Authorization: Basic`` header, or None."""
    header = request.getHeader("authorization")
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None
