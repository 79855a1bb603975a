"""Settings of the locator (rows for the catalogue, ``ct/settings.py``).

``CT_DATA_DIR`` defaults to ``.run`` under the working directory, so a
quick start (``make run``, a checkout) keeps its files under ``.run/`` and
needs no root; packaged installs set ``CT_DATA_DIR=/var/lib/codetogether`` in the
systemd unit. The directory is created at start-up when missing.
"""

from __future__ import annotations

import os

from ct.common.settings import (
    Setting,
    SettingError,
    parse_cidr_list,
    parse_existing_file,
    parse_float,
    parse_int,
    parse_optional_str,
)
from ct.storage.config import InlineConfig


def parse_locator_config_source(raw: str) -> str | InlineConfig | None:
    """A path to an existing file, or the JSON itself when the value starts with ``{``."""
    if raw.lstrip().startswith("{"):
        return InlineConfig(raw)
    return parse_existing_file(raw)


LOCATOR = frozenset({"locator"})
SERVERS = frozenset({"locator", "edge"})
DEFAULT_DATA_DIR = ".run"
MIN_EDGE_SECRET_LENGTH = 16


def parse_data_dir(raw: str) -> str:
    """A directory path; it may not exist yet (start-up creates it), but must not be a file."""
    value = raw.strip()
    if not value:
        raise SettingError("expected a directory path")
    if os.path.exists(value) and not os.path.isdir(value):
        raise SettingError(f"not a directory: {value}")
    return value


def parse_edge_secret(raw: str) -> str | None:
    value = parse_optional_str(raw)
    if value is not None and len(value) < MIN_EDGE_SECRET_LENGTH:
        raise SettingError(f"must be at least {MIN_EDGE_SECRET_LENGTH} characters long")
    return value


LOCATOR_SETTINGS = [
    Setting("CT_LOCATOR_CONFIG", "locator-config", None, parse_locator_config_source,
            "Path of locator-config.json (database connection: MySQL/MariaDB or "
            "PostgreSQL, with TLS options), or its JSON text itself (a value starting with "
            "'{'; never logged). Unset: an embedded SQLite file in CT_DATA_DIR.",
            LOCATOR),
    Setting("CT_DATA_DIR", "data-dir", DEFAULT_DATA_DIR, parse_data_dir,
            "Directory for state: the locator's SQLite database (when no "
            "locator-config.json is given), an edge's id and outbox (under edge/; two edges "
            "on one host need two directories); created when missing. Packages use "
            "/var/lib/codetogether.", SERVERS),
    Setting("CT_EDGE_SECRET", "edge-secret", None, parse_edge_secret,
            "Shared secret (at least 16 characters) edges present to connect to the "
            "locator; set the same value on every edge. Unset: the locator refuses every "
            "edge and says so at start-up.", SERVERS, secret=True),
    Setting("CT_TRUSTED_PROXIES", "trusted-proxies", (), parse_cidr_list,
            "CIDRs of reverse proxies whose X-Forwarded-For header is believed when "
            "finding a client's address (and so its region). Empty: the TCP peer.",
            SERVERS),
    Setting("CT_MAXMIND_DB", "maxmind-db", None, parse_existing_file,
            "MaxMind GeoIP2/GeoLite2 Country or City database (.mmdb) used to find the "
            "region of clients no region CIDR matches (countries/continents per region "
            "on the dashboard).", LOCATOR),
    Setting("CT_EDGE_DEAD_AFTER", "edge-dead-after", 15.0, parse_float(1.0),
            "Seconds without a report after which an edge is flagged unavailable: no new "
            "sessions, team presence moves away.", LOCATOR),
    Setting("CT_AUDIT_RETENTION_DAYS", "audit-retention-days", 365.0, parse_float(0.0),
            "Days audit entries are kept (0: forever); older ones are deleted hourly.",
            LOCATOR),
    Setting("CT_METRICS_RETENTION_DAYS", "metrics-retention-days", 90.0, parse_float(0.0),
            "Days metric snapshots are kept for the charts (0: forever).", LOCATOR),
    Setting("CT_LINK_GRACE", "link-grace", 120.0, parse_float(0.0),
            "Seconds joins are still routed to an edge whose link to the locator dropped "
            "(its sessions go on meanwhile; it gets no new sessions).", LOCATOR),
    Setting("CT_EDGE_LINK_TIMEOUT", "edge-link-timeout", 6.0, parse_float(2.0),
            "Seconds an edge's link may stay silent before the locator drops it and flags "
            "the edge link-lost (a hung or partitioned edge): the locator pings every half "
            "of this and waits the other half for the answer.", LOCATOR),
    Setting("CT_EDGE_REGISTER_TIMEOUT", "edge-register-timeout", 5.0, parse_float(0.5),
            "Seconds a new /ws/edge connection has to register (with the edge secret) "
            "before the locator closes it.", LOCATOR),
    Setting("CT_PLACEMENT_RATE", "placement-rate", 1.0, parse_float(0.0),
            "New sessions per second (on average) the locator places for one client "
            "address (X-Forwarded-For only from CT_TRUSTED_PROXIES); more get 429 with "
            "Retry-After. 0: no limit.", LOCATOR),
    Setting("CT_PLACEMENT_BURST", "placement-burst", 30, parse_int(1),
            "New sessions one client address may start at once before CT_PLACEMENT_RATE "
            "applies.", LOCATOR),
]
