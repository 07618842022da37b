"""Gateway: routing to real backends, token checks, rate limits, breaker, bulkhead and shedding, timeouts, bodies."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from server import auth, gateway
from server.config import AuthConfig, BackendConfig, BackendPolicy, GatewayConfig, RateLimitPolicy, TokenPolicy
from server.internal import INTERNAL_HEADER, internal_headers
from server.resilience import ConcurrencyLimiter, RateLimiter
from tests.server.conftest import INTERNAL_TOKEN, PASSWORD, SIGNING_KEY, issue, token_policy, write_users
from tests.server.rawhttp import Stalled

MakeGateway = Callable[..., Awaitable[TestClient]]


class Backend:
    """A real HTTP backend standing in for playback/license, whose behaviour a test switches."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls = 0
        self.seen_request_ids: list[str] = []
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        self.seen_request_ids.append(request.headers.get("X-Request-ID", ""))
        if self.mode == "fail":
            return web.json_response({"error": "boom"}, status=500)
        if self.mode == "unavailable":  # as a service answers when its revocation store is
            return web.json_response({"error": "store unavailable"}, status=503, headers={"Retry-After": "2"})
        if self.mode == "slow":
            await asyncio.sleep(5)
        if self.mode == "hold":
            await self.release.wait()
        body = await request.read()
        return web.json_response({"path": request.path_qs, "bytes": len(body),
                                  "auth": request.headers.get("Authorization", "")})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app


@pytest.fixture
def policy(tmp_path: Path) -> TokenPolicy:
    return token_policy(tmp_path)


@pytest.fixture
async def backend(aiohttp_server) -> tuple[Backend, TestServer]:  # type: ignore[no-untyped-def]
    fake = Backend()
    return fake, await aiohttp_server(fake.app())


@pytest.fixture
async def make_gateway(aiohttp_client, aiohttp_server, tmp_path: Path, policy: TokenPolicy,  # type: ignore[no-untyped-def]
                       backend: tuple[Backend, TestServer]) -> MakeGateway:
    users = write_users(tmp_path / "stack.json", {"alice": ("demo",)})
    auth_server = await aiohttp_server(auth.create_app(AuthConfig(users_path=users, tokens=policy,
                                                                  signing_key=SIGNING_KEY)))
    _, server = backend

    async def make(*, rate: RateLimitPolicy = RateLimitPolicy(rate_per_s=1000, burst=1000),
                   backend_policy: BackendPolicy = BackendPolicy(), max_body_bytes: int = 64 * 1024) -> TestClient:
        backends = (
            BackendConfig(name="auth", url=str(auth_server.make_url("/")), prefix="/auth", requires_token=False,
                          new_session_routes=("POST /auth/token",)),
            BackendConfig(name="playback", url=str(server.make_url("/")), prefix="/playback", requires_token=True,
                          policy=backend_policy, new_session_routes=("POST /playback/[^/]+",)),
            BackendConfig(name="license", url=str(server.make_url("/")), prefix="/license", requires_token=True,
                          policy=backend_policy),
        )
        config = GatewayConfig(backends=backends, tokens=policy, rate_limit=rate, max_body_bytes=max_body_bytes,
                               allowed_origins=("http://player.example",))
        return await aiohttp_client(gateway.create_app(config))

    return make


def bearer(policy: TokenPolicy, subject: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue(policy, subject)}"}


async def test_login_through_the_gateway_and_request_id_round_trip(make_gateway: MakeGateway) -> None:
    client = await make_gateway()
    resp = await client.post("/auth/token", json={"username": "alice", "password": PASSWORD},
                             headers={"X-Request-ID": "trace-123"})
    assert resp.status == 200
    assert (await resp.json())["token_type"] == "Bearer"
    assert resp.headers["X-Request-ID"] == "trace-123"


