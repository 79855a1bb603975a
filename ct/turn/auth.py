"""Long-term credentials for TURN: static users, the TURN REST API scheme, nonces.

The REST API scheme is the one coturn calls ``use-auth-secret``: the user name is
``expiry:user`` (``expiry`` in Unix seconds; coturn also accepts ``user:expiry`` and a bare
``expiry``) and the password is ``base64(HMAC-SHA1(secret, username))``. Nonces are
stateless: they carry their expiry and an HMAC under a per-process key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
from typing import Mapping

from ct.turn import stun

NONCE_COOKIE = "obMatJos2"
# Security feature bits (RFC 8489 section 9.2): "password algorithms" set.
NONCE_FEATURES = base64.b64encode(b"\x80\x00\x00").decode("ascii")
NONCE_PREFIX = NONCE_COOKIE + NONCE_FEATURES
SUPPORTED_ALGORITHMS = (stun.ALGORITHM_MD5, stun.ALGORITHM_SHA256)


def rest_password(secret: str, username: str) -> str:
    """The password the TURN REST API scheme pairs with ``username``."""
    mac = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(mac).decode("ascii")


def rest_credentials(secret: str, user: str, ttl: float, now: float) -> tuple[str, str]:
    """Time-limited ``(username, password)`` valid for ``ttl`` seconds from ``now``."""
    expiry = int(now + ttl)
    username = f"{expiry}:{user}" if user else str(expiry)
    return username, rest_password(secret, username)


def rest_user(username: str) -> str:
    """The user part of a REST API user name (``expiry:user`` or ``user:expiry``)."""
    head, sep, tail = username.partition(":")
    if not sep:
        return "" if head.isdigit() else head
    return tail if head.isdigit() else head


def rest_expiry(username: str) -> int | None:
    """The expiry a REST API user name carries, or None if it carries none."""
    head, sep, tail = username.partition(":")
    if not sep:
        return int(head) if head.isdigit() else None
    if head.isdigit():
        return int(head)
    if tail.isdigit():
        return int(tail)
    return None


class NonceMinter:
    """Stateless nonces: ``obMatJos2`` + features + expiry + HMAC, valid ``lifetime`` s."""

    def __init__(self, lifetime: float = 600.0, key: bytes | None = None):
        self.lifetime = lifetime
        self._key = key if key is not None else os.urandom(16)

    def _mac(self, expiry: int) -> str:
        # 9 bytes (72 bits) for a nonce of minutes: 12 characters, no padding.
        mac = hmac.new(self._key, struct.pack("!Q", expiry), hashlib.sha256).digest()[:9]
        return base64.urlsafe_b64encode(mac).decode("ascii")

    def mint(self, now: float) -> str:
        expiry = int(now + self.lifetime)
        return f"{NONCE_PREFIX}{expiry:x}.{self._mac(expiry)}"

    def check(self, nonce: str, now: float) -> str:
        """``"ok"``, ``"stale"`` (ours but expired) or ``"invalid"``."""
        if not nonce.startswith(NONCE_PREFIX):
            return "invalid"
        stamp, _, mac = nonce[len(NONCE_PREFIX):].partition(".")
        try:
            expiry = int(stamp, 16)
        except ValueError:
            return "invalid"
        if expiry > 2**63 or not hmac.compare_digest(mac, self._mac(expiry)):
            return "invalid"
        return "ok" if now < expiry else "stale"


MAX_REVOKED = 100_000


class Credentials:
    """Who may allocate: static ``users`` (name -> password) and/or a REST API ``secret``.

    REST API credentials can be revoked by scope before they expire: revoking ``s1``
    refuses the users ``s1`` and ``s1.<anything>`` (a session and its participants).
    """

    def __init__(self, realm: str, users: Mapping[str, str] | None = None,
                 secret: str | None = None):
        self.realm = realm
        self.users = dict(users or {})
        self.secret = secret or None
        self.revoked: dict[str, float] = {}  # scope -> when forgetting it is safe

    def revoke(self, scope: str, until: float) -> None:
        """Refuse the REST users of ``scope`` until ``until`` (when their credentials expire)."""
        if not scope:
            return
        self.revoked.pop(scope, None)
        if len(self.revoked) >= MAX_REVOKED:  # bounded: forget the oldest
            del self.revoked[next(iter(self.revoked))]
        self.revoked[scope] = until

    def forget_revoked(self, now: float) -> None:
        """Drop revocations whose credentials have all expired."""
        if self.revoked:
            for scope in [s for s, until in self.revoked.items() if until <= now]:
                del self.revoked[scope]

    def is_revoked(self, user: str) -> bool:
        """Whether ``user`` (a REST user part such as ``s1.3``) falls in a revoked scope."""
        revoked = self.revoked
        if not revoked or not user:
            return False
        scope = ""
        for part in user.split(".", 7):
            scope = f"{scope}.{part}" if scope else part
            if scope in revoked:
                return True
        return False

    def password(self, username: str, now: float,
                 check_expiry: bool = True) -> tuple[str | None, str]:
        """``(password, "")`` or ``(None, reason)`` for this user name at time ``now``.

        ``check_expiry`` False accepts an expired REST user name (not a revoked one): a
        request on an allocation made while the name was valid.
        """
        password = self.users.get(username)
        if password is not None:
            return password, ""
        if self.secret is None:
            return None, "unknown user"
        expiry = rest_expiry(username)
        if expiry is None:
            return None, "unknown user"
        if check_expiry and expiry <= now:
            return None, "expired REST API credentials"
        if self.is_revoked(rest_user(username)):
            return None, "revoked REST API credentials"
        return rest_password(self.secret, username), ""

    def key(self, username: str, now: float, algorithm: int = stun.ALGORITHM_MD5,
            check_expiry: bool = True) -> tuple[bytes | None, str]:
        password, reason = self.password(username, now, check_expiry)
        if password is None:
            return None, reason
        return stun.long_term_key(username, self.realm, password, algorithm), ""


class AuthResult:
    """Outcome of :func:`authenticate`: either ``username``/``key``/``integrity`` or an error."""

    __slots__ = ("username", "key", "integrity", "error", "reason")

    def __init__(self, username=None, key=None, integrity="sha1", error=0, reason=""):
        self.username = username
        self.key = key
        self.integrity = integrity
        self.error = error
        self.reason = reason


def authenticate(message: stun.Message, credentials: Credentials, nonces: NonceMinter,
                 now: float, allocation_user: str | None = None) -> AuthResult:
    """Check a request's long-term credentials (RFC 8489 section 9.2.4).

    ``allocation_user`` is the user name of the client's allocation, if it has one: with
    that same name the request is accepted after the name's expiry (the allocation was made
    while it was valid; revocation and the allocation's lifetime end it).

    Errors: 401 (no or wrong credentials, a REALM not ours; ``reason`` empty for the normal first challenge),
    400 (incomplete), 438 (stale or foreign nonce).
    """
    attrs = message.attributes
    has_sha1 = message.integrity_at >= 0
    has_sha256 = message.integrity256_at >= 0
    if not has_sha1 and not has_sha256:
        return AuthResult(error=401)
    raw_user = attrs.get(stun.USERNAME)
    raw_realm = attrs.get(stun.REALM)
    raw_nonce = attrs.get(stun.NONCE)
    if raw_user is None or raw_realm is None or raw_nonce is None:
        return AuthResult(error=400, reason="credentials incomplete")
    try:
        username = stun.decode_text(raw_user, 513)
        nonce = stun.decode_text(raw_nonce, 763)
    except stun.StunError:
        return AuthResult(error=400, reason="credentials not UTF-8")
    if raw_realm != credentials.realm.encode("utf-8"):
        return AuthResult(error=401, reason="foreign realm", username=username)
    state = nonces.check(nonce, now)
    if state != "ok":
        return AuthResult(error=438, reason=f"{state} nonce")
    algorithm = stun.ALGORITHM_MD5
    offered = attrs.get(stun.PASSWORD_ALGORITHMS)
    chosen = attrs.get(stun.PASSWORD_ALGORITHM)
    if offered is not None or chosen is not None:
        try:
            if offered != stun.encode_password_algorithms(list(SUPPORTED_ALGORITHMS)):
                raise stun.StunError("PASSWORD-ALGORITHMS differs from ours")
            algorithm = stun.decode_password_algorithm(chosen or b"")
        except stun.StunError as e:
            return AuthResult(error=400, reason=str(e))
        if algorithm not in SUPPORTED_ALGORITHMS:
            return AuthResult(error=400, reason="unsupported password algorithm")
    key, why = credentials.key(username, now, algorithm,
                               check_expiry=username != allocation_user)
    if key is None:
        return AuthResult(error=401, reason=why, username=username)
    if has_sha256:
        if not stun.check_integrity_sha256(message, key):
            return AuthResult(error=401, reason="bad MESSAGE-INTEGRITY-SHA256", username=username)
        return AuthResult(username=username, key=key, integrity="sha256")
    if not stun.check_integrity(message, key):
        return AuthResult(error=401, reason="bad MESSAGE-INTEGRITY", username=username)
    return AuthResult(username=username, key=key, integrity="sha1")


def challenge_attributes(realm: str, nonce: str) -> list[tuple[int, bytes]]:
    """REALM, NONCE and PASSWORD-ALGORITHMS for a 401 or 438 answer."""
    return [
        (stun.REALM, realm.encode("utf-8")),
        (stun.NONCE, nonce.encode("ascii")),
        (stun.PASSWORD_ALGORITHMS, stun.encode_password_algorithms(list(SUPPORTED_ALGORITHMS))),
    ]

