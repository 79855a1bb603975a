"""Schema 5: the call counts of ``metric_snapshots`` (docs/av.md), for the usage report.

``av_participants`` (people in a call), ``av_calls`` (sessions with two or more in the
call), ``av_relayed`` and ``av_direct`` (peer connections through a TURN relay or not);
0 for the snapshots stored before and for edges that send none. Safe to repeat (MySQL DDL
is not transactional) and to run from several locators at once, like schema 4: a column
is added only when missing, and a concurrent addition is accepted.
"""

from __future__ import annotations

from ct.storage.migrations.v004_audit_client import add_column_once

AV_COLUMNS = ("av_participants", "av_calls", "av_relayed", "av_direct")


def statements(engine) -> list[str]:
    return []


def run(txn) -> None:
    for column in AV_COLUMNS:
        add_column_once(txn, "metric_snapshots", column, "INTEGER NOT NULL DEFAULT 0")