async def test_playback_is_proxied_with_path_query_and_token(make_gateway: MakeGateway, policy: TokenPolicy,
                                                             backend: tuple[Backend, TestServer]) -> None:
    client = await make_gateway()
    headers = bearer(policy)
    resp = await client.post("/playback/demo?x=1", headers={**headers, "X-Request-ID": "abc"})
    assert resp.status == 200
    body = await resp.json()
    assert body["path"] == "/playback/demo?x=1" and body["auth"] == headers["Authorization"]
    assert backend[0].seen_request_ids == ["abc"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer forged"}])
async def test_missing_or_bad_tokens_stop_at_the_gateway(make_gateway: MakeGateway, headers: dict[str, str],
                                                         backend: tuple[Backend, TestServer]) -> None:
    client = await make_gateway()
    for path in ("/playback/demo", "/license"):
        resp = await client.post(path, headers=headers)
        assert resp.status == 401
    assert backend[0].calls == 0


@pytest.mark.parametrize("path", ["/internal/edges", "/internal/edges/heartbeat", "/other", "/playback/../internal/x"])
async def test_internal_and_unknown_paths_are_not_routed(make_gateway: MakeGateway, policy: TokenPolicy,
                                                         backend: tuple[Backend, TestServer], path: str) -> None:
    client = await make_gateway()
    resp = await client.post(path, headers=bearer(policy))
    assert resp.status in (400, 404)
    assert "error" in await resp.json()
    assert backend[0].calls == 0


async def test_rate_limit_answers_429_with_retry_after_per_client(make_gateway: MakeGateway,
                                                                  policy: TokenPolicy) -> None:
    client = await make_gateway(rate=RateLimitPolicy(rate_per_s=0.5, burst=3))
    alice = bearer(policy, "alice")
    statuses = [(await client.post("/playback/demo", headers=alice)).status for _ in range(3)]
    assert statuses == [200, 200, 200]
    limited = await client.post("/playback/demo", headers=alice)
    assert limited.status == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert (await limited.json())["error"] == "rate limit exceeded"
    assert (await client.post("/playback/demo", headers=bearer(policy, "bob"))).status == 200


async def test_breaker_opens_on_a_failing_backend_and_closes_after_recovery(
        make_gateway: MakeGateway, policy: TokenPolicy, backend: tuple[Backend, TestServer]) -> None:
    fake = backend[0]
    client = await make_gateway(backend_policy=BackendPolicy(failure_threshold=3, reset_timeout_s=0.3))
    headers = bearer(policy)
    fake.mode = "fail"
    for _ in range(3):
        assert (await client.post("/playback/demo", headers=headers)).status == 500
    calls = fake.calls
    refused = await client.post("/playback/demo", headers=headers)
    assert refused.status == 503
    assert (await refused.json()) == {"error": "backend unavailable", "reason": "circuit open", "backend": "playback"}
    assert "Retry-After" in refused.headers and fake.calls == calls  # failed fast, backend untouched
    assert (await (await client.get("/healthz")).json())["backends"]["playback"] == "open"
    fake.mode = "ok"
    await asyncio.sleep(0.35)
    assert (await client.post("/playback/demo", headers=headers)).status == 200  # the half-open probe
    assert (await (await client.get("/healthz")).json())["backends"]["playback"] == "closed"
    assert (await client.post("/playback/demo", headers=headers)).status == 200
    metrics = await (await client.get("/metrics")).text()
    assert 'abrkit_gateway_rejected_total{backend="playback",reason="circuit_open"} 1' in metrics


async def test_unreachable_backend_counts_as_failure(aiohttp_client, policy: TokenPolicy) -> None:  # type: ignore[no-untyped-def]
    backends = (BackendConfig(name="license", url="http://127.0.0.1:9", prefix="/license", requires_token=True,
                              policy=BackendPolicy(failure_threshold=2, reset_timeout_s=60)),)
    client = await aiohttp_client(gateway.create_app(GatewayConfig(backends=backends, tokens=policy)))
    statuses = [(await client.post("/license", headers=bearer(policy))).status for _ in range(3)]
    assert statuses == [502, 502, 503]


async def test_timeout_is_504_and_feeds_the_breaker(make_gateway: MakeGateway, policy: TokenPolicy,
                                                    backend: tuple[Backend, TestServer]) -> None:
    backend[0].mode = "slow"
    client = await make_gateway(backend_policy=BackendPolicy(timeout_s=0.2, failure_threshold=1, reset_timeout_s=60))
    resp = await client.post("/license", headers=bearer(policy))
    assert resp.status == 504
    assert (await resp.json())["backend"] == "license"
    assert (await client.post("/license", headers=bearer(policy))).status == 503


async def test_bulkhead_refuses_beyond_max_concurrent(make_gateway: MakeGateway, policy: TokenPolicy,
                                                      backend: tuple[Backend, TestServer]) -> None:
    fake = backend[0]
    fake.mode = "hold"
    client = await make_gateway(backend_policy=BackendPolicy(max_concurrent=1))
    headers = bearer(policy)
    first = asyncio.create_task(client.post("/playback/demo", headers=headers))
    while fake.calls == 0:
        await asyncio.sleep(0.01)
    second = await client.post("/playback/demo", headers=headers)
    assert second.status == 503
    assert (await second.json())["reason"] == "bulkhead full"
    fake.release.set()
    assert (await first).status == 200


async def test_request_bodies_are_bounded(make_gateway: MakeGateway, policy: TokenPolicy,
                                          backend: tuple[Backend, TestServer]) -> None:
    client = await make_gateway(max_body_bytes=1000)
    ok = await client.post("/license", data=b"x" * 1000, headers=bearer(policy))
    assert (await ok.json())["bytes"] == 1000
    too_big = await client.post("/license", data=b"x" * 1001, headers=bearer(policy))
    assert too_big.status == 413

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(5):
            yield b"y" * 400

    chunked = await client.post("/license", data=chunks(), headers=bearer(policy))
    assert chunked.status == 413


async def test_cors_headers_on_proxied_and_refused_responses(make_gateway: MakeGateway, policy: TokenPolicy) -> None:
    client = await make_gateway()
    origin = {"Origin": "http://player.example"}
    ok = await client.post("/license", headers={**bearer(policy), **origin})
    assert ok.headers["Access-Control-Allow-Origin"] == "http://player.example"
    refused = await client.post("/license", headers=origin)
    assert refused.status == 401 and refused.headers["Access-Control-Allow-Origin"] == "http://player.example"
    pre = await client.options("/license", headers={**origin, "Access-Control-Request-Method": "POST"})
    assert pre.status == 204


async def test_metrics_and_healthz(make_gateway: MakeGateway, policy: TokenPolicy) -> None:
    client = await make_gateway()
    await client.post("/playback/demo", headers=bearer(policy))
    text = await (await client.get("/metrics")).text()
    assert 'abrkit_gateway_requests_total{backend="playback",code="200"} 1' in text
    assert (await client.get("/healthz")).status == 200


# --- bodies, breakers that count only the backend's failures, shedding, clients -------------------------

async def test_a_stalled_body_is_408_from_the_gateway_and_never_reaches_a_backend(
        make_gateway: MakeGateway, policy: TokenPolicy, backend: tuple[Backend, TestServer]) -> None:
    from dataclasses import replace

    fake = backend[0]
    client = await make_gateway(backend_policy=BackendPolicy(failure_threshold=1, max_concurrent=1))
    client.server.app[gateway._STATE].config = replace(client.server.app[gateway._STATE].config,
                                                       client_body_timeout_s=0.3)
    stalled = await Stalled.open(str(client.make_url("")), "POST", "/license", headers=bearer(policy))
    try:
        answer = await stalled.answer(timeout_s=10)
    finally:
        stalled.close()
    assert answer is not None and answer.status == 408
    assert fake.calls == 0
    assert (await (await client.get("/healthz")).json())["backends"]["license"] == "closed"
    assert (await client.post("/license", headers=bearer(policy))).status == 200  # the one slot is free


@pytest.mark.parametrize(("status", "headers", "counts"), [
    (500, {}, True), (502, {}, True), (503, {}, True), (503, {"Retry-After": "2"}, False), (501, {}, False),
    (429, {"Retry-After": "1"}, False), (404, {}, False)])
def test_only_failures_of_the_backend_count_toward_its_breaker(status: int, headers: dict[str, str],
                                                                counts: bool) -> None:
    assert gateway.backend_failed(status, headers) is counts


async def test_a_deliberate_503_does_not_open_the_breaker(make_gateway: MakeGateway, policy: TokenPolicy,
                                                           backend: tuple[Backend, TestServer]) -> None:
    backend[0].mode = "unavailable"
    client = await make_gateway(backend_policy=BackendPolicy(failure_threshold=2, reset_timeout_s=60))
    for _ in range(5):
        resp = await client.post("/license", headers=bearer(policy))
        assert resp.status == 503 and resp.headers["Retry-After"] == "2"
        assert (await resp.json())["error"] == "store unavailable"  # the backend's own answer, passed on
    assert (await (await client.get("/healthz")).json())["backends"]["license"] == "closed"


async def test_new_sessions_are_shed_while_running_ones_keep_their_renewals(
        make_gateway: MakeGateway, policy: TokenPolicy, backend: tuple[Backend, TestServer]) -> None:
    fake = backend[0]
    fake.mode = "hold"
    client = await make_gateway(backend_policy=BackendPolicy(max_concurrent=4, reserved_for_running=0.25))
    starts = [asyncio.create_task(client.post("/playback/demo", headers=bearer(policy, f"user{i}")))
              for i in range(3)]
    while fake.calls < 3:
        await asyncio.sleep(0.01)
    shed = await client.post("/playback/demo", headers=bearer(policy, "late"))
    assert shed.status == 503 and (await shed.json())["reason"] == "shed" and "Retry-After" in shed.headers
    renewal = asyncio.create_task(client.post("/playback/demo/renew", json={"session_id": "0" * 32},
                                              headers=bearer(policy, "watching")))
    while fake.calls < 4:  # the renewal got the reserved slot
        await asyncio.sleep(0.01)
    fake.release.set()
    assert (await renewal).status == 200
    assert [(await s).status for s in starts] == [200, 200, 200]
    metrics = await (await client.get("/metrics")).text()
    assert 'abrkit_gateway_rejected_total{backend="playback",reason="shed"} 1' in metrics


async def test_one_client_cannot_hold_more_than_its_share_in_flight(make_gateway: MakeGateway, policy: TokenPolicy,
                                                                    backend: tuple[Backend, TestServer]) -> None:
    client = await make_gateway()
    client.server.app[gateway._STATE].in_flight = ConcurrencyLimiter(2)
    url = str(client.make_url(""))
    stalled = [await Stalled.open(url, "POST", "/license", headers=bearer(policy, "mallory")) for _ in range(2)]
    try:
        await asyncio.sleep(0.2)
        third = await client.post("/license", headers=bearer(policy, "mallory"))
        assert third.status == 429 and third.headers["Retry-After"] == "1"
        assert (await client.post("/license", headers=bearer(policy, "alice"))).status == 200
    finally:
        for s in stalled:
            s.close()


async def test_password_logins_have_their_own_tighter_budget_per_address(make_gateway: MakeGateway) -> None:
    client = await make_gateway()
    client.server.app[gateway._STATE].login_limiter = RateLimiter(rate_per_s=0.01, burst=3)
    body = {"username": "alice", "password": "wrong"}
    statuses = [(await client.post("/auth/token", json=body)).status for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    assert (await client.post("/auth/refresh", json={"refresh_token": "x.y.z"})).status == 401  # not a login


def test_the_client_address_comes_from_x_forwarded_for_of_trusted_proxies_only() -> None:
    from aiohttp.test_utils import make_mocked_request

    proxies = (ipaddress.ip_network("10.0.0.0/8"),)

    def address(peer: str, forwarded: str | None) -> str:
        headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
        request = make_mocked_request("POST", "/auth/token", headers=headers)
        request._transport_peername = (peer, 1234)  # type: ignore[attr-defined]
        return gateway.client_address(request, proxies)

    assert address("203.0.113.9", "1.2.3.4") == "203.0.113.9"  # not a trusted proxy: its claim is ignored
    assert address("10.0.0.2", "198.51.100.7") == "198.51.100.7"
    assert address("10.0.0.2", "6.6.6.6, 198.51.100.7, 10.0.0.5") == "198.51.100.7"  # right-most untrusted
    assert address("10.0.0.2", None) == "10.0.0.2"
    assert gateway.client_address(make_mocked_request("GET", "/", headers={"X-Forwarded-For": "1.2.3.4"}), ()) != "1.2.3.4"


async def test_backends_get_the_gateways_internal_credential_never_a_clients(
        aiohttp_client, aiohttp_server, policy: TokenPolicy) -> None:  # type: ignore[no-untyped-def]
    seen: list[str | None] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.headers.get(INTERNAL_HEADER))
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = await aiohttp_server(app)
    backends = (BackendConfig(name="license", url=str(server.make_url("/")), prefix="/license", requires_token=True),)
    client = await aiohttp_client(gateway.create_app(GatewayConfig(backends=backends, tokens=policy,
                                                                   internal_token=INTERNAL_TOKEN)))
    resp = await client.post("/license", headers={**bearer(policy), INTERNAL_HEADER: "forged"})
    assert resp.status == 200 and seen == [internal_headers(INTERNAL_TOKEN)[INTERNAL_HEADER]]
