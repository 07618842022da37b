"""Access and refresh tokens: issued by auth alone, verified by every service with the public key.

Tokens are JWTs signed with EdDSA over Ed25519 (RFC 8037), with iss, aud, sub, iat, nbf, exp, jti,
`fam` (the login they descend from), `gen` (the refresh generation of that login) and `titles`
(entitlements). Refresh tokens have their own audience, so they never pass as access tokens. Input
is hostile until proven otherwise: only the three base64url segments of a compact JWS reach the JWT
library, and every way a token can be wrong is one `TokenError` (401), never another exception.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import jwt
from aiohttp import web

from server.config import ALL_TITLES, TokenPolicy
from server.httpapi import json_error
from server.keys import ed25519_private, ed25519_public, ed25519_verifier
from server.revocation import RevocationStore, StoreUnavailable

Clock = Callable[[], float]

ALGORITHM = "EdDSA"
REFRESH_AUDIENCE_SUFFIX = ":refresh"
MAX_TOKEN_CHARS = 8192
# A compact JWS (RFC 7515 section 7.1): three base64url segments, the signature not empty. Anything
# else (non-ASCII, NUL, lone surrogates, padding) is refused before a JWT library sees it.
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
RETRY_AFTER_S = 2  # what a client is told to wait when the revocation store is unavailable


class TokenError(Exception):
    """A missing, malformed, forged, expired, not-yet-valid or revoked token (401)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Claims:
    """What a verified token says."""

    subject: str
    titles: tuple[str, ...]
    jti: str
    family: str
    generation: int
    issued_at: float
    expires_at: float
    refresh: bool = False  # a refresh token (never accepted where an access token is needed)

    def entitled_to(self, title: str) -> bool:
        return ALL_TITLES in self.titles or title in self.titles


