"""Schema 1: edges, session directory, team presence, audit, metric snapshots, config.

Times are whole milliseconds since the epoch (UTC) in BIGINT columns on every
dialect; booleans are SMALLINT 0/1; JSON is stored as text.
"""

from __future__ import annotations


def statements(engine) -> list[str]:
    t = engine.create_table
    out: list[str] = []
    out += t("edges", [
        "edge_id {ID} NOT NULL PRIMARY KEY",
        "public_url {URL} NOT NULL",
        "region {ID} NOT NULL",
        "version {SHORT} NOT NULL",
        "first_seen {BIGINT} NOT NULL",
        "last_seen {BIGINT} NOT NULL",
        "suspended {BOOL} NOT NULL DEFAULT 0",
        "load_factor {DOUBLE}",
        "lag_ms {DOUBLE}",
        "connections {INT} NOT NULL DEFAULT 0",
        "sessions {INT} NOT NULL DEFAULT 0",
        "users {INT} NOT NULL DEFAULT 0",
        "stats_at {BIGINT}",
    ])
    out += t("session_directory", [
        "session_id {ID} NOT NULL PRIMARY KEY",
        "edge_id {ID} NOT NULL",
        "team {ID}",
        "started_at {BIGINT} NOT NULL",
        "ended_at {BIGINT}",
    ], [
        ("session_directory_edge", ["edge_id", "ended_at"], False),
        ("session_directory_started", ["started_at"], False),
        ("session_directory_team", ["team", "started_at"], False),
    ])
    out += t("team_presence", [
        "team {ID} NOT NULL PRIMARY KEY",
        "edge_id {ID} NOT NULL",
        "assigned_at {BIGINT} NOT NULL",
    ], [
        ("team_presence_edge", ["edge_id"], False),
    ])
    out += t("audit_entries", [
        "seq {SERIAL_PK}",
        "entry_id {SHORT} NOT NULL",
        "at {BIGINT} NOT NULL",
        "kind {SHORT} NOT NULL",
        "edge_id {ID}",
        "session_id {ID}",
        "user_name {ID}",
        "details {TEXT}",
    ], [
        ("audit_entries_id", ["entry_id"], True),
        ("audit_entries_at", ["at"], False),
        ("audit_entries_kind_at", ["kind", "at"], False),
        ("audit_entries_user_at", ["user_name", "at"], False),
        ("audit_entries_edge_at", ["edge_id", "at"], False),
    ])
    out += t("metric_snapshots", [
        "seq {SERIAL_PK}",
        "snapshot_id {SHORT} NOT NULL",
        "edge_id {ID} NOT NULL",
        "at {BIGINT} NOT NULL",
        "users_online {INT} NOT NULL DEFAULT 0",
        "sessions {INT} NOT NULL DEFAULT 0",
        "connections {INT} NOT NULL DEFAULT 0",
        "lag_ms {DOUBLE}",
        "sessions_hosted_total {BIGINT} NOT NULL DEFAULT 0",
        "downloads_total {BIGINT} NOT NULL DEFAULT 0",
    ], [
        ("metric_snapshots_id", ["snapshot_id"], True),
        ("metric_snapshots_at", ["at"], False),
        ("metric_snapshots_edge_at", ["edge_id", "at"], False),
    ])
    out += t("config_entries", [
        "name {ID} NOT NULL PRIMARY KEY",
        "value {TEXT} NOT NULL",
        "updated_at {BIGINT} NOT NULL",
    ])
    return out
