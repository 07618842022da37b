"""The API gateway (the Zuul role): one entry point for `/auth/*`, `/playback/*` and `/license*`.

Per request: token check (playback and license), per-client rate limit (token bucket keyed by the
token's subject, else the remote address), body-size bound, then per backend a bulkhead, a circuit
breaker and a timeout around a streamed proxy call. Every refusal is JSON with a reason; request IDs
go to the backend and back. `/internal/*` is never routed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from server.auth import TOKENS, Claims, TokenError, TokenService, bearer_token, unauthorized
from server.config import BackendConfig, GatewayConfig
from server.httpapi import CorsPolicy, cors_middleware, json_error, json_errors_middleware
from server.observability import (
    METRICS,
    REQUEST_ID_HEADER,
    Metrics,
    add_log_fields,
    metrics_handler,
    request_id,
    request_id_middleware,
)
from server.resilience import Bulkhead, CircuitBreaker, CircuitState, RateLimiter

# RFC 9110 7.6.1: connection-specific fields a proxy must not forward.
_HOP_BY_HOP = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection", "TE", "Trailer",
    "Transfer-Encoding", "Upgrade", "Host"))
_STATE_VALUE = {CircuitState.CLOSED: 0.0, CircuitState.OPEN: 1.0, CircuitState.HALF_OPEN: 2.0}


@dataclass(slots=True)
class _Backend:
    config: BackendConfig
    breaker: CircuitBreaker
    bulkhead: Bulkhead
    base_url: URL
    session: aiohttp.ClientSession | None = None


@dataclass(slots=True)
class _Gateway:
    config: GatewayConfig
    backends: dict[str, _Backend]
    limiter: RateLimiter
    cors: CorsPolicy
    clock: Callable[[], float] = field(default=time.monotonic)


_STATE = web.AppKey("abrkit_gateway", _Gateway)


class _BodyTooLarge(Exception):
    pass


@dataclass(slots=True)
class _BodyCounter:
    limit: int
    seen: int = 0
    exceeded: bool = False


async def _body(request: web.Request, counter: _BodyCounter) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_any():
        counter.seen += len(chunk)
        if counter.seen > counter.limit:
            counter.exceeded = True
            raise _BodyTooLarge()
        yield chunk


def _path_allowed(path: str) -> bool:
    parts = path.split("/")
    return "\x00" not in path and not any(p in (".", "..") for p in parts) and "//" not in path


def _upstream_headers(request: web.Request) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in request.headers.items():
        if name.lower() not in _HOP_BY_HOP:
            headers.add(name, value)
    headers[REQUEST_ID_HEADER] = request_id(request)
    peer = request.remote or ""
    prior = request.headers.get("X-Forwarded-For")
    headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
    headers["X-Forwarded-Proto"] = request.scheme
    headers["X-Forwarded-Host"] = request.host
    return headers


def _refusal(request: web.Request, status: int, message: str, **extra: object) -> web.Response:
    headers = {}
    if "retry_after" in extra:
        headers["Retry-After"] = str(extra.pop("retry_after"))
    return json_error(status, message, headers=headers, **extra)


def _client_key(request: web.Request, claims: Claims | None) -> str:
    return f"sub:{claims.subject}" if claims is not None else f"ip:{request.remote}"


async def _proxy(request: web.Request, backend: _Backend) -> web.StreamResponse:
    gw = request.app[_STATE]
    metrics = request.app[METRICS]
    name = backend.config.name
    add_log_fields(request, backend=name)
    if not _path_allowed(request.path):
        return json_error(400, "path not allowed")

    claims: Claims | None = None
    token_error: TokenError | None = None
    if backend.config.requires_token and request.method != "OPTIONS":
        try:
            claims = request.app[TOKENS].verify_access(bearer_token(request))
        except TokenError as exc:
            token_error = exc
    now = gw.clock()
    decision = gw.limiter.check(_client_key(request, claims), now)
    if not decision.allowed:
        metrics.inc("gateway_rate_limited_total", labels={"backend": name}, help="Requests refused with 429")
        return _refusal(request, 429, "rate limit exceeded", retry_after=decision.retry_after_header,
                        retry_after_s=round(decision.retry_after_s, 3))
    if token_error is not None:
        return unauthorized(token_error)
    if claims is not None:
        add_log_fields(request, sub=claims.subject)
    if request.content_length is not None and request.content_length > gw.config.max_body_bytes:
        return json_error(413, f"request body too large (max {gw.config.max_body_bytes} bytes)")

    if not backend.bulkhead.try_acquire():
        metrics.inc("gateway_rejected_total", labels={"backend": name, "reason": "bulkhead"},
                    help="Requests refused by a breaker or bulkhead")
        return _refusal(request, 503, "backend busy", reason="bulkhead full", backend=name, retry_after=1)
    try:
        if not backend.breaker.allow(now):
            metrics.inc("gateway_rejected_total", labels={"backend": name, "reason": "circuit_open"},
                        help="Requests refused by a breaker or bulkhead")
            wait_s = backend.breaker.retry_after_s(now)
            return _refusal(request, 503, "backend unavailable", reason="circuit open", backend=name,
                            retry_after=max(1, int(wait_s + 0.999)))
        metrics.set("gateway_in_flight", backend.bulkhead.in_flight, labels={"backend": name},
                    help="Requests in flight per backend")
        return await _forward(request, backend, gw)
    finally:
        backend.bulkhead.release()
        metrics.set("gateway_circuit_state", _STATE_VALUE[backend.breaker.state(gw.clock())],
                    labels={"backend": name}, help="Circuit breaker state: 0 closed, 1 open, 2 half-open")


async def _forward(request: web.Request, backend: _Backend, gw: _Gateway) -> web.StreamResponse:
    """One upstream call under the backend's breaker (already allowed) and timeout."""
    metrics = request.app[METRICS]
    name = backend.config.name
    breaker = backend.breaker
    assert backend.session is not None
    counter = _BodyCounter(limit=gw.config.max_body_bytes)
    data = _body(request, counter) if request.body_exists else None
    url = backend.base_url.join(request.rel_url)
    started = time.perf_counter()
    verdict: bool | None = None  # True success, False failure, None no verdict (client went away)
    try:
        async with backend.session.request(request.method, url, headers=_upstream_headers(request), data=data,
                                           allow_redirects=False) as upstream:
            verdict = upstream.status < 500
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for hname, value in upstream.headers.items():
                lower = hname.lower()
                if lower not in _HOP_BY_HOP and not lower.startswith("access-control-") and lower != "vary":
                    response.headers.add(hname, value)
            gw.cors.add_grant(response.headers, request.headers.get("Origin"))  # the upstream's Vary was dropped
            response.headers[REQUEST_ID_HEADER] = request_id(request)
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            metrics.inc("gateway_requests_total", labels={"backend": name, "code": str(upstream.status)},
                        help="Proxied requests by backend and status")
            return response
    except TimeoutError:
        verdict = False
        metrics.inc("gateway_upstream_errors_total", labels={"backend": name, "kind": "timeout"},
                    help="Upstream timeouts and connection failures")
        return _refusal(request, 504, "backend timeout", backend=name)
    except (aiohttp.ClientError, _BodyTooLarge) as exc:
        if counter.exceeded:
            verdict = None
            return json_error(413, f"request body too large (max {gw.config.max_body_bytes} bytes)")
        verdict = False
        metrics.inc("gateway_upstream_errors_total", labels={"backend": name, "kind": "connection"},
                    help="Upstream timeouts and connection failures")
        return _refusal(request, 502, "backend unreachable", backend=name, detail=exc.__class__.__name__)
    finally:
        now = gw.clock()
        if verdict is True:
            breaker.record_success(now)
        elif verdict is False:
            breaker.record_failure(now)
        else:
            breaker.release()
        metrics.observe("gateway_upstream_seconds", time.perf_counter() - started, labels={"backend": name},
                        help="Upstream call time per backend")


