"""OpenID Connect sign-in for the dashboard (authorization code flow with PKCE).

Pure parts: :class:`SsoConfig`, :func:`pkce_pair`, :func:`authorization_url`,
:func:`verify_id_token` (joserfc: signature, ``iss``, ``aud``, ``azp``, ``exp``/``iat``
with clock skew, ``nonce``) and :func:`identity_from_claims` (role and teams from the
groups claim, allowed e-mail domains). The adapter, :class:`OidcClient`, fetches the
discovery document and the JWKS (cached; fetched again when a token names a key it does
not hold: key rotation) and exchanges the code at the token endpoint. See ``docs/sso.md``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.client import FileBodyProducer, readBody
from twisted.web.http_headers import Headers

_log = Logger()

ADMIN = "admin"
TEAM_VIEWER = "team-viewer"
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
              "ES512", "EdDSA")
MAX_DOCUMENT = 256 * 1024  # discovery, JWKS and token answers
MAX_ID_TOKEN = 16 * 1024


@dataclass(frozen=True, slots=True)
class SsoConfig:
    """``CT_SSO_*``: the provider, this client, and how claims map to roles.

    ``groups_claim`` holds a list of strings (or one string): ``admin_group`` makes an
    administrator, ``team_prefix + NAME`` a team viewer of team ``NAME``.
    ``allowed_domains``: e-mail domains allowed in (empty: any)."""

    issuer: str
    client_id: str
    client_secret: str | None = None
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    groups_claim: str = "groups"
    admin_group: str = "ct-admin"
    team_prefix: str = "ct-team:"
    allowed_domains: tuple[str, ...] = ()
    clock_skew: float = 120.0
    name_claim: str = "email"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who signed in: ``name`` is shown and audited; ``teams`` matter for team viewers."""

    subject: str
    name: str
    role: str
    teams: tuple[str, ...] = ()
    email: str | None = None


class SignInRefused(Exception):
    """A sign-in that must not succeed; the message is shown to the user and logged."""


