"""The API gateway (the Zuul role): one entry point for `/auth/*`, `/playback/*` and `/license*`.

Per request: the client (its token's subject, else its address; `X-Forwarded-For` believed from
`trusted_proxies` only), the token's signature and claims (playback and license; revocation is
checked by the services behind), a token bucket per client and a tighter one per address for
password logins, a cap on each client's requests in flight, then the whole body read under the
gateway's own timeout (408) before anything is spent on a backend. Then per backend a bulkhead whose
last slots are kept for requests that keep a running session alive (requests starting a new session
are shed first, as Netflix's Zuul sheds by priority), a circuit breaker that counts only failures
the backend caused, and a timeout. Every refusal is JSON with a reason; request IDs go to the
backend and back; the internal credential goes to the backend, never a client's. `/internal/*` is
never routed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import CIMultiDict
from yarl import URL

from server.config import BackendConfig, GatewayConfig
from server.httpapi import BodyTooLarge, CorsPolicy, cors_middleware, json_error, json_errors_middleware, read_body
from server.internal import INTERNAL_HEADER, internal_headers
from server.observability import (
    METRICS,
    REQUEST_ID_HEADER,
    Metrics,
    add_log_fields,
    metrics_handler,
    request_id,
    request_id_middleware,
)
from server.regions import REGION_HEADER
from server.resilience import Bulkhead, CircuitBreaker, CircuitState, ConcurrencyLimiter, Priority, RateLimiter
from server.tokens import TOKENS, Claims, TokenError, TokenVerifier, bearer_token, unauthorized

# RFC 9110 7.6.1: connection-specific fields a proxy must not forward (and what we set ourselves).
_HOP_BY_HOP = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection", "TE", "Trailer",
    "Transfer-Encoding", "Upgrade", "Host", "Content-Length", INTERNAL_HEADER))
_STATE_VALUE = {CircuitState.CLOSED: 0.0, CircuitState.OPEN: 1.0, CircuitState.HALF_OPEN: 2.0}
LOGIN_PATH = "/auth/token"  # POST here is a password check: limited per client address

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(slots=True)
class _Backend:
    config: BackendConfig
    breaker: CircuitBreaker
    bulkhead: Bulkhead
    base_url: URL
    new_session: tuple[tuple[str, re.Pattern[str]], ...]
    session: aiohttp.ClientSession | None = None

    def priority(self, request: web.Request) -> Priority:
        for method, pattern in self.new_session:
            if request.method == method and pattern.fullmatch(request.path):
                return Priority.NEW
        return Priority.RUNNING


@dataclass(slots=True)
class _Gateway:
    config: GatewayConfig
    backends: dict[str, _Backend]
    limiter: RateLimiter
    login_limiter: RateLimiter
    in_flight: ConcurrencyLimiter
    cors: CorsPolicy
    proxies: tuple[Network, ...]
    upstream_extra: dict[str, str]
    clock: Callable[[], float] = field(default=time.monotonic)


_STATE = web.AppKey("abrkit_gateway", _Gateway)


def _path_allowed(path: str) -> bool:
    parts = path.split("/")
    return "\x00" not in path and not any(p in (".", "..") for p in parts) and "//" not in path


def _in(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_address(request: web.BaseRequest, proxies: tuple[Network, ...]) -> str:
    """The client's address: the peer, unless the peer is a trusted proxy; then the right-most
    `X-Forwarded-For` entry that is not one (what the proxies nearest us saw; entries further left are
    whatever the client claimed)."""
    peer = request.remote or ""
    if not proxies or not _in(peer, proxies):
        return peer
    hops = [hop.strip() for value in request.headers.getall("X-Forwarded-For", ()) for hop in value.split(",")]
    for hop in reversed([h for h in hops if h]):
        if not _in(hop, proxies):
            return hop
    return peer


def _upstream_headers(request: web.Request, client: str, extra: dict[str, str], *,
                      from_proxy: bool) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in request.headers.items():
        if name.lower() not in _HOP_BY_HOP:
            headers.add(name, value)
    if not from_proxy:  # a region is a front door's word (server/regions.py), never a client's own header
        headers.popall(REGION_HEADER, None)
    headers.update(extra)
    headers[REQUEST_ID_HEADER] = request_id(request)
    headers["X-Forwarded-For"] = client
    headers["X-Forwarded-Proto"] = request.scheme
    headers["X-Forwarded-Host"] = request.host
    return headers


def _refusal(status: int, message: str, **extra: object) -> web.Response:
    headers = {}
    if "retry_after" in extra:
        headers["Retry-After"] = str(extra.pop("retry_after"))
    return json_error(status, message, headers=headers, **extra)


class _BodyRefused(Exception):
    """A body not read whole: answered, and the connection closed (the rest of it would follow)."""

    def __init__(self, response: web.Response) -> None:
        response.force_close()
        self.response = response


async def _read_body(request: web.Request, config: GatewayConfig) -> bytes | None:
    """The whole request body (None: it has none), within `client_body_timeout_s` and `max_body_bytes`."""
    if not request.body_exists:
        return None
    try:
        return await read_body(request, max_bytes=config.max_body_bytes, timeout_s=config.client_body_timeout_s)
    except TimeoutError:
        raise _BodyRefused(json_error(408, "request body not received in time",
                                      timeout_s=config.client_body_timeout_s)) from None
    except BodyTooLarge as exc:
        raise _BodyRefused(json_error(413, str(exc))) from None
    except (ConnectionError, aiohttp.ClientPayloadError, HttpProcessingError):
        raise _BodyRefused(json_error(400, "request body incomplete")) from None


def backend_failed(status: int, headers: CIMultiDict[str] | dict[str, str]) -> bool:
    """Whether an answer means the backend is failing (a breaker failure): a 5xx, except 501 (a request
    it does not implement) and a 503 with `Retry-After` (a deliberate, prompt "not now": its revocation
    store is unavailable, it has no edge yet), which tripping the breaker would only spread to
    requests that work."""
    if status < 500 or status == 501:
        return False
    return not (status == 503 and "Retry-After" in headers)


async def _proxy(request: web.Request, backend: _Backend) -> web.StreamResponse:
    gw = request.app[_STATE]
    metrics = request.app[METRICS]
    name = backend.config.name
    add_log_fields(request, backend=name)
    if not _path_allowed(request.path):
        return json_error(400, "path not allowed")

    address = client_address(request, gw.proxies)
    claims: Claims | None = None
    token_error: TokenError | None = None
    if backend.config.requires_token and request.method != "OPTIONS":
        try:
            claims = request.app[TOKENS].decode_access(bearer_token(request))
        except TokenError as exc:
            token_error = exc
    client = f"sub:{claims.subject}" if claims is not None else f"ip:{address}"
    now = gw.clock()
    decision = gw.limiter.check(client, now)
    if decision.allowed and request.method == "POST" and request.path == LOGIN_PATH:
        decision = gw.login_limiter.check(address, now)
    if not decision.allowed:
        metrics.inc("gateway_rate_limited_total", labels={"backend": name}, help="Requests refused with 429")
        return _refusal(429, "rate limit exceeded", retry_after=decision.retry_after_header,
                        retry_after_s=round(decision.retry_after_s, 3))
    if token_error is not None:
        return unauthorized(token_error)
    if claims is not None:
        add_log_fields(request, sub=claims.subject)
    if request.content_length is not None and request.content_length > gw.config.max_body_bytes:
        return json_error(413, f"request body too large (max {gw.config.max_body_bytes} bytes)")
    if not gw.in_flight.try_acquire(client):
        metrics.inc("gateway_rate_limited_total", labels={"backend": name}, help="Requests refused with 429")
        return _refusal(429, "too many requests in flight for this client", retry_after=1,
                        max_in_flight=gw.config.max_concurrent_per_client)
    try:
        try:
            body = await _read_body(request, gw.config)
        except _BodyRefused as refused:
            return refused.response
        return await _guarded(request, backend, gw, body, address)
    finally:
        gw.in_flight.release(client)


async def _guarded(request: web.Request, backend: _Backend, gw: _Gateway, body: bytes | None,
                   client: str) -> web.StreamResponse:
    """The backend call under its bulkhead (by priority) and breaker."""
    metrics = request.app[METRICS]
    name = backend.config.name
    priority = backend.priority(request)
    if not backend.bulkhead.try_acquire(priority):
        # Shed: a new session turned away while slots are left for running ones; else simply full.
        shed = priority is Priority.NEW and backend.bulkhead.in_flight < backend.bulkhead.max_concurrent
        reason = "shed" if shed else "bulkhead full"
        metrics.inc("gateway_rejected_total", labels={"backend": name, "reason": reason.replace(" ", "_")},
                    help="Requests refused by a breaker or bulkhead, or shed")
        message = "overloaded: new sessions are turned away for now" if shed else "backend busy"
        return _refusal(503, message, reason=reason, backend=name, retry_after=1)
    try:
        now = gw.clock()
        if not backend.breaker.allow(now):
            metrics.inc("gateway_rejected_total", labels={"backend": name, "reason": "circuit_open"},
                        help="Requests refused by a breaker or bulkhead, or shed")
            wait_s = backend.breaker.retry_after_s(now)
            return _refusal(503, "backend unavailable", reason="circuit open", backend=name,
                            retry_after=max(1, int(wait_s + 0.999)))
        metrics.set("gateway_in_flight", backend.bulkhead.in_flight, labels={"backend": name},
                    help="Requests in flight per backend")
        return await _forward(request, backend, gw, body, client)
    finally:
        backend.bulkhead.release()
        metrics.set("gateway_circuit_state", _STATE_VALUE[backend.breaker.state(gw.clock())],
                    labels={"backend": name}, help="Circuit breaker state: 0 closed, 1 open, 2 half-open")


async def _forward(request: web.Request, backend: _Backend, gw: _Gateway, body: bytes | None,
                   client: str) -> web.StreamResponse:
    """One upstream call under the backend's breaker (already allowed) and timeout."""
    metrics = request.app[METRICS]
    name = backend.config.name
    breaker = backend.breaker
    assert backend.session is not None
    url = backend.base_url.join(request.rel_url)
    started = time.perf_counter()
    verdict: bool | None = None  # True success, False failure, None no verdict (client went away)
    try:
        async with backend.session.request(request.method, url, data=body, allow_redirects=False,
                                           headers=_upstream_headers(request, client, gw.upstream_extra,
                                                                    from_proxy=_in(request.remote or "", gw.proxies))
                                           ) as upstream:
            verdict = not backend_failed(upstream.status, upstream.headers)
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for hname, value in upstream.headers.items():
                lower = hname.lower()
                if lower not in _HOP_BY_HOP and not lower.startswith("access-control-") and lower != "vary":
                    response.headers.add(hname, value)
            gw.cors.add_grant(response.headers, request.headers.get("Origin"))  # the upstream's Vary was dropped
            response.headers[REQUEST_ID_HEADER] = request_id(request)
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
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
        return _refusal(504, "backend timeout", backend=name)
    except aiohttp.ClientError as exc:
        verdict = False
        metrics.inc("gateway_upstream_errors_total", labels={"backend": name, "kind": "connection"},
                    help="Upstream timeouts and connection failures")
        return _refusal(502, "backend unreachable", backend=name, detail=exc.__class__.__name__)
    except ConnectionResetError:  # the client went away mid-response: no verdict on the backend
        verdict = None
        raise
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


