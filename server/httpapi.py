"""Pieces every JSON service of the stack shares: JSON errors, bounded JSON bodies, CORS.

- `json_error(status, message)`: the one error shape, `{"error": "..."}` (plus optional fields).
- `json_errors_middleware`: any `HTTPException` becomes that shape; an unexpected exception is
  logged with its traceback and answered `500 {"error": "internal error"}` - never a traceback.
- `CorsPolicy` and `cors_middleware(policy)`: the one CORS policy of every service (the edge too,
  with its own methods and headers) for browser clients (EME players on another origin):
  preflights answered here, `Access-Control-Expose-Headers` for the headers players read, and
  credentials for origins listed by name only, never for `*`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from server.config import check_origins
from server.formats.urls import redact_path
from server.observability import REQUEST_ID_HEADER, Handler

log = logging.getLogger("abrkit.server")


def json_error(status: int, message: str, *, headers: Mapping[str, str] | None = None,
               **extra: object) -> web.Response:
    body = {"error": message, **extra}
    return web.json_response(body, status=status, headers=dict(headers or {}))


@web.middleware
async def json_errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")}
        return json_error(exc.status, exc.reason.lower(), headers=headers)
    except Exception:  # the boundary: log the bug loudly, never send a traceback to a client
        log.exception("unhandled error in %s %s", request.method, redact_path(request.path))
        return json_error(500, "internal error")


class BadRequest(ValueError):
    """A client error: becomes `400 {"error": str(exc)}`."""


# A client trickling its body (slowloris) would otherwise hold a handler for as long as it likes.
BODY_READ_TIMEOUT_S = 10.0


class BodyTooLarge(BadRequest):
    """A request body over its bound (the gateway answers 413, a service 400)."""


async def read_body(request: web.BaseRequest, *, max_bytes: int, timeout_s: float | None = None) -> bytes:
    """The request's body, at most `max_bytes`, read within `timeout_s` (`BODY_READ_TIMEOUT_S`, read
    when called, if None): `BodyTooLarge` if larger, `TimeoutError` if not complete in time (408)."""
    timeout_s = BODY_READ_TIMEOUT_S if timeout_s is None else timeout_s
    if request.content_length is not None and request.content_length > max_bytes:
        raise BodyTooLarge(f"request body too large (max {max_bytes} bytes)")
    body = bytearray()
    async with asyncio.timeout(timeout_s):
        # read(n) returns what has arrived so far: a body split over several packets needs a loop.
        while len(body) <= max_bytes:
            chunk = await request.content.read(max_bytes + 1 - len(body))
            if not chunk:
                break
            body += chunk
    if len(body) > max_bytes:
        raise BodyTooLarge(f"request body too large (max {max_bytes} bytes)")
    return bytes(body)


async def read_json_body(request: web.Request, *, max_bytes: int, timeout_s: float | None = None) -> Any:
    """The request's JSON body, at most `max_bytes`, read within `timeout_s`; `BadRequest` if too
    large or not JSON, 408 if the body is not complete in time."""
    try:
        body = await read_body(request, max_bytes=max_bytes, timeout_s=timeout_s)
    except TimeoutError:
        raise web.HTTPRequestTimeout(reason="Request body not received in time") from None
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise BadRequest("request body is not valid JSON") from None


@dataclass(frozen=True, kw_only=True, slots=True)
class CorsPolicy:
    """Which browser origins may call a service, and what they may send and read (Fetch standard,
    section 3.2); empty `allowed_origins` = no CORS headers at all.

    An origin listed by name is granted by name (`Vary: Origin`) and, with `allow_credentials`,
    may send credentials; `*` grants any other origin as `*`, which never carries credentials.
    """

    allowed_origins: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = ("GET", "HEAD", "POST", "OPTIONS")
    # CMCD-*: players send CMCD as headers (CTA-5004 3.2) to the license too, as ours does.
    allow_headers: tuple[str, ...] = ("Authorization", "Content-Type", REQUEST_ID_HEADER, "CMCD-Object",
                                      "CMCD-Request", "CMCD-Session", "CMCD-Status")
    expose_headers: tuple[str, ...] = (REQUEST_ID_HEADER, "Retry-After", "Content-Length", "Content-Range",
                                       "X-Cache", "ETag")
    max_age_s: int = 600
    allow_credentials: bool = False  # for origins listed by name only

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed_origins", tuple(self.allowed_origins))
        check_origins(self.allowed_origins)
        if self.max_age_s < 0:
            raise ValueError("max_age_s must be >= 0")

    def allows(self, origin: str) -> bool:
        return origin in self.allowed_origins or "*" in self.allowed_origins

    def response_headers(self, origin: str | None) -> dict[str, str]:
        """Headers for an actual (non-preflight) response to a request from `origin`; {} for none.

        The answer depends on the request's Origin, so it says `Vary: Origin` (shared caches must
        key on it)."""
        if origin is None or not self.allowed_origins:
            return {}
        if origin in self.allowed_origins:
            grant = {"Access-Control-Allow-Origin": origin}
            if self.allow_credentials:
                grant["Access-Control-Allow-Credentials"] = "true"
        elif "*" in self.allowed_origins:
            grant = {"Access-Control-Allow-Origin": "*"}
        else:
            return {}
        grant["Access-Control-Expose-Headers"] = ", ".join(self.expose_headers)
        grant["Vary"] = "Origin"
        return grant

    def add_grant(self, headers: CIMultiDict[str], origin: str | None) -> None:
        """Add `response_headers(origin)` to a response's `headers` (`Vary` added to any there)."""
        for name, value in self.response_headers(origin).items():
            if name == "Vary":
                headers.add(name, value)
            else:
                headers[name] = value

    def preflight(self, request: web.BaseRequest) -> web.Response:
        """The answer to a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`):
        204 granting the method and headers asked for, or 403 naming what is not allowed."""
        origin = request.headers.get("Origin")
        if origin is None or not self.allows(origin):
            return json_error(403, "CORS origin not allowed", headers={"Vary": "Origin"})
        method = request.headers.get("Access-Control-Request-Method", "")
        if method not in self.allow_methods:
            return json_error(403, f"CORS method {method} not allowed", headers={"Vary": "Origin"})
        allowed = {name.lower() for name in self.allow_headers}
        asked = [h.strip() for h in request.headers.get("Access-Control-Request-Headers", "").split(",") if h.strip()]
        refused = [name for name in asked if name.lower() not in allowed]
        if refused:
            return json_error(403, f"CORS header {refused[0]} not allowed", headers={"Vary": "Origin"})
        grant = self.response_headers(origin)
        del grant["Access-Control-Expose-Headers"]  # for actual responses only
        return web.Response(status=204, headers={
            **grant, "Access-Control-Allow-Methods": ", ".join(self.allow_methods),
            "Access-Control-Allow-Headers": ", ".join(self.allow_headers),
            "Access-Control-Max-Age": str(self.max_age_s)})


def is_preflight(request: web.BaseRequest) -> bool:
    return request.method == "OPTIONS" and "Origin" in request.headers \
        and "Access-Control-Request-Method" in request.headers


def cors_middleware(policy: CorsPolicy) -> Any:
    """Middleware answering preflights and adding the grant to responses for allowed origins (a
    response a handler streamed, i.e. prepared itself, must carry `policy.response_headers` already)."""

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None or not policy.allowed_origins:
            return await handler(request)
        if is_preflight(request):
            return policy.preflight(request)
        response = await handler(request)
        if not response.prepared:
            policy.add_grant(response.headers, origin)
        return response

    return cors
