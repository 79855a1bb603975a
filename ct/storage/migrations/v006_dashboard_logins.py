"""Schema 6: dashboard log-ins shared by several locators (``docs/locator.md``, "Several
locators"; ``docs/storage.md``).

``dashboard_logins``: one row per logged-in browser. The cookie's session id is a bearer
credential, so only its SHA-256 (``login_key``, hex) is stored, with the user, role, teams,
log-in method, CSRF token, creation time and last use (written in batches). Used on
PostgreSQL, where several locators may run; created everywhere so the schema is one.
"""

from __future__ import annotations


def statements(engine) -> list[str]:
    return engine.create_table("dashboard_logins", [
        "login_key {SHORT} NOT NULL PRIMARY KEY",
        "user_name {ID} NOT NULL",
        "role {SHORT} NOT NULL",
        "teams {TEXT} NOT NULL",
        "method {SHORT} NOT NULL",
        "csrf {SHORT} NOT NULL",
        "created_at {BIGINT} NOT NULL",
        "last_used_at {BIGINT} NOT NULL",
    ], [
        ("dashboard_logins_used", ["last_used_at"], False),
    ])
