"""Declarative settings: one table for command-line options, ``CT_*`` variables and docs.

Every daemon (edge, locator, TURN) declares the settings it reads as :class:`Setting`
rows. :func:`make_options` turns a list of rows into a ``twisted.python.usage.Options``
class whose values come, in order of precedence, from the command line, the
environment and the row's default. A value that does not parse stops start-up with
one :class:`~twisted.python.usage.UsageError` naming both the variable and the option.

:func:`markdown_table` renders rows for ``docs/settings.md`` (``python -m ct.settings``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence
from urllib.parse import urlsplit

from twisted.python import usage


class SettingError(ValueError):
    """A value that does not parse; the message says what was expected."""


@dataclass(frozen=True)
class Setting:
    """One setting: its ``CT_*`` variable, its ``--option`` and how to parse it."""

    env: str
    option: str
    default: Any
    parse: Callable[[str], Any]
    help: str
    roles: frozenset = field(default_factory=lambda: frozenset({"edge"}))
    secret: bool = False
    also_env: tuple[str, ...] = ()  # read in order when ``env`` is unset (e.g. NO_PROXY)

    @property
    def key(self) -> str:
        """Name under which the parsed value is stored (``--http-listen`` -> ``http_listen``)."""
        return self.option.replace("-", "_")


# ---------------------------------------------------------------- parsers


def parse_str(raw: str) -> str:
    return raw


def parse_optional_str(raw: str) -> str | None:
    raw = raw.strip()
    return raw or None


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingError(f"expected true or false, got {raw!r}")


def parse_int(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise SettingError(f"expected a whole number, got {raw!r}") from None
        if minimum is not None and value < minimum:
            raise SettingError(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise SettingError(f"must be at most {maximum}, got {value}")
        return value

    return parse


def parse_float(minimum: float | None = None) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise SettingError(f"expected a number, got {raw!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise SettingError(f"expected a finite number, got {raw!r}")
        if minimum is not None and value < minimum:
            raise SettingError(f"must be at least {minimum}, got {value}")
        return value

    return parse


_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2,
               "mb": 1024**2, "mib": 1024**2, "g": 1024**3, "gb": 1024**3, "gib": 1024**3}


def parse_size(minimum: int = 1) -> Callable[[str], int]:
    """Byte sizes such as ``65536``, ``64k``, ``1MiB``."""

    def parse(raw: str) -> int:
        text = raw.strip().lower().replace(" ", "")
        digits = text.rstrip("kmgib")
        unit = text[len(digits):]
        if unit not in _SIZE_UNITS or not digits.isdigit():
            raise SettingError(f"expected a size such as 65536, 64k or 1MiB, got {raw!r}")
        value = int(digits) * _SIZE_UNITS[unit]
        if value < minimum:
            raise SettingError(f"must be at least {minimum} bytes, got {value}")
        return value

    return parse


def parse_choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().upper() if all(c.isupper() for c in choices) else raw.strip()
        if value not in choices:
            raise SettingError(f"expected one of {', '.join(choices)}, got {raw!r}")
        return value

    return parse


def parse_url(schemes: Sequence[str], allow_none: bool = False) -> Callable[[str], str | None]:
    def parse(raw: str) -> str | None:
        value = raw.strip()
        if allow_none and value.lower() in ("", "none"):
            return None
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.hostname:
            raise SettingError(
                f"expected a URL starting with {' or '.join(s + '://' for s in schemes)}, got {raw!r}"
            )
        try:
            parts.port
        except ValueError:
            raise SettingError(f"bad port in URL {raw!r}") from None
        return value.rstrip("/")

    return parse


def parse_endpoint(raw: str) -> str | None:
    """A Twisted server endpoint string (``tcp:1080:interface=127.0.0.1``), or ``none``."""
    from twisted.internet.endpoints import serverFromString
    from twisted.internet.testing import MemoryReactor

    value = raw.strip()
    if value.lower() in ("", "none", "off"):
        return None
    probe = value
    if value.startswith("ssl:") and "privateKey=" not in value:
        probe = "tcp:" + value[4:]  # certificate and key come from their own settings
    try:
        serverFromString(MemoryReactor(), probe)
    except Exception as e:  # serverFromString raises many types for bad strings
        raise SettingError(
            f"not a Twisted endpoint string such as tcp:1080:interface=127.0.0.1 ({e})"
        ) from None
    return value


def parse_existing_file(raw: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    if not os.path.isfile(value):
        raise SettingError(f"file not found: {value}")
    if not os.access(value, os.R_OK):
        raise SettingError(f"file not readable: {value}")
    return value


def parse_directory(raw: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    if not os.path.isdir(value):
        raise SettingError(f"directory not found: {value}")
    return value


def parse_time_zone(raw: str) -> str | None:
    """An IANA time zone name such as ``Europe/Berlin`` (or ``UTC``)."""
    value = raw.strip()
    if not value:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingError(f"unknown time zone {value!r} (expected a name such as "
                           "Europe/Berlin or UTC)") from None
    return value


def apply_time_zone(name: str | None) -> None:
    """Use ``name`` for the timestamps of logs and reports from now on."""
    if name:
        import time

        os.environ["TZ"] = name
        time.tzset()


def parse_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.replace(";", ",").split(",") if item.strip())


def parse_cidr_list(raw: str) -> tuple[str, ...]:
    """Comma-separated CIDRs (or bare addresses), normalised: ``10.0.0.0/8, ::1/128``."""
    from ct.common.addresses import AddressError, parse_networks

    try:
        return tuple(str(n) for n in parse_networks(parse_list(raw), "CIDR"))
    except AddressError as e:
        raise SettingError(str(e)) from None


# ---------------------------------------------------------------- resolution


def resolve(settings: Iterable[Setting], given: Mapping[str, str | None],
            environ: Mapping[str, str]) -> dict[str, Any]:
    """Parse every setting: command line first, then the environment, then the default.

    ``given`` maps option keys to the raw command-line value (``None`` when absent).
    Raises :class:`usage.UsageError` naming the setting whose value is wrong.
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for s in settings:
        raw = given.get(s.key)
        source = f"--{s.option}"
        for name in (s.env, *s.also_env):
            if raw is not None:
                break
            raw = environ.get(name)
            source = name
        if raw is None:
            values[s.key] = s.default
            sources[s.key] = "default"
            continue
        try:
            values[s.key] = s.parse(raw)
        except SettingError as e:
            shown = "(hidden)" if s.secret else repr(mask_userinfo(raw))
            raise usage.UsageError(
                f"invalid setting {s.env} (--{s.option}) = {shown} from {source}: {e}"
            ) from None
        sources[s.key] = source
    values["_sources"] = sources
    return values