def pkce_pair(token: Callable[[int], str] = secrets.token_urlsafe) -> tuple[str, str]:
    """``(code_verifier, code_challenge)`` for PKCE with S256 (RFC 7636)."""
    verifier = token(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorization_url(endpoint: str, config: SsoConfig, redirect_uri: str, state: str,
                      nonce: str, challenge: str) -> str:
    query = urlencode({"response_type": "code", "client_id": config.client_id,
                       "redirect_uri": redirect_uri, "scope": " ".join(config.scopes),
                       "state": state, "nonce": nonce, "code_challenge": challenge,
                       "code_challenge_method": "S256"})
    return endpoint + ("&" if "?" in endpoint else "?") + query


def verify_id_token(raw: str, keys: KeySet, config: SsoConfig, nonce: str,
                    now: float) -> dict[str, Any]:
    """The claims of a valid ID token; :class:`SignInRefused` otherwise."""
    if not isinstance(raw, str) or not 0 < len(raw) <= MAX_ID_TOKEN:
        raise SignInRefused("the provider sent no usable ID token")
    try:
        token = jwt.decode(raw, keys, algorithms=list(ALGORITHMS))
        registry = jwt.JWTClaimsRegistry(
            now=int(now), leeway=int(config.clock_skew),
            iss={"essential": True, "value": config.issuer},
            sub={"essential": True}, exp={"essential": True}, iat={"essential": True},
            nonce={"essential": True, "value": nonce})
        registry.validate(token.claims)
    except (JoseError, ValueError) as e:
        raise SignInRefused(f"the ID token is not valid ({_describe(e)})") from None
    claims = token.claims
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if config.client_id not in audiences:
        raise SignInRefused("the ID token is not valid (issued for another client)")
    if len(audiences) > 1 and claims.get("azp") not in (None, config.client_id):
        raise SignInRefused("the ID token is not valid (authorized party is another client)")
    return claims


# What an ID token's refusal means, in words, for the log-in page (the code stays).
_PLAIN = {
    "expired_token": "it has expired; if sign-in keeps failing, compare the clocks of this "
                     "server and the provider (CT_SSO_CLOCK_SKEW)",
    "bad_signature": "its signature does not match the provider's keys: it was altered "
                     "or not issued by this provider",
    "unsupported_algorithm": "it is not signed with an accepted algorithm",
    "invalid_claim": "one of its claims does not match this sign-in",
    "missing_claim": "it lacks a required claim",
    "decode_error": "it is not a well-formed signed token",
}


def _describe(error: Exception) -> str:
    code = getattr(error, "error", None) or type(error).__name__
    plain = _PLAIN.get(code)
    return f"{code}: {plain}" if plain else code


def check_domain(claims: dict[str, Any], config: SsoConfig) -> str | None:
    """The e-mail of these claims; :class:`SignInRefused` when its domain is not allowed
    (or not verified by the provider) and ``allowed_domains`` is set."""
    email = claims.get("email") if isinstance(claims.get("email"), str) else None
    if config.allowed_domains:
        domain = email.rpartition("@")[2].lower() if email and "@" in email else None
        if domain is None or domain not in config.allowed_domains:
            raise SignInRefused(f"{email or 'this account'} is not in an allowed domain "
                                f"({', '.join(config.allowed_domains)})")
        if claims.get("email_verified") is False:
            raise SignInRefused(f"the provider has not verified {email}")
    return email


def display_name(claims: dict[str, Any]) -> str:
    """The name others see for a host: ``name``, else the e-mail, else the subject."""
    for key in ("name", "preferred_username", "email"):
        if isinstance(claims.get(key), str) and claims[key].strip():
            return claims[key].strip()
    return str(claims["sub"])


def identity_from_claims(claims: dict[str, Any], config: SsoConfig) -> Identity:
    """The role and teams these claims give; :class:`SignInRefused` when none or when the
    e-mail domain is not allowed."""
    email = check_domain(claims, config)
    groups = claims.get(config.groups_claim)
    if isinstance(groups, str):
        groups = [groups]
    groups = [g for g in groups or [] if isinstance(g, str)][:1000]
    name = claims.get(config.name_claim)
    if not isinstance(name, str) or not name:
        name = email or str(claims["sub"])
    name = name[:128]
    if config.admin_group in groups:
        return Identity(str(claims["sub"]), name, ADMIN, (), email)
    prefix = config.team_prefix
    teams = tuple(sorted({g[len(prefix):] for g in groups
                          if g.startswith(prefix) and len(g) > len(prefix)}))
    if teams:
        return Identity(str(claims["sub"]), name, TEAM_VIEWER, teams, email)
    raise SignInRefused(f"{name} has no role on this server (needs group "
                        f"{config.admin_group!r} or {config.team_prefix}TEAM in claim "
                        f"{config.groups_claim!r})")


class OidcClient:
    """Talks to the provider: discovery (cached), JWKS (cached for ``jwks_max_age``
    seconds, and fetched again at most every ``jwks_min_refresh`` seconds for an unknown
    key id), the token endpoint."""

    def __init__(self, config: SsoConfig, agent, clock, timeout: float = 10.0,
                 jwks_min_refresh: float = 10.0, jwks_max_age: float = 3600.0):
        self.config = config
        self.agent = agent
        self.clock = clock
        self.timeout = timeout
        self.jwks_min_refresh = jwks_min_refresh
        self.jwks_max_age = jwks_max_age
        self._discovery: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._keys_at = float("-inf")

    @defer.inlineCallbacks
    def _fetch(self, url: str, body: bytes | None = None, headers: dict | None = None):
        all_headers = Headers({b"accept": [b"application/json"]})
        for name, value in (headers or {}).items():
            all_headers.setRawHeaders(name.encode(), [value.encode()])
        producer = None
        if body is not None:
            from io import BytesIO

            producer = FileBodyProducer(BytesIO(body))
            all_headers.setRawHeaders(b"content-type", [b"application/x-www-form-urlencoded"])
        d = self.agent.request(b"GET" if body is None else b"POST", url.encode(), all_headers,
                               producer)
        d.addTimeout(self.timeout, self.clock)
        try:
            response = yield d
            raw = yield readBody(response).addTimeout(self.timeout, self.clock)
        except Exception as e:
            raise SignInRefused(f"the identity provider is not reachable ({url}: "
                                f"{type(e).__name__})") from None
        if len(raw) > MAX_DOCUMENT:
            raise SignInRefused(f"the identity provider's answer from {url} is too large")
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise SignInRefused(f"the identity provider answered {url} with HTTP "
                                f"{response.code} and no JSON object")
        if response.code != 200:
            raise SignInRefused(f"the identity provider refused ({data.get('error')}: "
                                f"{str(data.get('error_description', ''))[:200]})")
        return data

    @defer.inlineCallbacks
    def discovery(self):
        if self._discovery is None:
            url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
            doc = yield self._fetch(url)
            if doc.get("issuer") != self.config.issuer:
                raise SignInRefused(f"the discovery document names issuer "
                                    f"{doc.get('issuer')!r}, not CT_SSO_ISSUER "
                                    f"{self.config.issuer!r}")
            for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(doc.get(field), str):
                    raise SignInRefused(f"the discovery document has no {field}")
            self._discovery = doc
        return self._discovery

    @defer.inlineCallbacks
    def keys(self, kid: str | None = None):
        """The provider's keys; fetched again when ``kid`` is not among them."""
        now = self.clock.seconds()
        age = now - self._keys_at
        stale = self._keys is None or age >= self.jwks_max_age or (
            kid is not None and not _has_kid(self._keys, kid) and age >= self.jwks_min_refresh)
        if stale:
            doc = yield self.discovery()
            jwks = yield self._fetch(doc["jwks_uri"])
            try:
                self._keys = KeySet.import_key_set(
                    {"keys": [k for k in jwks.get("keys", []) if k.get("use", "sig") == "sig"]})
            except (JoseError, ValueError, TypeError) as e:
                raise SignInRefused(f"the provider's JWKS is unusable ({_describe(e)})") \
                    from None
            self._keys_at = now
            _log.info("sso: loaded {n} signing keys from {url}", n=len(self._keys.keys),
                      url=doc["jwks_uri"])
        return self._keys

    @defer.inlineCallbacks
    def start(self, redirect_uri: str, token=secrets.token_urlsafe):
        """Fires with ``(url, state, nonce, verifier)``: send the browser to ``url``."""
        doc = yield self.discovery()
        verifier, challenge = pkce_pair(token)
        state, nonce = token(24), token(24)
        return (authorization_url(doc["authorization_endpoint"], self.config, redirect_uri,
                                  state, nonce, challenge), state, nonce, verifier)

    @defer.inlineCallbacks
    def finish(self, code: str, redirect_uri: str, verifier: str, nonce: str):
        """Exchange ``code``; fires with ``(Identity, raw ID token)`` (a dashboard role)."""
        claims, raw = yield self.finish_claims(code, redirect_uri, verifier, nonce)
        return identity_from_claims(claims, self.config), raw

    @defer.inlineCallbacks
    def finish_claims(self, code: str, redirect_uri: str, verifier: str, nonce: str):
        """Exchange ``code``; fires with ``(verified claims, raw ID token)``."""
        doc = yield self.discovery()
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": redirect_uri, "code_verifier": verifier}
        headers = {}
        if self.config.client_secret:
            pair = f"{_form(self.config.client_id)}:{_form(self.config.client_secret)}"
            headers["authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form["client_id"] = self.config.client_id
        answer = yield self._fetch(doc["token_endpoint"], urlencode(form).encode(), headers)
        raw = answer.get("id_token")
        claims = yield self.verify(raw, nonce)
        return claims, raw

    @defer.inlineCallbacks
    def verify(self, raw, nonce: str):
        """The claims of ID token ``raw`` (keys fetched again once for an unknown kid)."""
        keys = yield self.keys(_kid(raw))
        return verify_id_token(raw, keys, self.config, nonce, self.clock.seconds())


def _form(value: str) -> str:
    """client_secret_basic encodes id and secret as form values first (RFC 6749 2.3.1)."""
    from urllib.parse import quote_plus

    return quote_plus(value)


def _kid(raw) -> str | None:
    """The ``kid`` of a compact JWS header, read by joserfc (None when absent or unreadable)."""
    if not isinstance(raw, str) or len(raw) > MAX_ID_TOKEN:
        return None
    from joserfc.jws import extract_compact

    try:
        return extract_compact(raw.encode("ascii")).headers().get("kid")
    except (JoseError, ValueError, UnicodeEncodeError):
        return None


def _has_kid(keys: KeySet, kid: str) -> bool:
    return any(k.kid == kid for k in keys.keys)
