"""API tokens for the operator API and ``ctctl``: created and revoked on the dashboard,
kept as a SHA-256 hash of their secret (the secret is shown once, at creation).

A token reads ``ctk_<id>_<secret>``: the id finds the row, the secret's hash is compared
in constant time. Each token carries a role (``admin`` or ``team-viewer`` with teams),
like a dashboard session. Store functions are plain ``fn(txn)``.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass

from twisted.internet import defer

from ct.common.tokens import same_secret, secret_hash
from ct.storage.store import from_ms, to_ms

PREFIX = "ctk_"
_TOKEN = re.compile(r"^ctk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
MAX_TOKENS = 1000  # live (unrevoked) tokens
_COLUMNS = ("token_id, name, secret_hash, role, teams, created_by, created_at, revoked_at, "
            "last_used_at")


@dataclass(frozen=True)
class ApiToken:
    token_id: str
    name: str
    role: str
    teams: tuple[str, ...]
    created_by: str | None
    created_at: float
    revoked_at: float | None = None
    last_used_at: float | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def split_token(text: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a well-formed token, or None."""
    match = _TOKEN.match(text.strip()) if isinstance(text, str) and len(text) < 100 else None
    return (match.group(1), match.group(2)) if match else None


def _token(row) -> tuple[ApiToken, str]:
    return ApiToken(token_id=row[0], name=row[1], role=row[3],
                    teams=tuple(json.loads(row[4]) if row[4] else ()), created_by=row[5],
                    created_at=from_ms(row[6]), revoked_at=from_ms(row[7]),
                    last_used_at=from_ms(row[8])), row[2]


def create_txn(txn, token_id, name, hashed, role, teams, by, now_ms) -> bool:
    txn.execute("SELECT COUNT(*) FROM api_tokens WHERE revoked_at IS NULL")
    if int(txn.fetchone()[0]) >= MAX_TOKENS:
        return False
    txn.execute(f"INSERT INTO api_tokens ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                (token_id, name, hashed, role, json.dumps(list(teams)), by, now_ms))
    return True


def get_txn(txn, token_id):
    txn.execute(f"SELECT {_COLUMNS} FROM api_tokens WHERE token_id = ?", (token_id,))
    row = txn.fetchone()
    return _token(row) if row else None


def list_txn(txn) -> list[ApiToken]:
    txn.execute(f"SELECT {_COLUMNS} FROM api_tokens ORDER BY created_at DESC")
    return [_token(r)[0] for r in txn.fetchall()]


def revoke_txn(txn, token_id, now_ms) -> bool:
    txn.execute("UPDATE api_tokens SET revoked_at = ? WHERE token_id = ? AND revoked_at IS NULL",
                (now_ms, token_id))
    return txn.rowcount > 0


def used_txn(txn, token_id, now_ms) -> None:
    txn.execute("UPDATE api_tokens SET last_used_at = ? WHERE token_id = ?", (now_ms, token_id))


class TooManyTokens(Exception):
    """MAX_TOKENS live tokens exist: revoke some first."""


class ApiTokenStore:
    """API tokens in the locator's database; ``clock.seconds()`` for the times."""

    USED_EVERY = 60.0  # last_used_at is written at most once a minute per token

    def __init__(self, db, clock, token=secrets.token_urlsafe):
        self.db = db
        self.clock = clock
        self._token = token
        self._last_written: dict[str, float] = {}

    @defer.inlineCallbacks
    def create(self, name: str, role: str, teams: tuple[str, ...], by: str | None):
        """Fires with ``(ApiToken, text)``: ``text`` is the only copy of the secret."""
        token_id, secret = secrets.token_hex(8), self._token(32)  # 43 characters
        now_ms = to_ms(self.clock.seconds())
        made = yield self.db.runInteraction("create_api_token", create_txn, token_id, name,
                                            secret_hash(secret), role, tuple(teams), by, now_ms)
        if not made:
            raise TooManyTokens(f"there are {MAX_TOKENS} live API tokens: revoke some first")
        token = ApiToken(token_id, name, role, tuple(teams), by, from_ms(now_ms))
        return token, f"{PREFIX}{token_id}_{secret}"

    @defer.inlineCallbacks
    def verify(self, text: str):
        """Fires with the live :class:`ApiToken` that ``text`` is, or None."""
        parts = split_token(text)
        if parts is None:
            return None
        found = yield self.db.runInteraction("get_api_token", get_txn, parts[0])
        if found is None:
            same_secret(secret_hash(parts[1]), "0" * 64)  # the same work as a known id
            return None
        token, stored_hash = found
        if not same_secret(secret_hash(parts[1]), stored_hash) or token.revoked:
            return None
        now = self.clock.seconds()
        if now - self._last_written.get(token.token_id, float("-inf")) >= self.USED_EVERY:
            self._last_written[token.token_id] = now
            yield self.db.runInteraction("api_token_used", used_txn, token.token_id,
                                         to_ms(now))
        return token

    def list(self):
        return self.db.runInteraction("list_api_tokens", list_txn)

    def revoke(self, token_id: str):
        """Fires with True when a live token was revoked."""
        return self.db.runInteraction("revoke_api_token", revoke_txn, token_id,
                                      to_ms(self.clock.seconds()))
