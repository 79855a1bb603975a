"""The minimal edit turning one text into another, as ``Y.Text`` operations. Pure.

:func:`edits` trims the common prefix and suffix, then (when what is left differs in more
than one place) diffs lines with :mod:`difflib` and refines small changed blocks character
by character. Positions are code points (Python ``str`` indices); the workspace converts
them to the CRDT's offsets. :func:`rebase` carries edits made against an older text onto a
text that has changed since (a three-way merge for a disk edit that raced a remote one).
"""

from __future__ import annotations

import bisect
import difflib
from typing import NamedTuple

REFINE_CHARS = 2048  # changed line blocks up to this size are refined to characters
REFINE_BLOCKS = 200  # ... when there are at most this many (each costs a SequenceMatcher)
CHAR_DIFF_CHARS = 2048  # a middle part this small is diffed by characters directly
PATIENCE_LINES = 2000  # above this many lines, anchor on unique lines (difflib is quadratic)


class Edit(NamedTuple):
    """Replace ``old[start:end]`` by ``text`` (positions in the *old* text)."""

    start: int
    end: int
    text: str


def edits(old: str, new: str) -> list[Edit]:
    """Non-overlapping edits, in ascending order, that turn ``old`` into ``new``."""
    if old == new:
        return []
    prefix = _common_prefix(old, new)
    limit = min(len(old), len(new)) - prefix
    suffix = _common_suffix(old, new, limit)
    a = old[prefix:len(old) - suffix]
    b = new[prefix:len(new) - suffix]
    if not a or not b:
        return [Edit(prefix, prefix + len(a), b)]
    if len(a) <= CHAR_DIFF_CHARS and len(b) <= CHAR_DIFF_CHARS:
        return _char_edits(a, b, prefix)
    return _line_edits(a, b, prefix)


def apply(text: str, changes: list[Edit]) -> str:
    """``text`` with ``changes`` (ascending, non-overlapping) applied."""
    out, at = [], 0
    for start, end, insert in changes:
        out.append(text[at:start])
        out.append(insert)
        at = end
    out.append(text[at:])
    return "".join(out)


def rebase(changes: list[Edit], base: str, current: str) -> list[Edit]:
    """``changes`` made against ``base``, moved onto ``current`` (``base`` plus others' edits).

    Positions in unchanged stretches move with the text. Text the others inserted or
    replaced is kept even where one of ``changes`` deleted around it, and an insertion
    inside a stretch the others replaced lands right after their text: no edit is lost.
    """
    if base == current:
        return list(changes)
    theirs = edits(base, current)
    out: list[Edit] = []
    for start, end, text in changes:
        if text:
            out.append(Edit(_map_insert(start, theirs), _map_insert(start, theirs), text))
        for a, b in _pieces(start, end, theirs):
            out.append(Edit(_map(a, theirs), _map(b, theirs, after_insertions=False), ""))
    out.sort(key=lambda e: (e.start, e.end))
    merged: list[Edit] = []
    for e in out:  # an insertion followed by a deletion at the same place: one replace
        if merged and merged[-1].start == merged[-1].end == e.start and not e.text:
            merged[-1] = Edit(e.start, e.end, merged[-1].text)
        else:
            merged.append(e)
    return merged


def _pieces(start: int, end: int, theirs: list[Edit]) -> list[tuple[int, int]]:
    """``[start, end)`` less the stretches the others replaced, cut at their insertions."""
    pieces, at = [], start
    for s, e, _ in theirs:
        if e < at or s >= end:
            if s >= end:
                break
            continue
        if s > at:
            pieces.append((at, s))
        at = max(at, e)
    if at < end:
        pieces.append((at, end))
    return [(a, b) for a, b in pieces if b > a]


def _map(x: int, theirs: list[Edit], after_insertions: bool = True) -> int:
    """Where base position ``x`` is in the others' text; an insertion of theirs at ``x``
    comes before it, unless ``after_insertions`` is false (the end of a deleted piece)."""
    shift = 0
    for s, e, text in theirs:
        if e > x or (e == x and s == e and not after_insertions):
            break
        shift += len(text) - (e - s)
    return x + shift