async def _gateway_healthz(request: web.Request) -> web.Response:
    gw = request.app[_STATE]
    now = gw.clock()
    return web.json_response({"status": "ok", "backends": {
        name: b.breaker.state(now).value for name, b in gw.backends.items()}})


def create_app(config: GatewayConfig, *, tokens: TokenService | None = None) -> web.Application:
    # Credentials for origins listed by name (never `*`): dash.js sends license requests with
    # `withCredentials` whenever they carry an Authorization header, and a browser drops a credentialed
    # answer without `Access-Control-Allow-Credentials: true`.
    cors = CorsPolicy(allowed_origins=config.allowed_origins, allow_credentials=True)
    app = web.Application(middlewares=[request_id_middleware, cors_middleware(cors), json_errors_middleware],
                          client_max_size=config.max_body_bytes)
    backends = {
        b.config.name: b for b in (
            _Backend(config=bc, base_url=URL(bc.url),
                     breaker=CircuitBreaker(failure_threshold=bc.policy.failure_threshold,
                                            reset_timeout_s=bc.policy.reset_timeout_s),
                     bulkhead=Bulkhead(bc.policy.max_concurrent))
            for bc in config.backends)}
    app[_STATE] = _Gateway(config=config, backends=backends, cors=cors,
                           limiter=RateLimiter(rate_per_s=config.rate_limit.rate_per_s, burst=config.rate_limit.burst,
                                               max_clients=config.rate_limit.max_clients))
    app[TOKENS] = tokens or TokenService(config.tokens)
    app[METRICS] = Metrics()

    async def sessions(app: web.Application) -> AsyncIterator[None]:
        for b in backends.values():
            b.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=b.config.policy.max_concurrent, enable_cleanup_closed=True),
                timeout=aiohttp.ClientTimeout(total=b.config.policy.timeout_s),
                auto_decompress=False, skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"))
        yield
        await asyncio.gather(*(b.session.close() for b in backends.values() if b.session is not None))

    app.cleanup_ctx.append(sessions)
    app.router.add_get("/healthz", _gateway_healthz)
    app.router.add_get("/metrics", metrics_handler)
    for backend in backends.values():
        async def handler(request: web.Request, _backend: _Backend = backend) -> web.StreamResponse:
            return await _proxy(request, _backend)
        prefix = backend.config.prefix
        app.router.add_route("*", prefix, handler)
        app.router.add_route("*", prefix + "/{tail:.*}", handler)
    return app

