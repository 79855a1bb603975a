"""Schema 2: API tokens for the operator API and ``ctctl`` (only a hash of each secret)."""

from __future__ import annotations


def statements(engine) -> list[str]:
    return engine.create_table("api_tokens", [
        "token_id {SHORT} NOT NULL PRIMARY KEY",
        "name {ID} NOT NULL",
        "secret_hash {SHORT} NOT NULL",
        "role {SHORT} NOT NULL",
        "teams {TEXT}",
        "created_by {ID}",
        "created_at {BIGINT} NOT NULL",
        "revoked_at {BIGINT}",
        "last_used_at {BIGINT}",
    ])
