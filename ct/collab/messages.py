"""Application layer v1 codec: the plaintext inside one data frame (docs/protocol.md,
"Application layer v1: the shared workspace"). Pure: bytes in, values out.

A message is ``kind:u8 | body``. Messages above :data:`CHUNK_BYTES` travel as ``chunk``
messages; :class:`Reassembler` joins them, one half-received message per sender.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

# Kinds (one home: docs/protocol.md lists the same table).
SYNC_STEP1 = 0x01
SYNC_STEP2 = 0x02
UPDATE = 0x03
AWARENESS = 0x04
POLICY = 0x05
NOTICE = 0x06
AV_SIGNAL = 0x08  # call signalling (js/core/av.js, docs/av.md); the Python side ignores it
CHUNK = 0x7F
KIND_NAMES = {SYNC_STEP1: "sync-step1", SYNC_STEP2: "sync-step2", UPDATE: "update",
              AWARENESS: "awareness", POLICY: "policy", NOTICE: "notice", CHUNK: "chunk"}

# A participant's colour in awareness: PALETTE[(participant - 1) % 8], the same on every
# client (js/app/model.js holds the same list; tests/collab/test_messages.py compares them).
PALETTE = ("#1a73e8", "#d93025", "#188038", "#e37400", "#9334e6", "#00838f", "#c2185b",
           "#5f6368")


def color_for(participant: int) -> str:
    """The conventional colour of a participant id (the first for anything below 1)."""
    return PALETTE[(participant - 1) % len(PALETTE) if participant > 0 else 0]


SYNC_INITIAL = 0x01  # sync-step1 flag: "send me your state vector too"
CHUNK_BYTES = 512 * 1024  # a message above this goes as chunks of at most this size
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # one message, chunks joined
MAX_JSON_BYTES = 4 * 1024 * 1024  # policy / notice bodies (a policy lists unshared files)
CHUNK_HEADER = struct.Struct(">III")  # id, index, count
HOST_PARTICIPANT = 1
AWARENESS_INTERVAL = 15.0  # seconds between awareness renewals
SYNC_ANSWER_TIMEOUT = 5.0  # seconds before a sync-step1 to the host is asked of everyone
NOTICE_LEVELS = ("info", "warning")


class MessageError(ValueError):
    """A malformed message: dropped and logged by the receiver, never fatal."""


@dataclass(frozen=True)
class Message:
    kind: int
    body: bytes | dict[str, Any]
    flags: int = 0  # sync-step1 only

    @property
    def name(self) -> str:
        return KIND_NAMES.get(self.kind, f"kind-{self.kind:#04x}")


# ------------------------------------------------------------------ encoding

def sync_step1(state_vector: bytes, initial: bool) -> bytes:
    return bytes([SYNC_STEP1, SYNC_INITIAL if initial else 0]) + state_vector


def sync_step2(update: bytes) -> bytes:
    return bytes([SYNC_STEP2]) + update


def update(update_bytes: bytes) -> bytes:
    return bytes([UPDATE]) + update_bytes


def awareness(awareness_update: bytes) -> bytes:
    return bytes([AWARENESS]) + awareness_update


def policy(value: dict[str, Any]) -> bytes:
    return bytes([POLICY]) + _json(value)


def notice(level: str, code: str, message: str, path: str | None = None) -> bytes:
    body: dict[str, Any] = {"level": level, "code": code, "message": message}
    if path is not None:
        body["path"] = path
    return bytes([NOTICE]) + _json(body)


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def split(message: bytes, chunk_id: int) -> list[bytes]:
    """``message`` as it goes on the wire: itself, or chunks when above :data:`CHUNK_BYTES`."""
    if len(message) <= CHUNK_BYTES:
        return [message]
    if len(message) > MAX_MESSAGE_BYTES:
        raise MessageError(f"message of {len(message)} bytes is over {MAX_MESSAGE_BYTES}")
    parts = [message[i:i + CHUNK_BYTES] for i in range(0, len(message), CHUNK_BYTES)]
    return [bytes([CHUNK]) + CHUNK_HEADER.pack(chunk_id & 0xFFFFFFFF, n, len(parts)) + part
            for n, part in enumerate(parts)]


# ------------------------------------------------------------------ decoding

def decode(data: bytes) -> Message | None:
    """One whole message (not a chunk); ``None`` for an unknown kind (ignored by contract)."""
    if not data:
        raise MessageError("empty message")
    kind, body = data[0], bytes(data[1:])
    if kind == SYNC_STEP1:
        if not body:
            raise MessageError("sync-step1 without flags")
        return Message(kind, body[1:], flags=body[0])
    if kind in (SYNC_STEP2, UPDATE, AWARENESS):
        if not body:
            raise MessageError(f"empty {KIND_NAMES[kind]}")
        return Message(kind, body)
    if kind == POLICY:
        return Message(kind, _decode_json(body, "policy"))
    if kind == NOTICE:
        value = _decode_json(body, "notice")
        if value.get("level") not in NOTICE_LEVELS or not isinstance(value.get("code"), str) \
                or not isinstance(value.get("message"), str):
            raise MessageError("notice needs level, code and message")
        return Message(kind, value)
    if kind == CHUNK:
        raise MessageError("a chunk inside a chunked message")
    return None


def _decode_json(body: bytes, what: str) -> dict[str, Any]:
    if len(body) > MAX_JSON_BYTES:
        raise MessageError(f"{what} over {MAX_JSON_BYTES} bytes")
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise MessageError(f"{what} is not UTF-8 JSON") from None
    if not isinstance(value, dict):
        raise MessageError(f"{what} is not a JSON object")
    return value


class Reassembler:
    """Joins chunked messages, at most one half-received message per sender."""

    def __init__(self, max_bytes: int = MAX_MESSAGE_BYTES):
        self.max_bytes = max_bytes
        self._pending: dict[int, tuple[int, int, list[bytes], int]] = {}  # id, count, parts, size

    def feed(self, sender: int, data: bytes) -> bytes | None:
        """A received payload; fires the whole message when complete (chunked or not).

        Raises :class:`MessageError` for a bad chunk (the half-received message is dropped).
        """
        if not data or data[0] != CHUNK:
            return bytes(data)
        if len(data) < 1 + CHUNK_HEADER.size:
            self._pending.pop(sender, None)
            raise MessageError("chunk shorter than its header")
        chunk_id, index, count = CHUNK_HEADER.unpack_from(data, 1)
        part = bytes(data[1 + CHUNK_HEADER.size:])
        pending = self._pending.get(sender)
        if pending is None or pending[0] != chunk_id:
            self._pending.pop(sender, None)  # a new id discards the old
            if index != 0:
                raise MessageError(f"chunk {index} of an unknown message {chunk_id}")
            if count == 0 or count > self.max_bytes:
                raise MessageError(f"chunk count {count}")
            pending = (chunk_id, count, [], 0)
        cid, expected_count, parts, size = pending
        if count != expected_count or index != len(parts):
            self._pending.pop(sender, None)
            raise MessageError(f"chunk {index}/{count} out of order in message {cid}")
        size += len(part)
        if size > self.max_bytes:
            self._pending.pop(sender, None)
            raise MessageError(f"chunked message over {self.max_bytes} bytes")
        parts.append(part)
        if len(parts) == expected_count:
            self._pending.pop(sender, None)
            whole = b"".join(parts)
            if whole[:1] == bytes([CHUNK]):
                raise MessageError("a chunk inside a chunked message")
            return whole
        self._pending[sender] = (cid, expected_count, parts, size)
        return None

    def forget(self, sender: int) -> None:
        """Drop a departed sender's half-received message."""
        self._pending.pop(sender, None)

    def pending_bytes(self) -> int:
        return sum(p[3] for p in self._pending.values())
