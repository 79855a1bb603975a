"""Schema 3: several locators on one database (``docs/locator.md``, "Several locators").

``locators``: one row per locator, its heartbeat and measured latencies.
``edge_links``: which locator holds each edge's link since when (or since when no
locator does), and the edge's hosted-sessions count from its last report, so every
locator places on edges linked to the others.
"""

from __future__ import annotations


def statements(engine) -> list[str]:
    t = engine.create_table
    out: list[str] = []
    out += t("locators", [
        "locator_id {ID} NOT NULL PRIMARY KEY",
        "relay_url {URL} NOT NULL",
        "version {SHORT} NOT NULL",
        "instance {SHORT} NOT NULL",
        "started_at {BIGINT} NOT NULL",
        "heartbeat_at {BIGINT} NOT NULL",
        "db_latency_ms {DOUBLE}",
        "peer_latency_ms {DOUBLE}",
    ])
    out += t("edge_links", [
        "edge_id {ID} NOT NULL PRIMARY KEY",
        "locator_id {ID}",
        "linked_at {BIGINT} NOT NULL",
        "link_lost_at {BIGINT}",
        "sessions_hosted {BIGINT} NOT NULL DEFAULT 0",
    ], [
        ("edge_links_locator", ["locator_id"], False),
    ])
    return out
