"""Text for the dashboard's pages and exports: times, ages, numbers, CSV cells, form lists."""

from __future__ import annotations

import calendar
import time
from typing import Any


def utc(at: float | None, with_seconds: bool = True) -> str:
    if at is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S" if with_seconds else "%Y-%m-%d %H:%M",
                         time.gmtime(at)) + " UTC"


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} days ago"


def parse_utc(text: str | None) -> float | None:
    """``YYYY-MM-DDTHH:MM[:SS]`` (an HTML datetime-local value) read as UTC."""
    if not text:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            return float(calendar.timegm(time.strptime(text.strip(), fmt)))
        except ValueError:
            continue
    return None


def number(value: Any, digits: int = 0, unit: str = "") -> str:
    """``value`` rounded, with ``unit``; a dash when it is missing or not a number."""
    if value is None:
        return "—"
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "—"
    return (f"{value:.{digits}f}" if digits else f"{value:.0f}") + unit


def csv_cell(value: Any) -> str:
    """A CSV cell a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def form_lines(text: str) -> list[str]:
    """A textarea's entries: one a line or separated by commas, blanks dropped."""
    return [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]
