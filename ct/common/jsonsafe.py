"""Parsing JSON from untrusted peers: bounded size and nesting, one error type.

``json.loads`` recurses once per nesting level, so a few kilobytes of ``[[[[…`` raise
``RecursionError`` deep inside the decoder; callers here get a :class:`JSONError`
(a ``ValueError``) instead, whatever went wrong.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32


class JSONError(ValueError):
    """The input is not acceptable JSON; the message says why, in words for a log line."""


def depth_of(value: Any, limit: int) -> int:
    """Nesting depth of a parsed value (a scalar is 0), counted up to ``limit + 1``."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                return deepest
        stack.extend((child, depth) for child in children
                     if isinstance(child, (dict, list)))
    return deepest


def loads(data: bytes | str, max_bytes: int | None = None, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` for untrusted input: raises :class:`JSONError` and nothing else."""
    if max_bytes is not None and len(data) > max_bytes:
        raise JSONError(f"over {max_bytes} bytes")
    try:
        value = json.loads(data)
    except RecursionError:
        raise JSONError(f"nested more than {max_depth} levels deep") from None
    except (ValueError, UnicodeDecodeError, TypeError) as e:
        raise JSONError(f"not JSON: {e}") from None
    if depth_of(value, max_depth) > max_depth:
        raise JSONError(f"nested more than {max_depth} levels deep")
    return value