@dataclass(frozen=True, kw_only=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in_s: int
    claims: Claims  # of the access token


class TokenIssuer:
    """Signs tokens (auth only: it alone holds `signing_key`, the Ed25519 seed of `policy.verify_key`)."""

    def __init__(self, policy: TokenPolicy, signing_key: bytes, *, clock: Clock = time.time) -> None:
        if ed25519_public(signing_key) != policy.verify_key:
            raise ValueError("the token signing key does not match the policy's verify key")
        self.policy = policy
        self._key = ed25519_private(signing_key)
        self._clock = clock

    def issue(self, subject: str, titles: tuple[str, ...], *, family: str | None = None,
              generation: int = 0) -> TokenPair:
        # iat in milliseconds (a NumericDate may be fractional, RFC 7519 section 2), so that revoking a
        # subject at time t rejects tokens issued before t and none issued after it.
        now = math.floor(self._clock() * 1000) / 1000
        family = family or uuid.uuid4().hex
        base = {"iss": self.policy.issuer, "sub": subject, "iat": now, "nbf": int(now), "fam": family,
                "gen": generation, "titles": list(titles)}
        access = dict(base, aud=self.policy.audience, exp=int(now) + self.policy.access_ttl_s, jti=uuid.uuid4().hex)
        refresh = dict(base, aud=self.policy.audience + REFRESH_AUDIENCE_SUFFIX,
                       exp=int(now) + self.policy.refresh_ttl_s, jti=uuid.uuid4().hex)
        claims = Claims(subject=subject, titles=tuple(titles), jti=str(access["jti"]), family=family,
                        generation=generation, issued_at=now, expires_at=float(access["exp"]))
        return TokenPair(access_token=jwt.encode(access, self._key, algorithm=ALGORITHM),
                         refresh_token=jwt.encode(refresh, self._key, algorithm=ALGORITHM),
                         expires_in_s=self.policy.access_ttl_s, claims=claims)


class TokenVerifier:
    """Checks tokens under one `TokenPolicy` with its public key; `clock` is injectable for tests.

    `decode_*` check signature, claims and time (a bounded cache remembers tokens seen); the async
    `verify_access` adds the revocation store (the policy's, unless `check_revocations` is False),
    off the event loop.
    """

    def __init__(self, policy: TokenPolicy, *, revocations: RevocationStore | None = None,
                 check_revocations: bool = True, clock: Clock = time.time, cache_size: int = 4096) -> None:
        self.policy = policy
        if revocations is None and policy.revocations_path is not None and check_revocations:
            revocations = RevocationStore(policy.revocations_path, clock=clock)
        self.revocations = revocations
        self._key = ed25519_verifier(policy.verify_key)
        self._clock = clock
        self._cache: OrderedDict[tuple[str, str], Claims] = OrderedDict()
        self._cache_size = cache_size

    @property
    def refresh_audience(self) -> str:
        return self.policy.audience + REFRESH_AUDIENCE_SUFFIX

    def decode_access(self, token: str) -> Claims:
        return self._decode_checked(token, self.policy.audience)

    def decode_refresh(self, token: str) -> Claims:
        return self._decode_checked(token, self.refresh_audience)

    def inspect(self, token: str) -> Claims:
        """Either kind of token, signature and claims checked but not time (for logging out)."""
        try:
            return self._decode_cached(token, self.policy.audience)
        except TokenError:
            return self._decode_cached(token, self.refresh_audience)

    async def verify_access(self, token: str) -> Claims:
        """The claims of a valid, unrevoked access token; `TokenError`, or `StoreUnavailable` when the
        revocation store cannot say (the caller refuses with 503)."""
        claims = self.decode_access(token)
        store = self.revocations
        if store is not None and await store.run(
                lambda: store.access_revoked(jti=claims.jti, family=claims.family, subject=claims.subject,
                                             issued_at=claims.issued_at)):
            raise TokenError("token revoked")
        return claims

    def close(self) -> None:
        if self.revocations is not None:
            self.revocations.close()

    def _decode_checked(self, token: str, audience: str) -> Claims:
        claims = self._decode_cached(token, audience)
        now, leeway = self._clock(), self.policy.leeway_s
        if now >= claims.expires_at + leeway:
            raise TokenError("token expired")
        if claims.issued_at > now + leeway:
            raise TokenError("token not yet valid")
        return claims

    def _decode_cached(self, token: str, audience: str) -> Claims:
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise TokenError("missing or oversized token")
        if not _COMPACT_JWS.fullmatch(token):
            raise TokenError("malformed token")
        cache_key = (audience, token)
        claims = self._cache.get(cache_key)
        if claims is None:
            claims = self._decode(token, audience)
            self._cache[cache_key] = claims
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return claims

    def _decode(self, token: str, audience: str) -> Claims:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != ALGORITHM:  # pyjwt checks this too; say it plainly
                raise TokenError("token algorithm not accepted")
            # Time claims are checked by us against the injected clock; pyjwt checks signature, aud, iss.
            payload = jwt.decode(token, self._key, algorithms=[ALGORITHM], audience=audience,
                                 issuer=self.policy.issuer,
                                 options={"require": ["exp", "iat", "nbf", "aud", "iss", "sub", "jti"],
                                          "verify_exp": False, "verify_nbf": False, "verify_iat": False})
        except TokenError:
            raise
        except (jwt.PyJWTError, ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            # PyJWTError for what it recognises; the others for what it does not (a header that is JSON
            # but not an object, numbers it cannot compare...): all are the token's fault.
            raise TokenError(f"invalid token ({exc.__class__.__name__})") from None
        try:
            titles = payload.get("titles", [])
            if not isinstance(titles, list) or not all(isinstance(t, str) for t in titles):
                raise TokenError("invalid token (titles)")
            generation = payload.get("gen", 0)
            if not isinstance(generation, int) or isinstance(generation, bool) or generation < 0:
                raise TokenError("invalid token (gen)")
            issued_at = max(float(payload["iat"]), float(payload["nbf"]))
            expires_at = float(payload["exp"])
            if not (math.isfinite(issued_at) and math.isfinite(expires_at)):
                raise TokenError("invalid token (time claims)")
            return Claims(subject=str(payload["sub"]), titles=tuple(titles), jti=str(payload["jti"]),
                          family=str(payload.get("fam", payload["jti"])), generation=generation,
                          issued_at=issued_at, expires_at=expires_at, refresh=audience != self.policy.audience)
        except (TypeError, ValueError, OverflowError):
            raise TokenError("invalid token (claims)") from None


def bearer_token(request: web.Request) -> str:
    """The token of an `Authorization: Bearer ...` header, or `TokenError`."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenError("missing bearer token")
    return token.strip()


TOKENS = web.AppKey("abrkit_tokens", TokenVerifier)


async def authenticate(request: web.Request) -> Claims:
    """Claims of the request's bearer access token (services put a `TokenVerifier` at `app[TOKENS]`);
    `TokenError` or `StoreUnavailable`."""
    return await request.app[TOKENS].verify_access(bearer_token(request))


def unauthorized(exc: TokenError) -> web.Response:
    return json_error(401, str(exc), headers={"WWW-Authenticate": 'Bearer realm="abrkit"'})


def unavailable(exc: StoreUnavailable) -> web.Response:
    """503 for a revocation store that cannot answer: the gateway does not count it as the backend
    failing (`Retry-After` says it is deliberate), and the client tries again."""
    return json_error(503, "revocations unavailable, try again shortly", reason="revocation store",
                      headers={"Retry-After": str(RETRY_AFTER_S)})
