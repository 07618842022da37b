"""Users, passwords, tokens and revocation; the auth service app.

Access tokens are JWT HS256 with iss, aud, sub, iat, nbf, exp, jti, `fam` (the login they descend
from) and `titles` (entitlements). Refresh tokens are JWTs too, with their own audience so they can
never pass as access tokens; each is single-use: refreshing revokes it, and presenting a used one
again revokes its whole family (refresh-token reuse detection, OAuth 2.0 Security BCP 4.14.2).
Revocations live in a small JSON file that every verifying service re-reads when it changes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web

from server.config import ALL_TITLES, AuthConfig, TokenPolicy, UserRecord, _write_private, file_lock, read_users
from server.httpapi import BadRequest, CorsPolicy, cors_middleware, json_error, json_errors_middleware, read_json_body
from server.observability import METRICS, Metrics, metrics_handler, request_id, request_id_middleware

Clock = Callable[[], float]
log = logging.getLogger("abrkit.auth")
audit_log = logging.getLogger("abrkit.audit")

ALGORITHM = "HS256"
REFRESH_AUDIENCE_SUFFIX = ":refresh"
_MAX_TOKEN_CHARS = 8192

# --- passwords -------------------------------------------------------------------------------------

# scrypt parameters: N=2^14, r=8, p=1 (RFC 7914 section 2's interactive-login figures; ~40 ms, 16 MiB).
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P, _SCRYPT_LEN = 2**14, 8, 1, 32


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """`scrypt$N$r$p$<salt b64>$<hash b64>` with a fresh 16-byte salt."""
    if not password:
        raise ValueError("password must not be empty")
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=_SCRYPT_LEN)
    return "$".join(["scrypt", str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P),
                     base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])


def verify_password(stored: str, password: str) -> bool:
    """Whether `password` matches the scrypt hash `stored` (constant-time compare)."""
    try:
        scheme, n, r, p, salt_b64, hash_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(hash_b64)
        digest = hashlib.scrypt(password.encode(), salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(expected),
                                maxmem=64 * 1024 * 1024)
    except ValueError:
        return False
    return hmac.compare_digest(digest, expected)


# Checked against when the user does not exist, so that unknown users cost as much time as known ones.
_DUMMY_HASH = hash_password("abrkit-no-such-user", salt=b"\x00" * 16)


# --- revocation ------------------------------------------------------------------------------------

class RevocationStore:
    """Revoked token ids (`jti`), token families (`fam`) and subjects (all tokens issued before a time).

    Backed by a JSON file shared by every service (re-read when its mtime or size changes), or by
    memory alone when `path` is None. Entries expire with the tokens they revoke.
    """

    def __init__(self, path: Path | None, *, clock: Clock = time.time) -> None:
        self._path = path
        self._clock = clock
        self._stamp: tuple[int, int] | None = None
        self._jti: dict[str, float] = {}
        self._fam: dict[str, float] = {}
        self._sub: dict[str, float] = {}

    def _refresh(self) -> None:
        if self._path is None:
            return
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            self._stamp, self._jti, self._fam, self._sub = None, {}, {}, {}
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._load()
            self._stamp = stamp

    def _load(self) -> None:
        assert self._path is not None
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
            self._jti = {str(k): float(v) for k, v in data.get("jti", {}).items()}
            self._fam = {str(k): float(v) for k, v in data.get("family", {}).items()}
            self._sub = {str(k): float(v) for k, v in data.get("subject", {}).items()}
        except (OSError, ValueError, AttributeError, TypeError):
            # A half-written file cannot happen (atomic replace); a hand-broken one must not open the door:
            # keep the last good state and say so.
            log.error("revocation file %s is unreadable; keeping the previous revocations", self._path)

    def _mutate(self, kind: str, key: str, value: float) -> None:
        if self._path is None:
            {"jti": self._jti, "family": self._fam, "subject": self._sub}[kind][key] = value
            return
        with file_lock(self._path):
            try:
                data = json.loads(self._path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                data = {}
            now = self._clock()
            for section in ("jti", "family"):  # forget entries whose tokens have expired anyway
                data[section] = {k: v for k, v in data.get(section, {}).items() if float(v) > now}
            data.setdefault("subject", {})
            data[kind][key] = max(value, float(data[kind].get(key, value)))
            _write_private(self._path, json.dumps(data, indent=1, sort_keys=True) + "\n")
        self._stamp = None
        self._refresh()

    def revoke_jti(self, jti: str, *, until: float) -> None:
        """Reject the token `jti` (until `until`, its expiry)."""
        self._mutate("jti", jti, until)

    def revoke_family(self, family: str, *, until: float) -> None:
        """Reject every token descending from one login (refresh-token reuse)."""
        self._mutate("family", family, until)

    def revoke_subject(self, subject: str) -> None:
        """Reject every token of `subject` issued up to now."""
        self._mutate("subject", subject, self._clock())

    def is_revoked(self, *, jti: str, family: str, subject: str, issued_at: float) -> bool:
        self._refresh()
        if jti in self._jti or family in self._fam:
            return True
        revoked_at = self._sub.get(subject)
        return revoked_at is not None and issued_at <= revoked_at


# --- tokens ----------------------------------------------------------------------------------------

class TokenError(Exception):
    """A missing, malformed, forged, expired, not-yet-valid or revoked token (401)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Claims:
    """What a verified token says."""

    subject: str
    titles: tuple[str, ...]
    jti: str
    family: str
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


