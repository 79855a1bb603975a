"""Dashboard and operator credentials: configured, or generated once and logged."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass

from twisted.logger import Logger

from ct.common.tokens import same_secret

_log = Logger()

DEFAULT_USER = "ctuser"


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


def dashboard_credentials(values, token=secrets.token_urlsafe) -> Credentials:
    """CT_DASHBOARD_*, else CT_LOGS_*, else user ``ctuser`` with a generated password."""
    user = values.get("dashboard_user") or values.get("logs_user") or DEFAULT_USER
    password = values.get("dashboard_password") or values.get("logs_password")
    if password:
        return Credentials(user, password)
    password = token(18)
    _log.warn("no dashboard password configured (CT_DASHBOARD_PASSWORD): generated one for "
              "user {user}: {password}", user=user, password=password)
    return Credentials(user, password, generated=True)


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
