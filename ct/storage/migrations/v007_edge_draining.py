"""Schema 7: ``edge_links.draining_since``/``draining_until``, an edge that is stopping.

An edge stopping with ``CT_DRAIN_TIMEOUT`` tells the locator holding its link, which records
it here so the other locators place nothing there either (``docs/locator.md``, "Drain on
stop"); both NULL while the edge is not draining, cleared when the link goes or is made
again. Safe to repeat and to run from several locators at once, like schemas 4 and 5.
"""

from __future__ import annotations

from ct.storage.migrations.v004_audit_client import add_column_once


def statements(engine) -> list[str]:
    return []


def run(txn) -> None:
    for column in ("draining_since", "draining_until"):
        add_column_once(txn, "edge_links", column, "BIGINT")
