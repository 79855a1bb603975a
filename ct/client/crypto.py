"""End-to-end encryption of session payloads (AES-256-GCM). The key never reaches a server.

The host makes the key and puts it in the join link's fragment (``#key=…``), which
browsers and our client never send to a server. Each payload is ``nonce(12) | ciphertext``
with the session id as associated data, so a frame cannot be replayed into another session.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12


class DecryptError(Exception):
    """A payload did not decrypt: wrong key, or altered in transit."""


class SessionKey:
    def __init__(self, key: bytes):
        if len(key) != 32:
            raise ValueError("a session key is 32 bytes")
        self.key = key
        self._aead = AESGCM(key)

    @classmethod
    def generate(cls) -> "SessionKey":
        return cls(AESGCM.generate_key(bit_length=256))

    @classmethod
    def from_text(cls, text: str) -> "SessionKey":
        padded = text + "=" * (-len(text) % 4)
        try:
            raw = base64.urlsafe_b64decode(padded)
        except ValueError:
            raise ValueError("session key is not base64url") from None
        return cls(raw)

    def to_text(self) -> str:
        return base64.urlsafe_b64encode(self.key).rstrip(b"=").decode("ascii")

    def encrypt(self, plaintext: bytes, associated: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, associated)

    def decrypt(self, payload: bytes, associated: bytes) -> bytes:
        if len(payload) < NONCE_BYTES + 16:
            raise DecryptError("payload too short to be encrypted")
        try:
            return self._aead.decrypt(payload[:NONCE_BYTES], payload[NONCE_BYTES:], associated)
        except InvalidTag:
            raise DecryptError("payload does not decrypt with the session key") from None
