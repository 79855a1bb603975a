"""The shared workspace as a Yjs document (``pycrdt``), awareness and the host's policy. Pure.

:class:`Workspace` holds the document: a ``files`` map of path → ``Text``. Local edits come
back as the Yjs update of their transaction (to send as an ``update`` message); remote
updates report which paths they touched. Positions given to it are code points (Python
``str`` indices); ``pycrdt`` counts UTF-8 bytes and Yjs UTF-16 code units, but all three
address the same characters, so converting at the edge of this class is all it takes
(``tests/collab/test_yjs_interop.py`` checks it against updates made by ``yjs``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pycrdt import Doc, Map, Text, merge_updates

from ct.collab import textdiff, tree
from ct.collab.messages import HOST_PARTICIPANT, MessageError

FILES = "files"


class Workspace:
    """One session's document."""

    def __init__(self, client_id: int | None = None):
        self.doc = Doc(client_id=client_id)
        self.files: Map = self.doc.get(FILES, type=Map)
        self._captured: list[bytes] | None = None
        self._changed: set[str] = set()
        self.doc.observe(self._on_transaction)
        self.files.observe_deep(self._on_change)

    @property
    def client_id(self) -> int:
        return self.doc.client_id

    # ---------------------------------------------------------------- reading

    def paths(self) -> list[str]:
        return list(self.files.keys())

    def text(self, path: str) -> str | None:
        value = self.files.get(path)
        return str(value) if isinstance(value, Text) else None

    def snapshot(self) -> dict[str, str]:
        return {path: str(value) for path, value in self.files.items()
                if isinstance(value, Text)}

    def state_vector(self) -> bytes:
        return self.doc.get_state()

    def update_for(self, state_vector: bytes | None) -> bytes:
        """What a peer with ``state_vector`` lacks (everything for ``None``)."""
        try:
            return self.doc.get_update(state_vector)
        except BaseException as e:  # ValueError, or pyo3's PanicException (a BaseException)
            if isinstance(e, _PASS_THROUGH):
                raise
            raise MessageError(f"bad state vector: {_why(e)}") from None

    # ---------------------------------------------------------------- remote

    def apply(self, update: bytes) -> set[str]:
        """Apply a remote update; the paths it added, removed or edited."""
        self._changed = set()
        try:
            self.doc.apply_update(update)
        except BaseException as e:  # a panic in pycrdt's Rust must not end the process
            if isinstance(e, _PASS_THROUGH):
                raise
            raise MessageError(f"bad update: {_why(e)}") from None
        changed, self._changed = self._changed, set()
        return changed

    # ---------------------------------------------------------------- local

    def put(self, path: str, content: str) -> bytes | None:
        """Make ``path`` hold ``content`` (added if new, minimal edit if not); the update."""
        current = self.files.get(path)
        if isinstance(current, Text):
            return self.edit(path, textdiff.edits(str(current), content))
        why = tree.validate_path(path)
        if why is not None:
            raise ValueError(f"{path!r}: {why}")
        return self._local(lambda: self.files.__setitem__(path, Text(content)))

    def remove(self, path: str) -> bytes | None:
        if path not in self.files:
            return None
        return self._local(lambda: self.files.pop(path))

    def edit(self, path: str, changes: list[textdiff.Edit]) -> bytes | None:
        """Apply code-point ``changes`` (ascending, non-overlapping) to ``path``'s text."""
        target = self.files.get(path)
        if not changes or not isinstance(target, Text):
            return None
        current = str(target)
        byte_edits = []
        at_char, at_byte = 0, 0
        for start, end, text in changes:  # code points -> UTF-8 offsets, in one pass
            at_byte += len(current[at_char:start].encode("utf-8"))
            end_byte = at_byte + len(current[start:end].encode("utf-8"))
            byte_edits.append((at_byte, end_byte, text))
            at_char = start
        def run():
            for start, end, text in reversed(byte_edits):
                if end > start:
                    del target[start:end]
                if text:
                    target.insert(start, text)
        return self._local(run)

    def _local(self, change) -> bytes | None:
        self._captured = []
        try:
            with self.doc.transaction(origin="local"):
                change()
        finally:
            captured, self._captured = self._captured, None
            self._changed = set()
        if not captured:
            return None
        return captured[0] if len(captured) == 1 else merge_updates(*captured)

    def _on_transaction(self, event) -> None:
        if self._captured is not None:
            self._captured.append(event.update)

    def _on_change(self, events) -> None:
        for event in events:
            path = getattr(event, "path", None)
            if path:
                self._changed.add(path[0])
            else:
                self._changed.update(getattr(event, "keys", {}) or {})


_PASS_THROUGH = (KeyboardInterrupt, SystemExit, GeneratorExit)


def _why(error: BaseException) -> str:
    return str(error).splitlines()[0][:200] if str(error) else error.__class__.__name__


# ------------------------------------------------------------------ awareness

MAX_AWARENESS_ENTRIES = 256
MAX_AWARENESS_STATE_BYTES = 64 * 1024


