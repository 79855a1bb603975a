"""Dashboard log-ins in the locators' database (table ``dashboard_logins``), so that every
locator on one PostgreSQL database knows every log-in (``docs/locator.md``, "Several
locators").

The cookie's session id is a bearer credential: only its SHA-256 (:func:`login_key`) is
stored. Plain ``fn(txn)`` functions and :class:`LoginStore` running them, like
``store.py``; every function is safe to run twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Sequence

from ct.common.tokens import secret_hash
from ct.storage.store import from_ms, to_ms

_COLUMNS = "login_key, user_name, role, teams, method, csrf, created_at, last_used_at"


def login_key(sid: str) -> str:
    """What the database keeps of a session id (:func:`~ct.common.tokens.secret_hash`)."""
    return secret_hash(sid)


@dataclass(frozen=True)
class LoginRow:
    key: str
    user: str
    role: str
    teams: tuple[str, ...]
    method: str
    csrf: str
    created_at: float
    last_used_at: float


def _row(r) -> LoginRow:
    return LoginRow(r[0], r[1], r[2], tuple(json.loads(r[3]) if r[3] else ()), r[4], r[5],
                    from_ms(r[6]), from_ms(r[7]))


def insert_txn(txn, row: LoginRow, max_rows: int) -> list[str]:
    """Store ``row``; beyond ``max_rows`` rows the least recently used others go. Answers
    the keys removed."""
    txn.execute(txn.engine.upsert(
        "dashboard_logins", ["login_key", "user_name", "role", "teams", "method", "csrf",
                             "created_at", "last_used_at"],
        ["login_key"], ["last_used_at"]),
        (row.key, row.user, row.role, json.dumps(list(row.teams)), row.method, row.csrf,
         to_ms(row.created_at), to_ms(row.last_used_at)))
    txn.execute("SELECT COUNT(*) FROM dashboard_logins")
    extra = int(txn.fetchone()[0]) - max_rows
    if extra <= 0:
        return []
    txn.execute("SELECT login_key FROM dashboard_logins WHERE login_key <> ? "
                "ORDER BY last_used_at, login_key LIMIT ?", (row.key, extra))
    evicted = [r[0] for r in txn.fetchall()]
    delete_txn(txn, evicted)
    return evicted


def get_txn(txn, keys: Sequence[str] | None) -> list[LoginRow]:
    """The rows of these keys (None: every row)."""
    where, args = "", []
    if keys is not None:
        if not keys:
            return []
        where = " WHERE login_key IN (" + ", ".join("?" for _ in keys) + ")"
        args = list(keys)
    txn.execute(f"SELECT {_COLUMNS} FROM dashboard_logins{where}", args)
    return [_row(r) for r in txn.fetchall()]


def delete_txn(txn, keys: Sequence[str]) -> None:
    if keys:
        txn.execute("DELETE FROM dashboard_logins WHERE login_key IN ("
                    + ", ".join("?" for _ in keys) + ")", list(keys))


def touch_txn(txn, used: Sequence[tuple[str, int]]) -> None:
    """Advance ``last_used_at`` (never back: another locator may have a later use)."""
    for key, at_ms in used:
        txn.execute("UPDATE dashboard_logins SET last_used_at = ? "
                    "WHERE login_key = ? AND last_used_at < ?", (at_ms, key, at_ms))


def prune_txn(txn, used_before_ms: int, created_before_ms: int) -> int:
    txn.execute("DELETE FROM dashboard_logins WHERE last_used_at < ? OR created_at < ?",
                (used_before_ms, created_before_ms))
    return txn.rowcount


class LoginStore:
    """Deferred-returning access to ``dashboard_logins``."""

    def __init__(self, db):
        self.db = db

    def insert(self, row: LoginRow, max_rows: int):
        """Fires with the keys of the rows removed to stay within ``max_rows``."""
        return self.db.runInteraction("store_login", insert_txn, row, max_rows)

    def get(self, keys: Iterable[str] | None = None):
        """Fires with the :class:`LoginRow` of these keys (None: all)."""
        ids = None if keys is None else sorted(set(keys))
        return self.db.runInteraction("get_logins", get_txn, ids)

    def delete(self, keys: Iterable[str]):
        return self.db.runInteraction("delete_logins", delete_txn, sorted(set(keys)))

    def touch(self, used: dict[str, float]):
        pairs = sorted((k, to_ms(t)) for k, t in used.items())
        return self.db.runInteraction("touch_logins", touch_txn, pairs)

    def prune(self, used_before: float, created_before: float):
        """Fires with the number of rows removed."""
        return self.db.runInteraction("prune_logins", prune_txn, to_ms(used_before),
                                      to_ms(created_before))
