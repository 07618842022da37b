"""The internal credential on the wire: the header the gateway and the edges present to the internal
services (origin, auth, playback, license) and to every `/internal/*` endpoint, and the middleware
that refuses requests without it. A header of its own, because `Authorization` carries the client's
token through the gateway."""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web

from server.httpapi import CorsPolicy, cors_middleware, json_error, json_errors_middleware
from server.keys import internal_credential
from server.observability import Handler, request_id_middleware

INTERNAL_HEADER = "X-Abrkit-Internal"
_OPEN_PATHS = frozenset({"/healthz"})  # liveness says nothing worth protecting


def internal_headers(token: bytes) -> dict[str, str]:
    """The header that opens the internal services and `/internal/*` endpoints."""
    return {INTERNAL_HEADER: internal_credential(token)}


class InternalCredential:
    """Checks requests for the credential of `token` (None: nothing to present, nothing accepted)."""

    def __init__(self, token: bytes | None) -> None:
        self._expected = internal_credential(token).encode() if token is not None else None

    def present(self, request: web.BaseRequest) -> bool:
        presented = request.headers.get(INTERNAL_HEADER)
        if self._expected is None or presented is None:
            return False
        return hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), self._expected)


def refused() -> web.Response:
    return json_error(403, "internal endpoint: needs the stack's internal credential")


def require_internal(token: bytes | None) -> Any:
    """Middleware of a service that only the stack itself may call: every request but `/healthz` needs
    the credential of `token`. None: the check is off (a service run on its own, in tests)."""
    credential = InternalCredential(token)

    @web.middleware
    async def internal_only(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token is not None and request.path not in _OPEN_PATHS and not credential.present(request):
            return refused()
        return await handler(request)

    return internal_only


def service_middlewares(allowed_origins: tuple[str, ...], internal_token: bytes | None) -> list[Any]:
    """The middlewares of the API services behind the gateway (auth, playback, license): request IDs
    outermost, then the internal credential, CORS, and JSON errors innermost (so errors get CORS too)."""
    return [request_id_middleware, require_internal(internal_token),
            cors_middleware(CorsPolicy(allowed_origins=allowed_origins)), json_errors_middleware]


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})
