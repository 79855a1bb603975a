"""The locator's database settings, read from ``locator-config.json``.

The file has the shape CodeTogether operators already use::

    {"database": {"dialect": "postgres", "host": "db", "port": 5432,
                  "user": "ct", "password": "...", "schema": "codetogether",
                  "sslEnabled": true, "sslMode": "verify-full",
                  "rejectUnauthorized": true, "ca": "/etc/ct/ca.pem"},
     "locatorMode": true}

Without a ``database`` section (or without a file) the locator uses an embedded
SQLite file in its data directory. Every error names the offending field; the
password never appears in a message, a ``repr`` or a log line.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

DIALECTS = ("sqlite", "postgres", "mysql")
DEFAULT_PORTS = {"postgres": 5432, "mysql": 3306}
SQLITE_FILE_NAME = "locator.sqlite3"

_DIALECT_ALIASES = {
    "sqlite": "sqlite", "sqlite3": "sqlite",
    "postgres": "postgres", "postgresql": "postgres", "pg": "postgres",
    "mysql": "mysql", "mariadb": "mysql",
}

# TLS modes, from weakest to strongest, with the spellings of libpq and MySQL.
TLS_MODES = ("disable", "prefer", "require", "verify-ca", "verify-full")
_TLS_MODE_ALIASES = {
    "disable": "disable", "disabled": "disable", "off": "disable",
    "allow": "prefer", "prefer": "prefer", "preferred": "prefer",
    "require": "require", "required": "require",
    "verify-ca": "verify-ca", "verify_ca": "verify-ca",
    "verify-full": "verify-full", "verify_full": "verify-full",
    "verify-identity": "verify-full", "verify_identity": "verify-full",
}

_KNOWN_DATABASE_KEYS = {
    "dialect", "host", "port", "user", "username", "password", "schema", "database",
    "pgSchema", "path", "sslEnabled", "ssl", "sslMode", "rejectUnauthorized",
    "ca", "sslCa", "cert", "sslCert", "key", "sslKey", "connectTimeout", "poolSize",
}


_PG_IDENTIFIER = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,62}\Z")


class ConfigError(ValueError):
    """``locator-config.json`` is missing, unreadable or has a bad field."""


@dataclass(frozen=True)
class TLSConfig:
    """How to secure the connection to the database server.

    ``ca``, ``cert`` and ``key`` are file paths or inline PEM text.
    """

    mode: str = "disable"
    ca: str | None = None
    cert: str | None = None
    key: str | None = field(default=None, repr=False)

    @property
    def enabled(self) -> bool:
        return self.mode != "disable"

    @property
    def verify_certificate(self) -> bool:
        return self.mode in ("verify-ca", "verify-full")

    @property
    def verify_hostname(self) -> bool:
        return self.mode == "verify-full"


@dataclass(frozen=True)
class DatabaseConfig:
    """Where the locator's data lives; ``password`` is hidden from ``repr``."""

    dialect: str
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str | None = None
    pg_schema: str | None = None
    sqlite_path: str | None = None
    tls: TLSConfig = field(default_factory=TLSConfig)
    connect_timeout: float = 10.0
    pool_size: int = 5

    def describe(self) -> str:
        """One line for logs and error messages, without the password."""
        if self.dialect == "sqlite":
            return f"sqlite database {self.sqlite_path}"
        where = f"{self.host}:{self.port}"
        schema = f" schema {self.pg_schema!r}" if self.pg_schema else ""
        tls = f" tls={self.tls.mode}"
        return f"{self.dialect} database {self.database!r}{schema} at {where} as user {self.user!r}{tls}"


@dataclass(frozen=True)
class LocatorConfig:
    database: DatabaseConfig
    locator_mode: bool = True


def sqlite_config(path: str) -> DatabaseConfig:
    """The embedded quick-start database: one SQLite file."""
    return DatabaseConfig(dialect="sqlite", sqlite_path=path)


@dataclass(frozen=True)
class InlineConfig:
    """``locator-config.json`` given as the JSON text itself (``CT_LOCATOR_CONFIG={...}``, as
    deployments of the product we replace do). Its ``repr`` never shows the text, which
    holds the database password."""

    text: str

    def __repr__(self) -> str:
        return f"<inline JSON, {len(self.text)} characters>"


def load_locator_config(source: str | InlineConfig | None, data_dir: str) -> LocatorConfig:
    """Read ``locator-config.json`` at the path ``source``, or the inline JSON; ``None``
    means SQLite in ``data_dir``."""
    if source is None:
        return LocatorConfig(database=sqlite_config(os.path.join(data_dir, SQLITE_FILE_NAME)))
    if isinstance(source, InlineConfig):
        name, text = "(inline JSON in CT_LOCATOR_CONFIG)", source.text
    else:
        name = source
        try:
            with open(source, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise ConfigError(f"cannot read locator config {source}: {e.strerror or e}") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"locator config {name} is not valid JSON: {e}") from None
    try:
        return parse_locator_config(data, data_dir)
    except ConfigError as e:
        raise ConfigError(f"locator config {name}: {e}") from None


def parse_locator_config(data: Any, data_dir: str) -> LocatorConfig:
    """Validate the parsed JSON document; errors name the bad field."""
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a JSON object")
    locator_mode = data.get("locatorMode", True)
    if not isinstance(locator_mode, bool):
        raise ConfigError(f"locatorMode must be true or false, got {locator_mode!r}")
    section = data.get("database")
    if section is None:
        db = sqlite_config(os.path.join(data_dir, SQLITE_FILE_NAME))
    else:
        db = parse_database_section(section, data_dir)
    return LocatorConfig(database=db, locator_mode=locator_mode)


