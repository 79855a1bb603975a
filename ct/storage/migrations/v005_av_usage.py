"""Schema 5: the call counts of ``metric_snapshots`` (docs/av.md), for the usage report.

``av_participants`` (people in a call), ``av_calls`` (sessions with two or more in the
call), ``av_relayed`` and ``av_direct`` (peer connections through a TURN relay or not);
0 for the snapshots stored before and for edges that send none. Safe to repeat (MySQL DDL
is not transactional) and to run from several locators at once, like schema 4: a column
is added only when missing, and a concurrent addition is accepted.
"""

from __future__ import annotations

from ct.storage.migrations.v004_audit_client import _has_column

AV_COLUMNS = ("av_participants", "av_calls", "av_relayed", "av_direct")


def statements(engine) -> list[str]:
    return []


def run(txn) -> None:
    for column in AV_COLUMNS:
        if _has_column(txn, "metric_snapshots", column):
            continue
        try:
            txn.execute(f"ALTER TABLE metric_snapshots ADD COLUMN {column} "
                        "INTEGER NOT NULL DEFAULT 0")
        except Exception:
            # Another locator starting at the same moment added it since we looked (MySQL
            # and SQLite have no schema lock here; PostgreSQL holds an advisory lock).
            if txn.engine.dialect == "postgres" or not _has_column(txn, "metric_snapshots",
                                                                   column):
                raise