class TokenService:
    """Issues and verifies tokens under one `TokenPolicy`; `clock` is injectable for tests."""

    def __init__(self, policy: TokenPolicy, *, revocations: RevocationStore | None = None,
                 clock: Clock = time.time, cache_size: int = 4096) -> None:
        self.policy = policy
        self.revocations = revocations or RevocationStore(policy.revocations_path, clock=clock)
        self._clock = clock
        self._cache: OrderedDict[tuple[str, str], Claims] = OrderedDict()
        self._cache_size = cache_size

    def issue(self, subject: str, titles: tuple[str, ...], *, family: str | None = None) -> TokenPair:
        # iat in milliseconds (a NumericDate may be fractional, RFC 7519 section 2), so that revoking a
        # subject at time t rejects tokens issued before t and none issued after it.
        now = math.floor(self._clock() * 1000) / 1000
        family = family or uuid.uuid4().hex
        base = {"iss": self.policy.issuer, "sub": subject, "iat": now, "nbf": int(now), "fam": family,
                "titles": list(titles)}
        access = dict(base, aud=self.policy.audience, exp=int(now) + self.policy.access_ttl_s, jti=uuid.uuid4().hex)
        refresh = dict(base, aud=self.policy.audience + REFRESH_AUDIENCE_SUFFIX,
                       exp=int(now) + self.policy.refresh_ttl_s, jti=uuid.uuid4().hex)
        key = self.policy.signing_key
        return TokenPair(access_token=jwt.encode(access, key, algorithm=ALGORITHM),
                         refresh_token=jwt.encode(refresh, key, algorithm=ALGORITHM),
                         expires_in_s=self.policy.access_ttl_s)

    def verify_access(self, token: str) -> Claims:
        return self._verify(token, self.policy.audience)

    def verify_refresh(self, token: str) -> Claims:
        return self._verify(token, self.policy.audience + REFRESH_AUDIENCE_SUFFIX)

    def inspect(self, token: str) -> Claims:
        """Either kind of token, signature and claims checked but not expiry or revocation (for revoking)."""
        try:
            return self._verify(token, self.policy.audience, check_time=False, check_revoked=False)
        except TokenError:
            return self._verify(token, self.policy.audience + REFRESH_AUDIENCE_SUFFIX, check_time=False,
                                check_revoked=False)

    def _verify(self, token: str, audience: str, *, check_time: bool = True, check_revoked: bool = True) -> Claims:
        if not token or len(token) > _MAX_TOKEN_CHARS:
            raise TokenError("missing or oversized token")
        cache_key = (audience, token)
        claims = self._cache.get(cache_key)
        if claims is None:
            claims = self._decode(token, audience)
            self._cache[cache_key] = claims
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        if check_time:
            now, leeway = self._clock(), self.policy.leeway_s
            if now >= claims.expires_at + leeway:
                raise TokenError("token expired")
            if claims.issued_at > now + leeway:
                raise TokenError("token not yet valid")
        if check_revoked and self.revocations.is_revoked(jti=claims.jti, family=claims.family,
                                                         subject=claims.subject, issued_at=claims.issued_at):
            raise TokenError("token revoked")
        return claims

    def _decode(self, token: str, audience: str) -> Claims:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != ALGORITHM:  # pyjwt checks this too; say it plainly
                raise TokenError("token algorithm not accepted")
            # Time claims are checked by us against the injected clock; pyjwt checks signature, aud, iss.
            payload = jwt.decode(token, self.policy.signing_key, algorithms=[ALGORITHM], audience=audience,
                                 issuer=self.policy.issuer,
                                 options={"require": ["exp", "iat", "nbf", "aud", "iss", "sub", "jti"],
                                          "verify_exp": False, "verify_nbf": False, "verify_iat": False})
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid token ({exc.__class__.__name__})") from None
        try:
            nbf = float(payload["nbf"])
            titles = payload.get("titles", [])
            if not isinstance(titles, list) or not all(isinstance(t, str) for t in titles):
                raise TokenError("invalid token (titles)")
            return Claims(subject=str(payload["sub"]), titles=tuple(titles), jti=str(payload["jti"]),
                          family=str(payload.get("fam", payload["jti"])),
                          issued_at=max(float(payload["iat"]), nbf), expires_at=float(payload["exp"]),
                          refresh=audience != self.policy.audience)
        except (TypeError, ValueError, OverflowError):
            raise TokenError("invalid token (claims)") from None


