"""The auth service: password logins, token refresh and logout, behind the gateway.

- `POST /auth/token`: a username that keeps failing waits (exponential backoff, 429 + `Retry-After`,
  refused before any hashing); passwords are checked with scrypt on a bounded pool (a login that could
  not be checked within `answer_within_s`, by the recent hash time, gets a prompt 503 + `Retry-After`
  rather than a gateway timeout), and a hash made under older parameters is replaced after a
  successful login.
- `POST /auth/refresh`: moves the login family to its next generation in the revocation store
  (server/revocation.py) and issues a new pair; an older generation shown again revokes the family
  (refresh-token reuse, OAuth 2.0 Security BCP 4.14.2). Entitlements are re-read from the users file.
- `POST /auth/revoke`: logout with either token ends the whole login (its family).
A store that cannot be written answers 503 with `Retry-After`: nothing is half done.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web

from server.config import AuthConfig
from server.httpapi import BadRequest, json_error, read_json_body
from server.internal import healthz, service_middlewares
from server.observability import METRICS, Metrics, add_log_fields, metrics_handler, request_id
from server.passwords import dummy_hash, hash_password, needs_rehash, verify_password
from server.resilience import FailureBackoff
from server.revocation import RevocationStore, Rotation, StoreUnavailable
from server.tokens import (
    MAX_TOKEN_CHARS,
    TOKENS,
    TokenError,
    TokenIssuer,
    TokenPair,
    TokenVerifier,
    bearer_token,
    unauthorized,
    unavailable,
)
from server.users import UserRecord, read_users, update_users

Clock = Callable[[], float]
log = logging.getLogger("abrkit.auth")
audit_log = logging.getLogger("abrkit.audit")
PURGE_INTERVAL_S = 600.0


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
        except (ValueError, OSError):
            log.error("users file %s is unreadable; keeping the previous users", self._path)
        return self._users.get(username)


class _Auth:
    """The state of one auth app."""

    def __init__(self, config: AuthConfig, *, clock: Clock, monotonic: Clock) -> None:
        self.config = config
        self.users = UserDirectory(config.users_path)
        self.issuer = TokenIssuer(config.tokens, config.signing_key, clock=clock)
        self.clock = clock
        self.monotonic = monotonic
        b = config.backoff
        self.backoff = FailureBackoff(free_failures=b.free_failures, base_s=b.base_s, max_s=b.max_s,
                                      max_keys=b.max_usernames)
        self.dummy_hash = dummy_hash(config.passwords)
        self.hash_slots: asyncio.Semaphore | None = None
        self.hash_s = 0.3  # recent time of one password check (moving average), first a guess
        self.background: set[asyncio.Task[None]] = set()
        self.rehash_failing = False


_AUTH = web.AppKey("abrkit_auth", _Auth)


def _str_field(body: Any, name: str, *, max_chars: int = 1024) -> str:
    value = body.get(name) if isinstance(body, dict) else None
    if not isinstance(value, str) or not value or len(value) > max_chars:
        raise BadRequest(f"'{name}' must be a non-empty string of at most {max_chars} characters")
    return value


def _token_response(pair: TokenPair) -> web.Response:
    return web.json_response({"access_token": pair.access_token, "token_type": "Bearer",
                              "expires_in": pair.expires_in_s, "refresh_token": pair.refresh_token},
                             headers={"Cache-Control": "no-store"})


def _audit(request: web.Request, event: str, **fields: object) -> None:
    audit_log.info(json.dumps({"event": event, **fields, "request_id": request_id(request)}))


async def _login(request: web.Request) -> web.Response:
    auth, metrics = request.app[_AUTH], request.app[METRICS]
    try:
        body = await read_json_body(request, max_bytes=auth.config.max_body_bytes)
        username = _str_field(body, "username", max_chars=64)
        password = _str_field(body, "password")
    except BadRequest as exc:
        return json_error(400, str(exc))
    key = username.lower()
    wait_s = auth.backoff.wait_s(key, auth.monotonic())
    if wait_s > 0:
        metrics.inc("auth_logins_total", labels={"result": "backoff"}, help="Password logins")
        _audit(request, "login", result="backoff", user=username)
        retry_after = max(1, math.ceil(wait_s))
        return json_error(429, "too many failed logins for this user; try again later", retry_after_s=retry_after,
                          headers={"Retry-After": str(retry_after)})
    user = auth.users.get(username)
    stored = user.password_hash if user else auth.dummy_hash
    if not await _hash_slot(auth):
        # Queued longer, the check would outlast the gateway's backend timeout and its 504 would count
        # toward the breaker: a burst of guesses would lock everyone out. A prompt 503 is not counted.
        metrics.inc("auth_logins_total", labels={"result": "busy"}, help="Password logins")
        return json_error(503, "too many logins being checked; try again shortly", retry_after_s=1,
                          headers={"Retry-After": "1"})
    try:
        started = time.perf_counter()
        ok = await asyncio.get_running_loop().run_in_executor(None, verify_password, stored, password)
        auth.hash_s += 0.2 * (time.perf_counter() - started - auth.hash_s)
    finally:
        assert auth.hash_slots is not None
        auth.hash_slots.release()
    if not ok or user is None or user.disabled:
        auth.backoff.failure(key, auth.monotonic())
        metrics.inc("auth_logins_total", labels={"result": "rejected"}, help="Password logins")
        _audit(request, "login", result="rejected", user=username)
        return json_error(401, "invalid username or password")
    auth.backoff.success(key)
    if needs_rehash(stored, auth.config.passwords):
        _in_background(auth, _rehash(auth, user.username, stored, password))
    metrics.inc("auth_logins_total", labels={"result": "ok"}, help="Password logins")
    _audit(request, "login", result="ok", user=username)
    return _token_response(auth.issuer.issue(user.username, user.titles))


async def _hash_slot(auth: _Auth) -> bool:
    """Take a hash slot if the check can still be answered within `answer_within_s` (by the recent
    hash time); False: it could not, and the caller answers 503 at once."""
    assert auth.hash_slots is not None
    wait_s = auth.config.answer_within_s - auth.hash_s
    if auth.hash_slots.locked() and wait_s <= 0:
        return False
    try:
        async with asyncio.timeout(max(wait_s, 0.0)):
            await auth.hash_slots.acquire()
    except TimeoutError:
        return False
    return True


def _in_background(auth: _Auth, work: Any) -> None:
    task = asyncio.get_running_loop().create_task(work)
    auth.background.add(task)
    task.add_done_callback(auth.background.discard)


async def _rehash(auth: _Auth, username: str, old_hash: str, password: str) -> None:
    """Replace a hash made under older scrypt parameters (unless the user changed meanwhile)."""
    assert auth.hash_slots is not None
    async with auth.hash_slots:
        new_hash = await asyncio.get_running_loop().run_in_executor(
            None, lambda: hash_password(password, policy=auth.config.passwords))

    def change(users: dict[str, UserRecord]) -> None:
        current = users.get(username)
        if current is not None and current.password_hash == old_hash:
            users[username] = replace(current, password_hash=new_hash)

    try:
        await asyncio.to_thread(update_users, auth.config.users_path, change)
    except (OSError, ValueError) as exc:  # a read-only or full volume: the old hash still works
        if not auth.rehash_failing:
            log.warning("could not re-hash passwords into %s (%s); trying again at later logins",
                        auth.config.users_path, exc)
        auth.rehash_failing = True
        return
    auth.rehash_failing = False
    log.info("re-hashed the password of %s with the current scrypt parameters", username)


async def _refresh(request: web.Request) -> web.Response:
    auth, tokens = request.app[_AUTH], request.app[TOKENS]
    try:
        body = await read_json_body(request, max_bytes=auth.config.max_body_bytes)
        token = _str_field(body, "refresh_token", max_chars=MAX_TOKEN_CHARS)
        claims = tokens.decode_refresh(token)
    except BadRequest as exc:
        return json_error(400, str(exc))
    except TokenError as exc:
        return unauthorized(exc)
    add_log_fields(request, sub=claims.subject)
    user = auth.users.get(claims.subject)
    if user is None or user.disabled:
        return unauthorized(TokenError("user no longer exists or is disabled"))
    # Entitlements are re-read from the users file, so a change takes effect at the next refresh.
    pair = auth.issuer.issue(user.username, user.titles, family=claims.family, generation=claims.generation + 1)
    store = _store(tokens)
    until = pair.claims.issued_at + auth.config.tokens.refresh_ttl_s + auth.config.tokens.leeway_s
    try:
        outcome = await store.run(lambda: store.rotate(jti=claims.jti, family=claims.family, subject=claims.subject,
                                                       generation=claims.generation, issued_at=claims.issued_at,
                                                       until=until))
    except StoreUnavailable as exc:
        return unavailable(exc)
    if outcome is Rotation.REUSED:
        log.warning("refresh token reuse for %s; the login was ended", claims.subject)
        _audit(request, "refresh_reuse", user=claims.subject, family=claims.family)
        return unauthorized(TokenError("token revoked (refresh token used twice: the login was ended)"))
    if outcome is Rotation.REVOKED:
        return unauthorized(TokenError("token revoked"))
    return _token_response(pair)


async def _revoke(request: web.Request) -> web.Response:
    """Log out with `{"token": ...}` (access or refresh), or the bearer token itself when the body has none:
    the login it belongs to ends (every token of its family)."""
    auth, tokens = request.app[_AUTH], request.app[TOKENS]
    try:
        body = await read_json_body(request, max_bytes=auth.config.max_body_bytes) if request.body_exists else {}
        if not isinstance(body, dict):
            raise BadRequest("request body must be a JSON object")
        token = _str_field(body, "token", max_chars=MAX_TOKEN_CHARS) if "token" in body else bearer_token(request)
        claims = tokens.inspect(token)
    except BadRequest as exc:
        return json_error(400, str(exc))
    except TokenError as exc:
        return unauthorized(exc)
    policy = auth.config.tokens
    until = max(claims.expires_at, auth.clock() + policy.refresh_ttl_s) + policy.leeway_s
    store = _store(tokens)
    try:
        await store.run(lambda: store.logout(jti=claims.jti, family=claims.family, until=until))
    except StoreUnavailable as exc:
        return unavailable(exc)
    _audit(request, "revoke", user=claims.subject, jti=claims.jti, family=claims.family)
    return web.json_response({"revoked": True})


def _store(tokens: TokenVerifier) -> RevocationStore:
    assert tokens.revocations is not None  # AuthConfig insists on a store
    return tokens.revocations


async def _purge_periodically(store: RevocationStore) -> None:
    while True:
        await asyncio.sleep(PURGE_INTERVAL_S)
        with contextlib.suppress(StoreUnavailable):  # logged by the store; tried again next time
            removed = await store.run(store.purge)
            if removed:
                log.info("forgot %d expired revocations", removed)


def create_app(config: AuthConfig, *, clock: Clock = time.time, monotonic: Clock = time.monotonic) -> web.Application:
    app = web.Application(middlewares=service_middlewares(config.allowed_origins, config.internal_token),
                          client_max_size=config.max_body_bytes)
    auth = _Auth(config, clock=clock, monotonic=monotonic)
    app[_AUTH] = auth
    app[TOKENS] = TokenVerifier(config.tokens, clock=clock)
    app[METRICS] = Metrics()

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        auth.hash_slots = asyncio.Semaphore(config.max_concurrent_hashes)
        purge = asyncio.get_running_loop().create_task(_purge_periodically(_store(app[TOKENS])))
        yield
        purge.cancel()
        for task in (purge, *auth.background):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        app[TOKENS].close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/auth/token", _login)
    app.router.add_post("/auth/refresh", _refresh)
    app.router.add_post("/auth/revoke", _revoke)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_handler)
    return app
