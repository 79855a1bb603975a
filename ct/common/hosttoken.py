"""Host tokens (``CT_HOST_AUTH=sso``): short-lived, audience-bound JWTs (HS256, joserfc)
that say who signed in, so any edge can check a host or team member without asking the
locator. The server that runs the single sign-on issues them; every edge of the
deployment verifies them with the same ``CT_HOST_TOKEN_SECRET``. Pure: the time comes
in as ``now``. See ``docs/sso.md``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from ct.protocol.wire import MAX_NAME

ISSUER = "ct-host-auth"
ALGORITHM = "HS256"
MIN_SECRET = 32
MAX_TOKEN = 4096
DEFAULT_AUDIENCE = "codetogether"
DEFAULT_LIFETIME = 600


@dataclass(frozen=True, slots=True)
class HostTokenConfig:
    """``secret``: shared by the issuer and the edges; ``audience``: this deployment's
    name (a token for another one is refused); ``lifetime``: seconds a token is good for
    (checked when hosting or subscribing, not during the session)."""

    secret: str
    audience: str = DEFAULT_AUDIENCE
    lifetime: int = DEFAULT_LIFETIME
    clock_skew: int = 60

    def __post_init__(self):
        if len(self.secret) < MIN_SECRET:
            raise ValueError(f"the host token secret must be at least {MIN_SECRET} characters")


@dataclass(frozen=True, slots=True)
class HostIdentity:
    subject: str
    name: str
    email: str | None = None


class HostTokenRefused(Exception):
    """No usable host token; the message says why (never the token)."""


def _key(config: HostTokenConfig) -> OctKey:
    return OctKey.import_key(config.secret.encode("utf-8"))


def issue(identity: HostIdentity, config: HostTokenConfig, now: float) -> str:
    """A token for ``identity``, good for ``config.lifetime`` seconds from ``now``."""
    claims = {"iss": ISSUER, "aud": config.audience, "sub": identity.subject,
              "name": identity.name, "iat": int(now), "nbf": int(now),
              "exp": int(now) + config.lifetime, "jti": secrets.token_urlsafe(12)}
    if identity.email:
        claims["email"] = identity.email
    return jwt.encode({"alg": ALGORITHM, "typ": "JWT"}, claims, _key(config),
                      algorithms=[ALGORITHM])


def verify(raw, config: HostTokenConfig, now: float) -> HostIdentity:
    """The identity in a valid token; :class:`HostTokenRefused` otherwise."""
    if not isinstance(raw, str) or not raw:
        raise HostTokenRefused("no host token: sign in first (ct-client login)")
    if len(raw) > MAX_TOKEN:
        raise HostTokenRefused("the host token is too long")
    try:
        token = jwt.decode(raw, _key(config), algorithms=[ALGORITHM])
        jwt.JWTClaimsRegistry(
            now=int(now), leeway=config.clock_skew,
            iss={"essential": True, "value": ISSUER},
            aud={"essential": True, "value": config.audience},
            sub={"essential": True}, exp={"essential": True},
            name={"essential": True}).validate(token.claims)
    except (JoseError, ValueError) as e:
        reason = getattr(e, "error", None) or type(e).__name__
        if reason == "expired_token":
            raise HostTokenRefused("the host token expired: sign in again") from None
        raise HostTokenRefused(f"the host token is not valid here ({reason})") from None
    claims = token.claims
    name = claims["name"] if isinstance(claims["name"], str) and claims["name"] else None
    if name is None or not isinstance(claims["sub"], str):
        raise HostTokenRefused("the host token names nobody")
    email = claims.get("email") if isinstance(claims.get("email"), str) else None
    return HostIdentity(claims["sub"], name[:MAX_NAME], email)