def bearer_token(request: web.Request) -> str:
    """The token of an `Authorization: Bearer ...` header, or `TokenError`."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenError("missing bearer token")
    return token.strip()


TOKENS = web.AppKey("abrkit_tokens", TokenService)


def authenticate(request: web.Request) -> Claims:
    """Claims of the request's bearer access token (services put a `TokenService` at `app[TOKENS]`)."""
    return request.app[TOKENS].verify_access(bearer_token(request))


def unauthorized(exc: TokenError) -> web.Response:
    return json_error(401, str(exc), headers={"WWW-Authenticate": 'Bearer realm="abrkit"'})


# --- the auth service ------------------------------------------------------------------------------

class UserDirectory:
    """The users of a stack file, re-read when the file changes (so `abrkit user add` needs no restart)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, UserRecord] = {}

    def get(self, username: str) -> UserRecord | None:
        try:
            st = os.stat(self._path)
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                self._users = read_users(self._path)
                self._stamp = stamp
        except FileNotFoundError:
            self._users, self._stamp = {}, None
        except ValueError:
            log.error("users file %s is invalid; keeping the previous users", self._path)
        return self._users.get(username)


_CONFIG = web.AppKey("abrkit_auth_config", AuthConfig)
_USERS = web.AppKey("abrkit_users", UserDirectory)
_HASH_SLOTS = web.AppKey("abrkit_hash_slots", asyncio.Semaphore)


def _str_field(body: Any, name: str, *, max_chars: int = 1024) -> str:
    value = body.get(name) if isinstance(body, dict) else None
    if not isinstance(value, str) or not value or len(value) > max_chars:
        raise BadRequest(f"'{name}' must be a non-empty string of at most {max_chars} characters")
    return value


def _token_response(pair: TokenPair) -> web.Response:
    return web.json_response({"access_token": pair.access_token, "token_type": "Bearer",
                              "expires_in": pair.expires_in_s, "refresh_token": pair.refresh_token},
                             headers={"Cache-Control": "no-store"})


async def _login(request: web.Request) -> web.Response:
    config = request.app[_CONFIG]
    try:
        body = await read_json_body(request, max_bytes=config.max_body_bytes)
        username = _str_field(body, "username", max_chars=64)
        password = _str_field(body, "password")
    except BadRequest as exc:
        return json_error(400, str(exc))
    user = request.app[_USERS].get(username)
    async with request.app[_HASH_SLOTS]:
        ok = await asyncio.get_running_loop().run_in_executor(
            None, verify_password, user.password_hash if user else _DUMMY_HASH, password)
    metrics = request.app[METRICS]
    if not ok or user is None or user.disabled:
        metrics.inc("auth_logins_total", labels={"result": "rejected"}, help="Password logins")
        audit_log.info(json.dumps({"event": "login", "result": "rejected", "user": username,
                                   "request_id": request_id(request)}))
        return json_error(401, "invalid username or password")
    metrics.inc("auth_logins_total", labels={"result": "ok"}, help="Password logins")
    audit_log.info(json.dumps({"event": "login", "result": "ok", "user": username, "request_id": request_id(request)}))
    return _token_response(request.app[TOKENS].issue(user.username, user.titles))


async def _refresh(request: web.Request) -> web.Response:
    config, tokens = request.app[_CONFIG], request.app[TOKENS]
    try:
        body = await read_json_body(request, max_bytes=config.max_body_bytes)
        token = _str_field(body, "refresh_token", max_chars=_MAX_TOKEN_CHARS)
    except BadRequest as exc:
        return json_error(400, str(exc))
    try:
        claims = tokens.verify_refresh(token)
    except TokenError as exc:
        if str(exc) == "token revoked":
            # A used refresh token shown again: someone holds a copy. Revoke the whole family.
            reused = tokens.inspect(token)
            tokens.revocations.revoke_family(reused.family, until=reused.expires_at + config.tokens.access_ttl_s)
            log.warning("refresh token reuse for %s; family revoked", reused.subject)
        return unauthorized(exc)
    user = request.app[_USERS].get(claims.subject)
    if user is None or user.disabled:
        return unauthorized(TokenError("user no longer exists or is disabled"))
    tokens.revocations.revoke_jti(claims.jti, until=claims.expires_at + config.tokens.leeway_s)
    # Entitlements are re-read from the users file, so a change takes effect at the next refresh.
    return _token_response(tokens.issue(user.username, user.titles, family=claims.family))


async def _revoke(request: web.Request) -> web.Response:
    """Revoke `{"token": ...}` (access or refresh), or the bearer token itself when the body has none."""
    config, tokens = request.app[_CONFIG], request.app[TOKENS]
    try:
        body = await read_json_body(request, max_bytes=config.max_body_bytes) if request.body_exists else {}
        if not isinstance(body, dict):
            raise BadRequest("request body must be a JSON object")
        token = _str_field(body, "token", max_chars=_MAX_TOKEN_CHARS) if "token" in body else bearer_token(request)
        claims = tokens.inspect(token)
    except BadRequest as exc:
        return json_error(400, str(exc))
    except TokenError as exc:
        return unauthorized(exc)
    until = claims.expires_at + config.tokens.leeway_s
    tokens.revocations.revoke_jti(claims.jti, until=until)
    if claims.refresh:
        tokens.revocations.revoke_family(claims.family, until=until + config.tokens.access_ttl_s)
    audit_log.info(json.dumps({"event": "revoke", "user": claims.subject, "jti": claims.jti,
                               "request_id": request_id(request)}))
    return web.json_response({"revoked": True})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def common_middlewares(allowed_origins: tuple[str, ...]) -> list[Any]:
    """Request IDs outermost, CORS, then JSON errors innermost (so errors get CORS headers too)."""
    return [request_id_middleware, cors_middleware(CorsPolicy(allowed_origins=allowed_origins)),
            json_errors_middleware]


def create_app(config: AuthConfig) -> web.Application:
    app = web.Application(middlewares=common_middlewares(config.allowed_origins),
                          client_max_size=config.max_body_bytes)
    app[_CONFIG] = config
    app[_USERS] = UserDirectory(config.users_path)
    app[TOKENS] = TokenService(config.tokens)
    app[METRICS] = Metrics()

    async def hash_slots(app: web.Application) -> AsyncIterator[None]:
        app[_HASH_SLOTS] = asyncio.Semaphore(config.max_concurrent_hashes)
        yield

    app.cleanup_ctx.append(hash_slots)
    app.router.add_post("/auth/token", _login)
    app.router.add_post("/auth/refresh", _refresh)
    app.router.add_post("/auth/revoke", _revoke)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_handler)
    return app