def _map_insert(x: int, theirs: list[Edit]) -> int:
    shift = 0
    for s, e, text in theirs:
        if s < x < e:
            return s + shift + len(text)
        if e > x:
            break
        shift += len(text) - (e - s)
    return x + shift


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    lo, hi = 0, n
    while lo < hi:  # binary search on slices: fast for long texts
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(a: str, b: str, limit: int) -> int:
    lo, hi = 0, max(limit, 0)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[len(a) - mid:] == b[len(b) - mid:]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _char_edits(a: str, b: str, offset: int) -> list[Edit]:
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return [Edit(offset + i1, offset + i2, b[j1:j2])
            for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


def _line_edits(a: str, b: str, offset: int) -> list[Edit]:
    lines_a = a.splitlines(keepends=True)
    lines_b = b.splitlines(keepends=True)
    starts_a = _starts(lines_a)
    starts_b = _starts(lines_b)
    if max(len(lines_a), len(lines_b)) > PATIENCE_LINES:
        opcodes = _patience_opcodes(lines_a, lines_b)
    else:
        matcher = difflib.SequenceMatcher(None, lines_a, lines_b, autojunk=False)
        opcodes = [op for op in matcher.get_opcodes() if op[0] != "equal"]
    refine = sum(1 for op in opcodes if op[0] == "replace") <= REFINE_BLOCKS
    result: list[Edit] = []
    for tag, i1, i2, j1, j2 in opcodes:
        sa, ea = starts_a[i1], starts_a[i2]
        sb, eb = starts_b[j1], starts_b[j2]
        if refine and tag == "replace" and ea - sa <= REFINE_CHARS and eb - sb <= REFINE_CHARS:
            result.extend(_char_edits(a[sa:ea], b[sb:eb], offset + sa))
        else:
            result.append(Edit(offset + sa, offset + ea, b[sb:eb]))
    return result


def _patience_opcodes(a: list[str], b: list[str]) -> list[tuple[str, int, int, int, int]]:
    """Changed line blocks, anchored on lines that occur once in each side and in the same
    order (patience diff, one level): O(n log n), whatever the input."""
    count_a: dict[str, int] = {}
    count_b: dict[str, int] = {}
    for line in a:
        count_a[line] = count_a.get(line, 0) + 1
    for line in b:
        count_b[line] = count_b.get(line, 0) + 1
    where_b = {line: j for j, line in enumerate(b) if count_b[line] == 1}
    pairs = [(i, where_b[line]) for i, line in enumerate(a)
             if count_a[line] == 1 and line in where_b]
    anchors = _longest_increasing(pairs)
    opcodes = []
    ia = ib = 0
    for i, j in anchors + [(len(a), len(b))]:
        # widen the equal stretch around the gap: equal lines next to an anchor
        while ia < i and ib < j and a[ia] == b[ib]:
            ia, ib = ia + 1, ib + 1
        ea, eb = i, j
        while ea > ia and eb > ib and a[ea - 1] == b[eb - 1]:
            ea, eb = ea - 1, eb - 1
        if ea > ia or eb > ib:
            tag = "replace" if ea > ia and eb > ib else ("delete" if ea > ia else "insert")
            opcodes.append((tag, ia, ea, ib, eb))
        ia, ib = i + 1, j + 1
    return opcodes


def _longest_increasing(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The longest subsequence of ``pairs`` (ascending first items) with ascending seconds."""
    tails: list[int] = []  # tails[k]: index in pairs ending the best run of length k + 1
    tail_values: list[int] = []
    previous = [-1] * len(pairs)
    for n, (_, j) in enumerate(pairs):
        k = bisect.bisect_left(tail_values, j)
        if k > 0:
            previous[n] = tails[k - 1]
        if k == len(tails):
            tails.append(n)
            tail_values.append(j)
        else:
            tails[k] = n
            tail_values[k] = j
    out = []
    n = tails[-1] if tails else -1
    while n >= 0:
        out.append(pairs[n])
        n = previous[n]
    return out[::-1]


def _starts(lines: list[str]) -> list[int]:
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    return starts