class Awareness:
    """y-protocols awareness states keyed by Yjs clientID, each owned by one participant.

    A remote entry is accepted only when its ``user.participant`` is the frame's sender (the
    edge vouches for the sender, not for what a payload claims), and an entry that another
    participant already owns is never taken over.
    """

    def __init__(self, client_id: int):
        self.client_id = client_id
        self.states: dict[int, dict[str, Any]] = {}
        self.clocks: dict[int, int] = {}
        self.owners: dict[int, int] = {}

    def set_local(self, state: dict[str, Any] | None) -> bytes:
        """Set this client's state; the awareness update announcing it."""
        self.clocks[self.client_id] = self.clocks.get(self.client_id, 0) + 1
        if state is None:
            self.states.pop(self.client_id, None)
        else:
            self.states[self.client_id] = state
        return self.encode([self.client_id])

    def local(self) -> bytes:
        return self.encode([self.client_id])

    def encode(self, client_ids: list[int]) -> bytes:
        out = bytearray(_varuint(len(client_ids)))
        for cid in client_ids:
            state = self.states.get(cid)
            data = json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            out += _varuint(cid) + _varuint(self.clocks.get(cid, 0))
            out += _varuint(len(data)) + data
        return bytes(out)

    def apply(self, data: bytes, sender: int) -> tuple[set[int], list[str]]:
        """Apply a remote awareness update from participant ``sender``.

        Returns the clientIDs whose state changed and why entries were refused."""
        entries = decode_awareness(data)
        changed: set[int] = set()
        refused: list[str] = []
        for cid, clock, state in entries:
            if cid == self.client_id:
                refused.append(f"client {cid} is this client's own")
                continue
            owner = self.owners.get(cid)
            if owner is not None and owner != sender:
                refused.append(f"client {cid} belongs to participant {owner}")
                continue
            if state is not None and _claimed_participant(state) != sender:
                refused.append(f"client {cid} claims participant "
                               f"{_claimed_participant(state)!r}, sent by {sender}")
                continue
            current = self.clocks.get(cid, 0)  # as y-protocols: a first state has clock 1+
            if clock < current or (clock == current and not (state is None
                                                            and cid in self.states)):
                continue
            self.clocks[cid] = clock
            self.owners[cid] = sender
            if state is None:
                if self.states.pop(cid, None) is not None:
                    changed.add(cid)
            elif self.states.get(cid) != state:
                self.states[cid] = state
                changed.add(cid)
        return changed, refused

    def remove_participant(self, participant: int) -> set[int]:
        """Drop the entries of a participant who left; their clientIDs."""
        gone = {cid for cid, owner in self.owners.items() if owner == participant}
        for cid in gone:
            self.states.pop(cid, None)
            self.owners.pop(cid, None)
        return gone

    def remote_states(self) -> dict[int, dict[str, Any]]:
        return {cid: s for cid, s in self.states.items() if cid != self.client_id}


def _claimed_participant(state: Any) -> Any:
    user = state.get("user") if isinstance(state, dict) else None
    return user.get("participant") if isinstance(user, dict) else None


def decode_awareness(data: bytes) -> list[tuple[int, int, dict[str, Any] | None]]:
    """``[(clientID, clock, state or None)]``; :class:`MessageError` when malformed."""
    reader = _Reader(data)
    count = reader.varuint()
    if count > MAX_AWARENESS_ENTRIES:
        raise MessageError(f"awareness update with {count} entries")
    entries = []
    for _ in range(count):
        cid, clock = reader.varuint(), reader.varuint()
        raw = reader.varbytes(MAX_AWARENESS_STATE_BYTES)
        try:
            state = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise MessageError("awareness state is not UTF-8 JSON") from None
        if state is not None and not isinstance(state, dict):
            raise MessageError("awareness state is neither an object nor null")
        entries.append((cid, clock, state))
    if not reader.done():
        raise MessageError("trailing bytes after the awareness update")
    return entries


def _varuint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.at = 0

    def varuint(self) -> int:
        value, shift = 0, 0
        while True:
            if self.at >= len(self.data):
                raise MessageError("truncated varuint")
            byte = self.data[self.at]
            self.at += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise MessageError("varuint too long")

    def varbytes(self, limit: int) -> bytes:
        n = self.varuint()
        if n > limit or self.at + n > len(self.data):
            raise MessageError("string length out of bounds")
        raw = self.data[self.at:self.at + n]
        self.at += n
        return raw

    def done(self) -> bool:
        return self.at == len(self.data)


# ------------------------------------------------------------------ policy

MAX_UNSHARED_LISTED = 100_000


@dataclass
class Policy:
    """The host's choices for the session (the ``policy`` message)."""

    read_only: bool = False
    max_file_bytes: int = tree.DEFAULT_MAX_FILE_BYTES
    max_workspace_bytes: int = tree.DEFAULT_MAX_WORKSPACE_BYTES
    unshared: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"v": 1, "readOnly": self.read_only, "maxFileBytes": self.max_file_bytes,
                "maxWorkspaceBytes": self.max_workspace_bytes, "unshared": self.unshared}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> "Policy":
        if value.get("v") != 1:
            raise MessageError(f"policy version {value.get('v')!r}")
        read_only = value.get("readOnly", False)
        max_file = value.get("maxFileBytes", tree.DEFAULT_MAX_FILE_BYTES)
        max_ws = value.get("maxWorkspaceBytes", tree.DEFAULT_MAX_WORKSPACE_BYTES)
        unshared = value.get("unshared", [])
        if not isinstance(read_only, bool) or not _count(max_file) or not _count(max_ws):
            raise MessageError("policy with a bad readOnly, maxFileBytes or maxWorkspaceBytes")
        if not isinstance(unshared, list) or len(unshared) > MAX_UNSHARED_LISTED:
            raise MessageError("policy with a bad unshared list")
        for item in unshared:
            if not (isinstance(item, dict) and isinstance(item.get("path"), str)
                    and _count(item.get("size")) is not None
                    and item.get("reason") in tree.UNSHARED_REASONS):
                raise MessageError("policy with a bad unshared entry")
        return cls(read_only, max_file, max_ws, unshared)

    def accepts_edits_from(self, sender: int) -> bool:
        """Whether ``update``/``sync-step2`` from ``sender`` may be applied."""
        return not self.read_only or sender == HOST_PARTICIPANT


def _count(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2 ** 53:
        return value
    return None
