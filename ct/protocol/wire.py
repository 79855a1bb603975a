"""Client protocol v1 codec: JSON control messages and binary data frames. Pure, no I/O.

Control messages are JSON objects in websocket text messages, each with a ``type``.
Payloads travel in websocket binary messages with a small fixed header:

* client to edge: ``flags:u8 | to:u32 | payload`` (``to`` 0 = every other participant)
* edge to client: ``flags:u8 | seq:u64 | from:u32 | payload``

``flags`` bit 0 marks a text payload (the client's choice; the edge never looks inside).
All integers are big-endian. ``docs/protocol.md`` is the reference.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from ct.common.jsonsafe import JSONError, loads
from ct.protocol.errors import BAD_MESSAGE, UNSUPPORTED_VERSION, ProtocolError

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})

FLAG_TEXT = 0x01
KNOWN_FLAGS = FLAG_TEXT

UPSTREAM_HEADER = struct.Struct(">BI")
DOWNSTREAM_HEADER = struct.Struct(">BQI")
UPSTREAM_HEADER_SIZE = UPSTREAM_HEADER.size  # 5
DOWNSTREAM_HEADER_SIZE = DOWNSTREAM_HEADER.size  # 13
BROADCAST = 0
MAX_PARTICIPANT_ID = 2**32 - 1

MAX_NAME = 64
MAX_TITLE = 200
MAX_TOKEN = 128
MAX_CONTROL_BYTES = 8192
# The deepest real control message is ``ice-servers`` (object > list > object > list = 4).
MAX_CONTROL_DEPTH = 8


# ---------------------------------------------------------------- binary frames


def encode_upstream(payload: bytes, to: int = BROADCAST, text: bool = False) -> bytes:
    """A client's data frame (used by the reference client and tests)."""
    return UPSTREAM_HEADER.pack(FLAG_TEXT if text else 0, to) + payload


def decode_downstream(frame: bytes) -> tuple[int, int, int, bytes]:
    """Split an edge data frame into ``(flags, seq, sender, payload)``."""
    if len(frame) < DOWNSTREAM_HEADER_SIZE:
        raise ProtocolError(BAD_MESSAGE, "downstream data frame shorter than its header")
    flags, seq, sender = DOWNSTREAM_HEADER.unpack_from(frame)
    return flags, seq, sender, frame[DOWNSTREAM_HEADER_SIZE:]


# ---------------------------------------------------------------- JSON control messages


def encode_control(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode_control(data: bytes | str) -> dict[str, Any]:
    """Parse a control message; raise :class:`ProtocolError` with ``bad-message`` if malformed
    (not JSON, over :data:`MAX_CONTROL_BYTES`, nested deeper than :data:`MAX_CONTROL_DEPTH`)."""
    try:
        message = loads(data, max_bytes=MAX_CONTROL_BYTES, max_depth=MAX_CONTROL_DEPTH)
    except JSONError as e:
        raise ProtocolError(BAD_MESSAGE, f"control message {e}") from None
    if not isinstance(message, dict):
        raise ProtocolError(BAD_MESSAGE, "a control message must be a JSON object")
    kind = message.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(BAD_MESSAGE, "control message without a string 'type'")
    return message


def check_version(message: dict[str, Any]) -> int:
    version = message.get("v", PROTOCOL_VERSION)
    if version not in SUPPORTED_VERSIONS or isinstance(version, bool):
        raise ProtocolError(
            UNSUPPORTED_VERSION,
            f"protocol version {version!r} not supported; this edge speaks "
            f"{sorted(SUPPORTED_VERSIONS)}",
        )
    return version


def field_str(message: dict[str, Any], name: str, max_len: int, required: bool = True,
              min_len: int = 1) -> str | None:
    value = message.get(name)
    if value is None:
        if required:
            raise ProtocolError(BAD_MESSAGE, f"'{message['type']}' needs a string '{name}'")
        return None
    if not isinstance(value, str):
        raise ProtocolError(BAD_MESSAGE, f"'{name}' must be a string")
    if not min_len <= len(value) <= max_len:
        raise ProtocolError(BAD_MESSAGE, f"'{name}' must be {min_len} to {max_len} characters")
    return value


def field_int(message: dict[str, Any], name: str, minimum: int = 0,
              maximum: int = 2**63 - 1, required: bool = True) -> int | None:
    value = message.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError(BAD_MESSAGE, f"'{message['type']}' needs a whole number '{name}'")
    if not minimum <= value <= maximum:
        raise ProtocolError(BAD_MESSAGE, f"'{name}' must be between {minimum} and {maximum}")
    return value
