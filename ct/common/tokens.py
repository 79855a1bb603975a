"""Secrets derived and compared in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac


def team_token(secret: str, team: str) -> str:
    """The presence token of ``team``: HMAC-SHA256 of the team name under the deployment secret."""
    digest = hmac.new(secret.encode("utf-8"), b"ct-team:" + team.encode("utf-8"),
                      hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def check_team_token(secret: str, team: str, token: str) -> bool:
    return hmac.compare_digest(team_token(secret, team).encode(), token.encode("utf-8"))


def secret_hash(secret: str) -> str:
    """What is stored of a bearer secret (API token, dashboard session id): its SHA-256,
    hex (64 characters)."""
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


def same_secret(given: str | bytes, expected: str | bytes) -> bool:
    """Constant-time comparison of two secrets."""
    if isinstance(given, str):
        given = given.encode("utf-8")
    if isinstance(expected, str):
        expected = expected.encode("utf-8")
    return hmac.compare_digest(given, expected)