def parse_database_section(section: Any, data_dir: str) -> DatabaseConfig:
    if not isinstance(section, dict):
        raise ConfigError("database must be a JSON object")
    unknown = sorted(set(section) - _KNOWN_DATABASE_KEYS)
    if unknown:
        raise ConfigError(f"database has unknown field(s): {', '.join(unknown)}")

    raw_dialect = _string(section, "dialect", required=True)
    dialect = _DIALECT_ALIASES.get(raw_dialect.lower())
    if dialect is None:
        raise ConfigError(
            f"database.dialect must be one of mysql, postgres or sqlite, got {raw_dialect!r}"
        )
    connect_timeout = _number(section, "connectTimeout", 10.0, minimum=0.5)
    pool_size = int(_number(section, "poolSize", 5, minimum=1, integer=True))

    if dialect == "sqlite":
        path = _string(section, "path") or os.path.join(data_dir, SQLITE_FILE_NAME)
        return DatabaseConfig(dialect="sqlite", sqlite_path=path,
                              connect_timeout=connect_timeout, pool_size=1)

    host = _string(section, "host") or "localhost"
    port = int(_number(section, "port", DEFAULT_PORTS[dialect], minimum=1, maximum=65535,
                       integer=True))
    user = _string(section, "user") or _string(section, "username")
    if not user:
        raise ConfigError("database.user is required for " + dialect)
    password = section.get("password")
    if password is not None and not isinstance(password, str):
        raise ConfigError("database.password must be a string")
    database = _string(section, "database") or _string(section, "schema")
    if not database:
        raise ConfigError("database.schema (the database name) is required for " + dialect)
    pg_schema, schema_field = _string(section, "pgSchema"), "pgSchema"
    if dialect == "postgres" and _string(section, "database") and _string(section, "schema"):
        # Both given: "database" names the database, "schema" the namespace in it.
        pg_schema, schema_field = _string(section, "schema"), "schema"
    if pg_schema and dialect != "postgres":
        raise ConfigError("database.pgSchema is only meaningful for postgres")
    if pg_schema and not _PG_IDENTIFIER.match(pg_schema):
        # It is written into SQL (CREATE SCHEMA, search_path), where it cannot be a parameter.
        raise ConfigError(f"database.{schema_field} must be a PostgreSQL identifier: a letter "
                          f"or _ then up to 62 letters, digits or _, got {pg_schema!r}")
    return DatabaseConfig(
        dialect=dialect, host=host, port=port, user=user, password=password or None,
        database=database, pg_schema=pg_schema, tls=_parse_tls(section),
        connect_timeout=connect_timeout, pool_size=pool_size,
    )


def _parse_tls(section: Mapping[str, Any]) -> TLSConfig:
    enabled = section.get("sslEnabled", section.get("ssl"))
    if enabled is not None and not isinstance(enabled, bool):
        raise ConfigError(f"database.sslEnabled must be true or false, got {enabled!r}")
    reject = section.get("rejectUnauthorized")
    if reject is not None and not isinstance(reject, bool):
        raise ConfigError(f"database.rejectUnauthorized must be true or false, got {reject!r}")
    raw_mode = _string(section, "sslMode")
    mode = None
    if raw_mode is not None:
        mode = _TLS_MODE_ALIASES.get(raw_mode.lower())
        if mode is None:
            raise ConfigError(
                f"database.sslMode must be one of {', '.join(TLS_MODES)} "
                f"(or the MySQL spellings), got {raw_mode!r}"
            )
    if enabled is False:
        if mode not in (None, "disable"):
            raise ConfigError(f"database.sslMode is {raw_mode!r} but sslEnabled is false")
        mode = "disable"
    elif mode is None:
        if enabled:
            mode = "require" if reject is False else "verify-full"
        else:
            mode = "disable"
    if reject is True and mode in ("prefer", "require"):
        mode = "verify-full"
    if reject is False and mode in ("verify-ca", "verify-full"):
        raise ConfigError(
            f"database.rejectUnauthorized is false but sslMode {raw_mode!r} verifies certificates"
        )
    ca = _pem_or_path(section, "ca", "sslCa")
    cert = _pem_or_path(section, "cert", "sslCert")
    key = _pem_or_path(section, "key", "sslKey")
    if (cert is None) != (key is None):
        raise ConfigError("database.cert and database.key must be given together")
    if mode == "disable" and (ca or cert):
        raise ConfigError("database TLS files are given but TLS is disabled (set sslEnabled)")
    return TLSConfig(mode=mode, ca=ca, cert=cert, key=key)


def _pem_or_path(section: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = _string(section, name)
        if value is None:
            continue
        if value.startswith("-----BEGIN"):
            return section[name]  # inline PEM, kept byte for byte
        if not os.path.isfile(value):
            raise ConfigError(f"database.{name}: file not found: {value}")
        return value
    return None


def _string(section: Mapping[str, Any], name: str, required: bool = False) -> str | None:
    value = section.get(name)
    if value is None:
        if required:
            raise ConfigError(f"database.{name} is required")
        return None
    if not isinstance(value, str):
        raise ConfigError(f"database.{name} must be a string, got {type(value).__name__}")
    value = value.strip()
    if not value and required:
        raise ConfigError(f"database.{name} must not be empty")
    return value or None


def _number(section: Mapping[str, Any], name: str, default: float, minimum: float | None = None,
            maximum: float | None = None, integer: bool = False) -> float:
    value = section.get(name, default)
    if isinstance(value, str) and value.strip():
        try:
            value = float(value) if not integer else int(value)
        except ValueError:
            raise ConfigError(f"database.{name} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"database.{name} must be a number, got {value!r}")
    if integer and value != int(value):
        raise ConfigError(f"database.{name} must be a whole number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"database.{name} must be at least {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"database.{name} must be at most {maximum}, got {value!r}")
    return value
