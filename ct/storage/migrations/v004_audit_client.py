"""Schema 4: ``audit_entries.client``, the client family of session starts and joins.

The usage statistics (host IDE and joining client breakdowns) group by it in SQL; before,
the client was only inside the ``details`` JSON text, which the three dialects cannot
query alike. Existing ``session_started``/``participant_joined`` rows are filled from their
details. Safe to repeat (MySQL DDL is not transactional) and to run from several locators
at once: the column is added only when missing, and a concurrent addition is accepted.
"""

from __future__ import annotations

import json

BACKFILL_BATCH = 500


def statements(engine) -> list[str]:
    return []


def _has_column(txn, table: str, column: str) -> bool:
    dialect = txn.engine.dialect
    if dialect == "sqlite":
        txn.execute(f"PRAGMA table_info({table})")
        return any(row[1] == column for row in txn.fetchall())
    schema = "current_schema()" if dialect == "postgres" else "DATABASE()"
    txn.execute("SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = "
                f"{schema} AND table_name = ? AND column_name = ?", (table, column))
    return int(txn.fetchone()[0]) > 0


def add_column_once(txn, table: str, column: str, definition: str) -> None:
    """``ALTER TABLE table ADD COLUMN column definition`` unless the column exists, accepting
    one that another locator added at the same moment (schema 5 uses it too)."""
    if _has_column(txn, table, column):
        return
    try:
        txn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
    except Exception:
        # Another locator starting at the same moment added it since we looked (MySQL
        # and SQLite have no schema lock here; PostgreSQL holds an advisory lock).
        if txn.engine.dialect == "postgres" or not _has_column(txn, table, column):
            raise


def run(txn) -> None:
    from ct.storage.store import client_family

    add_column_once(txn, "audit_entries", "client", "VARCHAR(64)")
    after = 0
    while True:  # bounded: seq only grows, each round moves past the rows it read
        txn.execute("SELECT seq, details FROM audit_entries WHERE seq > ? AND kind IN "
                    "('session_started', 'participant_joined') AND client IS NULL "
                    f"ORDER BY seq LIMIT {BACKFILL_BATCH}", (after,))
        rows = txn.fetchall()
        if not rows:
            return
        updates = []
        for seq, details in rows:
            after = int(seq)
            try:
                client = json.loads(details).get("client") if details else None
            except (ValueError, AttributeError):
                client = None
            family = client_family(client)
            if family is not None:
                updates.append((family, after))
        if updates:
            txn.executemany("UPDATE audit_entries SET client = ? WHERE seq = ?", updates)
