"""Gateway: routing to real backends, token checks, rate limit, breaker, bulkhead, timeout, body bound."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from server import auth, gateway
from server.auth import TokenService
from server.config import AuthConfig, BackendConfig, BackendPolicy, GatewayConfig, RateLimitPolicy, TokenPolicy
from tests.server.conftest import PASSWORD, token_policy, write_users

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
    auth_server = await aiohttp_server(auth.create_app(AuthConfig(users_path=users, tokens=policy)))
    _, server = backend

    async def make(*, rate: RateLimitPolicy = RateLimitPolicy(rate_per_s=1000, burst=1000),
                   backend_policy: BackendPolicy = BackendPolicy(), max_body_bytes: int = 64 * 1024) -> TestClient:
        backends = (
            BackendConfig(name="auth", url=str(auth_server.make_url("/")), prefix="/auth", requires_token=False),
            BackendConfig(name="playback", url=str(server.make_url("/")), prefix="/playback", requires_token=True,
                          policy=backend_policy),
            BackendConfig(name="license", url=str(server.make_url("/")), prefix="/license", requires_token=True,
                          policy=backend_policy),
        )
        config = GatewayConfig(backends=backends, tokens=policy, rate_limit=rate, max_body_bytes=max_body_bytes,
                               allowed_origins=("http://player.example",))
        return await aiohttp_client(gateway.create_app(config))

    return make


def bearer(policy: TokenPolicy, subject: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {TokenService(policy).issue(subject, ('demo',)).access_token}"}


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
