"""The host's caps on guests' edits: which edits of a batch it refuses, and why. Pure.

The host writes guests' edits to its directory. An edit that would make a file larger than
``maxFileBytes``, or the shared files together larger than ``maxWorkspaceBytes``, is refused:
the host sets the document back to the text on its disk (every participant converges back)
and tells the others with a ``notice`` (docs/protocol.md, "Limits").
"""

from __future__ import annotations

from typing import NamedTuple

TOO_LARGE = "too-large"
WORKSPACE_FULL = "workspace-full"


def text_bytes(text: str) -> int:
    """A text's size as the caps count it: its UTF-8 bytes."""
    return len(text.encode("utf-8", "surrogatepass"))


class Proposal(NamedTuple):
    """One file's guests' edit: its size on disk and after the edit (UTF-8 bytes)."""

    disk_bytes: int
    new_bytes: int


class Refusal(NamedTuple):
    """Why an edit is refused: ``reason`` and the size it would have reached (the file's
    for ``too-large``, the workspace's for ``workspace-full``)."""

    reason: str
    would_be: int


def refused_edits(proposals: dict[str, Proposal], other_bytes: int, max_file_bytes: int,
                  max_workspace_bytes: int) -> dict[str, Refusal]:
    """The edits of ``proposals`` the host refuses, by path.

    ``other_bytes`` counts the shared files outside the batch. A file over
    ``max_file_bytes`` after the edit is refused (``too-large``). Edits that do not grow
    their file are accepted first (they make room); growing edits then in path order, each
    while the total stays within ``max_workspace_bytes`` (``workspace-full`` when not).
    An edit that does not grow its file is never refused for the workspace, even when the
    workspace is already past the cap.
    """
    refused: dict[str, Refusal] = {}
    total = other_bytes
    growing: list[str] = []
    for path in sorted(proposals):
        disk, new = proposals[path]
        if new > max_file_bytes and new > disk:
            refused[path] = Refusal(TOO_LARGE, new)
            total += disk
        elif new <= disk:
            total += new
        else:
            total += disk
            growing.append(path)
    for path in growing:
        disk, new = proposals[path]
        if total - disk + new > max_workspace_bytes:
            refused[path] = Refusal(WORKSPACE_FULL, total - disk + new)
        else:
            total += new - disk
    return refused


def describe(refusal: Refusal, names: list[str], max_file_bytes: int,
             max_workspace_bytes: int) -> str:
    """The ``notice`` message of a refused edit (the path travels beside it)."""
    who = f" by {', '.join(names)}" if names else ""
    if refusal.reason == TOO_LARGE:
        return (f"an edit{who} was undone: the file would be {refusal.would_be:,} bytes, "
                f"over the host's limit of {max_file_bytes:,} bytes per file")
    return (f"an edit{who} was undone: the shared files would be {refusal.would_be:,} "
            f"bytes, over the host's limit of {max_workspace_bytes:,} bytes in total")


class SizedTexts(dict):
    """``path -> text`` that keeps the total of the texts' UTF-8 sizes (``total``), so the
    host's workspace size costs nothing per batch. Set with ``[]``, remove with ``pop``."""

    def __init__(self):
        super().__init__()
        self.sizes: dict[str, int] = {}
        self.total = 0

    def __setitem__(self, path: str, text: str) -> None:
        size = text_bytes(text)
        self.total += size - self.sizes.get(path, 0)
        self.sizes[path] = size
        super().__setitem__(path, text)

    def pop(self, path: str, *default):
        self.total -= self.sizes.pop(path, 0)
        return super().pop(path, *default)

    def __delitem__(self, path: str) -> None:
        self.pop(path)