def _backend(bc: BackendConfig) -> _Backend:
    policy = bc.policy
    reserved = min(policy.max_concurrent - 1, round(policy.max_concurrent * policy.reserved_for_running))
    routes = tuple((route.split(" ", 1)[0], re.compile(route.split(" ", 1)[1])) for route in bc.new_session_routes)
    return _Backend(config=bc, base_url=URL(bc.url), new_session=routes,
                    breaker=CircuitBreaker(failure_threshold=policy.failure_threshold,
                                           reset_timeout_s=policy.reset_timeout_s),
                    bulkhead=Bulkhead(policy.max_concurrent, reserved=reserved))


def create_app(config: GatewayConfig, *, tokens: TokenVerifier | None = None) -> web.Application:
    # Credentials for origins listed by name (never `*`): dash.js sends license requests with
    # `withCredentials` whenever they carry an Authorization header, and a browser drops a credentialed
    # answer without `Access-Control-Allow-Credentials: true`.
    cors = CorsPolicy(allowed_origins=config.allowed_origins, allow_credentials=True)
    app = web.Application(middlewares=[request_id_middleware, cors_middleware(cors), json_errors_middleware],
                          client_max_size=config.max_body_bytes)
    backends = {bc.name: _backend(bc) for bc in config.backends}
    rate, login = config.rate_limit, config.login_rate_limit
    app[_STATE] = _Gateway(
        config=config, backends=backends, cors=cors,
        limiter=RateLimiter(rate_per_s=rate.rate_per_s, burst=rate.burst, max_clients=rate.max_clients),
        login_limiter=RateLimiter(rate_per_s=login.rate_per_s, burst=login.burst, max_clients=login.max_clients),
        in_flight=ConcurrencyLimiter(config.max_concurrent_per_client),
        proxies=tuple(ipaddress.ip_network(p, strict=False) for p in config.trusted_proxies),
        upstream_extra=internal_headers(config.internal_token) if config.internal_token is not None else {})
    # Signature and claims only (no revocation store): the services behind check revocation themselves.
    app[TOKENS] = tokens or TokenVerifier(config.tokens, check_revocations=False)
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