def make_options(settings: Sequence[Setting], synopsis: str, description: str = ""):
    """Build a ``usage.Options`` class for these settings.

    The instance takes an optional ``environ`` mapping (defaults to ``os.environ``)
    so tests can pass their own.
    """
    rows = list(settings)

    class Options(usage.Options):
        optParameters = [
            [s.option, None, None, f"{s.help} [env {s.env}; default {_show_default(s)}]"]
            for s in rows
        ]

        def __init__(self, environ: Mapping[str, str] | None = None):
            super().__init__()
            self.environ = os.environ if environ is None else environ

        def postOptions(self):
            given = {s.key: self[s.option] for s in rows}
            try:
                self.update(resolve(rows, given, self.environ))
            except usage.UsageError:
                self._failed = True
                raise

        def getUsage(self, width=None):
            # twistd prints the usage before a UsageError; after a bad setting one line
            # pointing at the help is clearer than two pages of options.
            if getattr(self, "_failed", False):
                return "(see --help for every option, docs/settings.md for every CT_* variable)"
            return super().getUsage(width)

    Options.synopsis = synopsis
    Options.longdesc = description
    Options.settings = rows
    return Options


def describe(values: Mapping[str, Any], settings: Iterable[Setting]) -> list[str]:
    """Lines describing the active configuration, secrets masked (for the start-up log)."""
    lines = []
    sources = values.get("_sources", {})
    for s in settings:
        value = values.get(s.key)
        if s.secret and value:
            value = "****"
        elif isinstance(value, str):
            value = mask_userinfo(value)
        lines.append(f"{s.env}={value!r} ({sources.get(s.key, 'default')})")
    return lines


_USERINFO_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^/\s]*@")


def mask_userinfo(text: str) -> str:
    """A URL's password (``scheme://user:password@host``) as ``****``, for logs."""
    return _USERINFO_PASSWORD.sub(r"\1****@", text)


def _show_default(s: Setting) -> str:
    if s.default is None:
        return "unset"
    if isinstance(s.default, bool):
        return "true" if s.default else "false"
    if isinstance(s.default, tuple):
        return ",".join(str(x) for x in s.default) or "empty"
    return str(s.default)


def markdown_table(settings: Iterable[Setting]) -> str:
    lines = [
        "| variable | option | roles | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for s in settings:
        roles = ", ".join(sorted(s.roles))
        env = " or ".join(f"`{name}`" for name in (s.env, *s.also_env))
        lines.append(
            f"| {env} | `--{s.option}` | {roles} | `{_show_default(s)}` | {s.help} |"
        )
    return "\n".join(lines) + "\n"
