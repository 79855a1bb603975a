"""STUN/TURN wire codec (RFC 8489, RFC 8656): pure functions, no I/O.

:func:`parse_message` turns bytes into a :class:`Message` or raises :class:`StunError`;
:func:`encode_message` builds a message, optionally signed with MESSAGE-INTEGRITY or
MESSAGE-INTEGRITY-SHA256 and closed with FINGERPRINT. Attribute values stay raw bytes
in the message; the ``decode_*``/``encode_*`` helpers convert them.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import struct
import zlib

MAGIC_COOKIE = 0x2112A442
MAGIC_COOKIE_BYTES = struct.pack("!I", MAGIC_COOKIE)
HEADER_LENGTH = 20
FINGERPRINT_XOR = 0x5354554E

# Methods
BINDING = 0x001
ALLOCATE = 0x003
REFRESH = 0x004
SEND = 0x006
DATA = 0x007
CREATE_PERMISSION = 0x008
CHANNEL_BIND = 0x009

METHOD_NAMES = {
    BINDING: "Binding", ALLOCATE: "Allocate", REFRESH: "Refresh", SEND: "Send",
    DATA: "Data", CREATE_PERMISSION: "CreatePermission", CHANNEL_BIND: "ChannelBind",
}

# Classes
REQUEST = 0x000
INDICATION = 0x010
SUCCESS = 0x100
ERROR = 0x110

# Attributes
MAPPED_ADDRESS = 0x0001
USERNAME = 0x0006
MESSAGE_INTEGRITY = 0x0008
ERROR_CODE = 0x0009
UNKNOWN_ATTRIBUTES = 0x000A
CHANNEL_NUMBER = 0x000C
LIFETIME = 0x000D
XOR_PEER_ADDRESS = 0x0012
DATA_ATTR = 0x0013
REALM = 0x0014
NONCE = 0x0015
XOR_RELAYED_ADDRESS = 0x0016
REQUESTED_ADDRESS_FAMILY = 0x0017
EVEN_PORT = 0x0018
REQUESTED_TRANSPORT = 0x0019
DONT_FRAGMENT = 0x001A
MESSAGE_INTEGRITY_SHA256 = 0x001C
PASSWORD_ALGORITHM = 0x001D
USERHASH = 0x001E
XOR_MAPPED_ADDRESS = 0x0020
RESERVATION_TOKEN = 0x0022
PRIORITY = 0x0024
USE_CANDIDATE = 0x0025
ADDITIONAL_ADDRESS_FAMILY = 0x8000
ADDRESS_ERROR_CODE = 0x8001
PASSWORD_ALGORITHMS = 0x8002
ALTERNATE_DOMAIN = 0x8003
ICMP = 0x8004
SOFTWARE = 0x8022
ALTERNATE_SERVER = 0x8023
FINGERPRINT = 0x8028
ICE_CONTROLLED = 0x8029
ICE_CONTROLLING = 0x802A

# Attributes this codec understands; any other comprehension-required one
# (type < 0x8000) earns a 420 response from the server.
KNOWN_ATTRIBUTES = frozenset({
    MAPPED_ADDRESS, USERNAME, MESSAGE_INTEGRITY, ERROR_CODE, UNKNOWN_ATTRIBUTES,
    CHANNEL_NUMBER, LIFETIME, XOR_PEER_ADDRESS, DATA_ATTR, REALM, NONCE,
    XOR_RELAYED_ADDRESS, REQUESTED_ADDRESS_FAMILY, EVEN_PORT, REQUESTED_TRANSPORT,
    DONT_FRAGMENT, MESSAGE_INTEGRITY_SHA256, PASSWORD_ALGORITHM, USERHASH,
    XOR_MAPPED_ADDRESS, RESERVATION_TOKEN, PRIORITY, USE_CANDIDATE,
})

# Password algorithms (RFC 8489 section 18.5)
ALGORITHM_MD5 = 0x0001
ALGORITHM_SHA256 = 0x0002

FAMILY_IPV4 = 0x01
FAMILY_IPV6 = 0x02

PROTOCOL_UDP = 17
PROTOCOL_TCP = 6

REASONS = {
    300: "Try Alternate", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    405: "Mobility Forbidden", 420: "Unknown Attribute", 437: "Allocation Mismatch",
    438: "Stale Nonce", 440: "Address Family not Supported", 441: "Wrong Credentials",
    442: "Unsupported Transport Protocol", 443: "Peer Address Family Mismatch",
    486: "Allocation Quota Reached", 500: "Server Error", 508: "Insufficient Capacity",
}

_HEADER = struct.Struct("!HHI12s")
_ATTR_HEADER = struct.Struct("!HH")
_U32 = struct.Struct("!I")
_U16 = struct.Struct("!H")


class StunError(ValueError):
    """Bytes that are not a well-formed STUN message."""


class Message:
    """A parsed STUN message.

    ``attributes`` maps each attribute type to the value of its first occurrence
    (raw bytes). ``raw`` keeps the original bytes so integrity can be checked later.
    """

    __slots__ = ("method", "cls", "transaction_id", "attributes", "unknown",
                 "raw", "integrity_at", "integrity256_at", "fingerprint_at")

    def __init__(self, method: int, cls: int, transaction_id: bytes,
                 attributes: dict[int, bytes] | None = None):
        self.method = method
        self.cls = cls
        self.transaction_id = transaction_id
        self.attributes = {} if attributes is None else attributes
        self.unknown: list[int] = []
        self.raw = b""
        self.integrity_at = -1
        self.integrity256_at = -1
        self.fingerprint_at = -1

    def get(self, attr: int) -> bytes | None:
        return self.attributes.get(attr)

    def __contains__(self, attr: int) -> bool:
        return attr in self.attributes

    def __repr__(self) -> str:
        name = METHOD_NAMES.get(self.method, hex(self.method))
        kind = {REQUEST: "request", INDICATION: "indication", SUCCESS: "success",
                ERROR: "error"}[self.cls]
        return f"<STUN {name} {kind} {self.transaction_id.hex()} attrs={sorted(self.attributes)}>"


def padded(length: int) -> int:
    """Length rounded up to a multiple of four."""
    return (length + 3) & ~3


def is_stun(data: bytes) -> bool:
    """Cheap test: the two top bits are zero and the magic cookie is present."""
    return len(data) >= HEADER_LENGTH and data[0] < 0x40 and data[4:8] == MAGIC_COOKIE_BYTES


def parse_message(data: bytes) -> Message:
    """Parse one STUN message that fills ``data`` exactly; raise :class:`StunError`."""
    size = len(data)
    if size < HEADER_LENGTH:
        raise StunError("shorter than a STUN header")
    message_type, length, cookie, transaction_id = _HEADER.unpack_from(data, 0)
    if message_type & 0xC000:
        raise StunError("top bits of the message type are not zero")
    if cookie != MAGIC_COOKIE:
        raise StunError("no magic cookie")
    if length & 3:
        raise StunError("length is not a multiple of 4")
    if length + HEADER_LENGTH != size:
        raise StunError("length does not match the data")
    method = ((message_type & 0x000F) | ((message_type & 0x00E0) >> 1)
              | ((message_type & 0x3E00) >> 2))
    cls = message_type & 0x0110
    message = Message(method, cls, transaction_id)
    message.raw = data
    attributes = message.attributes
    pos = HEADER_LENGTH
    after_integrity = False
    while pos < size:
        if pos + 4 > size:
            raise StunError("truncated attribute header")
        attr_type, attr_len = _ATTR_HEADER.unpack_from(data, pos)
        end = pos + 4 + attr_len
        if end > size:
            raise StunError("attribute runs past the end")
        if message.fingerprint_at >= 0:
            raise StunError("attribute after FINGERPRINT")
        if attr_type == FINGERPRINT:
            if attr_len != 4:
                raise StunError("bad FINGERPRINT length")
            message.fingerprint_at = pos
        elif attr_type == MESSAGE_INTEGRITY_SHA256:
            if attr_len < 16 or attr_len > 32 or attr_len & 3:
                raise StunError("bad MESSAGE-INTEGRITY-SHA256 length")
            if message.integrity256_at < 0:
                message.integrity256_at = pos
            after_integrity = True
        elif after_integrity:
            # Attributes after MESSAGE-INTEGRITY are not authenticated: ignore them.
            pass
        elif attr_type == MESSAGE_INTEGRITY:
            if attr_len != 20:
                raise StunError("bad MESSAGE-INTEGRITY length")
            message.integrity_at = pos
            after_integrity = True
        if not after_integrity or attr_type in (
                MESSAGE_INTEGRITY, MESSAGE_INTEGRITY_SHA256, FINGERPRINT):
            if attr_type not in attributes:
                attributes[attr_type] = data[pos + 4:end]
            if attr_type < 0x8000 and attr_type not in KNOWN_ATTRIBUTES:
                message.unknown.append(attr_type)
        pos = pos + 4 + padded(attr_len)
    if pos != size:
        raise StunError("padding runs past the end")
    return message


# ---------------------------------------------------------------- integrity


def fingerprint(data: bytes) -> int:
    """CRC-32 of ``data`` XOR 0x5354554E (RFC 8489 section 14.7)."""
    return (zlib.crc32(data) ^ FINGERPRINT_XOR) & 0xFFFFFFFF


def _with_length(data: bytes, end: int) -> bytes:
    """The message up to ``data[:pos]`` with its length field set so it ends at ``end``."""
    return data[:2] + _U16.pack(end - HEADER_LENGTH) + data[4:]


def check_fingerprint(message: Message) -> bool:
    """True when the message has a FINGERPRINT and it matches."""
    at = message.fingerprint_at
    if at < 0:
        return False
    data = message.raw
    expected = _U32.unpack_from(data, at + 4)[0]
    return fingerprint(_with_length(data[:at], at + 8)) == expected


def check_integrity(message: Message, key: bytes) -> bool:
    """True when MESSAGE-INTEGRITY (HMAC-SHA1) matches ``key``."""
    at = message.integrity_at
    if at < 0:
        return False
    data = message.raw
    signed = _with_length(data[:at], at + 24)
    return hmac.compare_digest(hmac.new(key, signed, hashlib.sha1).digest(), data[at + 4:at + 24])


def check_integrity_sha256(message: Message, key: bytes) -> bool:
    """True when MESSAGE-INTEGRITY-SHA256 matches ``key`` (possibly truncated, >= 16 bytes)."""
    at = message.integrity256_at
    if at < 0:
        return False
    data = message.raw
    length = _ATTR_HEADER.unpack_from(data, at)[1]
    signed = _with_length(data[:at], at + 4 + length)
    digest = hmac.new(key, signed, hashlib.sha256).digest()[:length]
    return hmac.compare_digest(digest, data[at + 4:at + 4 + length])


def long_term_key(username: str, realm: str, password: str,
                  algorithm: int = ALGORITHM_MD5) -> bytes:
    """Long-term credential key: MD5 (or SHA-256) of ``username:realm:password``."""
    text = f"{username}:{realm}:{password}".encode("utf-8")
    if algorithm == ALGORITHM_SHA256:
        return hashlib.sha256(text).digest()
    return hashlib.md5(text).digest()


# ---------------------------------------------------------------- building


def message_type(method: int, cls: int) -> int:
    return (method & 0x000F) | ((method & 0x0070) << 1) | ((method & 0x0F80) << 2) | cls


def encode_attribute(attr_type: int, value: bytes) -> bytes:
    length = len(value)
    return _ATTR_HEADER.pack(attr_type, length) + value + b"\x00" * (padded(length) - length)


def encode_message(method: int, cls: int, transaction_id: bytes,
                   attributes: list[tuple[int, bytes]] = (), *,
                   key: bytes | None = None, integrity: str | None = "sha1",
                   add_fingerprint: bool = True) -> bytes:
    """Build a message; with ``key``, sign it (``integrity`` ``sha1``, ``sha256`` or ``both``)."""
    body = b"".join([encode_attribute(t, v) for t, v in attributes])
    header = _HEADER.pack(message_type(method, cls), 0, MAGIC_COOKIE, transaction_id)
    data = header + body
    if key is not None and integrity in ("sha1", "both"):
        end = len(data) + 24
        mac = hmac.new(key, _with_length(data, end), hashlib.sha1).digest()
        data += _ATTR_HEADER.pack(MESSAGE_INTEGRITY, 20) + mac
    if key is not None and integrity in ("sha256", "both"):
        end = len(data) + 36
        mac = hmac.new(key, _with_length(data, end), hashlib.sha256).digest()
        data += _ATTR_HEADER.pack(MESSAGE_INTEGRITY_SHA256, 32) + mac
    if add_fingerprint:
        end = len(data) + 8
        crc = fingerprint(_with_length(data, end))
        data += _ATTR_HEADER.pack(FINGERPRINT, 4) + _U32.pack(crc)
    return _with_length(data, len(data))


# ---------------------------------------------------------------- attribute values


def decode_address(value: bytes) -> tuple[str, int]:
    """MAPPED-ADDRESS style value to ``(host, port)``."""
    if len(value) < 4:
        raise StunError("address too short")
    family = value[1]
    port = _U16.unpack_from(value, 2)[0]
    if family == FAMILY_IPV4 and len(value) == 8:
        return socket.inet_ntop(socket.AF_INET, value[4:8]), port
    if family == FAMILY_IPV6 and len(value) == 20:
        return socket.inet_ntop(socket.AF_INET6, value[4:20]), port
    raise StunError("bad address family or length")


def encode_address(host: str, port: int) -> bytes:
    if ":" in host:
        return struct.pack("!BBH", 0, FAMILY_IPV6, port) + socket.inet_pton(socket.AF_INET6, host)
    return struct.pack("!BBH", 0, FAMILY_IPV4, port) + socket.inet_pton(socket.AF_INET, host)


def _xor_mask(family: int, transaction_id: bytes) -> bytes:
    return MAGIC_COOKIE_BYTES if family == FAMILY_IPV4 else MAGIC_COOKIE_BYTES + transaction_id


def decode_xor_address(value: bytes, transaction_id: bytes) -> tuple[str, int]:
    """XOR-MAPPED-ADDRESS style value to ``(host, port)``."""
    if len(value) < 8:
        raise StunError("address too short")
    family = value[1]
    port = _U16.unpack_from(value, 2)[0] ^ (MAGIC_COOKIE >> 16)
    if family == FAMILY_IPV4 and len(value) == 8:
        raw = bytes(a ^ b for a, b in zip(value[4:8], MAGIC_COOKIE_BYTES))
        return socket.inet_ntop(socket.AF_INET, raw), port
    if family == FAMILY_IPV6 and len(value) == 20:
        raw = bytes(a ^ b for a, b in zip(value[4:20], MAGIC_COOKIE_BYTES + transaction_id))
        return socket.inet_ntop(socket.AF_INET6, raw), port
    raise StunError("bad address family or length")


def encode_xor_address(host: str, port: int, transaction_id: bytes) -> bytes:
    if ":" in host:
        family, raw = FAMILY_IPV6, socket.inet_pton(socket.AF_INET6, host)
    else:
        family, raw = FAMILY_IPV4, socket.inet_pton(socket.AF_INET, host)
    masked = bytes(a ^ b for a, b in zip(raw, _xor_mask(family, transaction_id)))
    return struct.pack("!BBH", 0, family, port ^ (MAGIC_COOKIE >> 16)) + masked


def decode_u32(value: bytes) -> int:
    if len(value) != 4:
        raise StunError("expected 4 bytes")
    return _U32.unpack(value)[0]


def encode_u32(value: int) -> bytes:
    return _U32.pack(value)


def decode_text(value: bytes, limit: int = 763) -> str:
    if len(value) > limit:
        raise StunError("text attribute too long")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise StunError("text attribute is not UTF-8") from None


def encode_error(code: int, reason: str | None = None) -> bytes:
    reason = REASONS.get(code, "Error") if reason is None else reason
    return struct.pack("!HBB", 0, code // 100, code % 100) + reason.encode("utf-8")


def decode_error(value: bytes) -> tuple[int, str]:
    if len(value) < 4:
        raise StunError("ERROR-CODE too short")
    code = (value[2] & 0x07) * 100 + value[3]
    return code, value[4:].decode("utf-8", "replace")


def decode_channel_number(value: bytes) -> int:
    if len(value) != 4:
        raise StunError("CHANNEL-NUMBER must be 4 bytes")
    return _U16.unpack_from(value, 0)[0]


def encode_channel_number(number: int) -> bytes:
    return _U16.pack(number) + b"\x00\x00"


def decode_requested_transport(value: bytes) -> int:
    if len(value) != 4:
        raise StunError("REQUESTED-TRANSPORT must be 4 bytes")
    return value[0]


def encode_requested_transport(protocol: int) -> bytes:
    return bytes((protocol, 0, 0, 0))


def decode_family(value: bytes) -> int:
    if len(value) != 4:
        raise StunError("address family attribute must be 4 bytes")
    return value[0]


def encode_unknown_attributes(types: list[int]) -> bytes:
    return b"".join(_U16.pack(t) for t in types)


def decode_password_algorithms(value: bytes) -> list[tuple[int, bytes]]:
    """PASSWORD-ALGORITHMS to a list of (algorithm, parameters)."""
    out = []
    pos = 0
    while pos + 4 <= len(value):
        algorithm, length = _ATTR_HEADER.unpack_from(value, pos)
        params = value[pos + 4:pos + 4 + length]
        if len(params) != length:
            raise StunError("truncated PASSWORD-ALGORITHMS")
        out.append((algorithm, params))
        pos += 4 + padded(length)
    if pos != len(value):
        raise StunError("bad PASSWORD-ALGORITHMS")
    return out


def encode_password_algorithms(algorithms: list[int]) -> bytes:
    return b"".join(_ATTR_HEADER.pack(a, 0) for a in algorithms)


def decode_password_algorithm(value: bytes) -> int:
    if len(value) < 4:
        raise StunError("PASSWORD-ALGORITHM too short")
    return _U16.unpack_from(value, 0)[0]


# ---------------------------------------------------------------- ChannelData


_CHANNEL_HEADER = struct.Struct("!HH")
# Channel numbers: RFC 8656 narrowed them to 0x4000-0x4FFF, RFC 5766 clients (coturn's
# among them) pick up to 0x7FFE; both are accepted. ChannelData starts with 0x40-0x7F.
CHANNEL_MIN = 0x4000
CHANNEL_MAX = 0x7FFE
CHANNEL_FIRST_MAX = CHANNEL_MAX >> 8


def is_channel_data(data: bytes) -> bool:
    return len(data) >= 4 and 0x40 <= data[0] <= CHANNEL_FIRST_MAX


def encode_channel_data(number: int, payload: bytes, pad: bool = False) -> bytes:
    """ChannelData message; ``pad`` adds the zero padding stream transports need."""
    header = _CHANNEL_HEADER.pack(number, len(payload))
    if pad and len(payload) & 3:
        return header + payload + b"\x00" * (4 - (len(payload) & 3))
    return header + payload


def decode_channel_data(data: bytes) -> tuple[int, bytes]:
    """(channel, payload) of one ChannelData message; padding after the payload is allowed."""
    if len(data) < 4:
        raise StunError("ChannelData too short")
    number, length = _CHANNEL_HEADER.unpack_from(data, 0)
    if not CHANNEL_MIN <= number <= CHANNEL_MAX:
        raise StunError("channel number out of range")
    if length + 4 > len(data):
        raise StunError("ChannelData length exceeds data")
    return number, data[4:4 + length]


def stream_frame_length(header: bytes) -> int:
    """Bytes one frame occupies on a stream (TCP/TLS), from its first four bytes.

    STUN messages are 20 + length bytes; ChannelData is padded to a multiple of four.
    Returns -1 for bytes that start neither (the stream cannot be resynchronised).
    """
    first = header[0]
    length = (header[2] << 8) | header[3]
    if first < 0x40:
        return HEADER_LENGTH + length
    if first <= CHANNEL_FIRST_MAX:
        return 4 + ((length + 3) & ~3)
    return -1
