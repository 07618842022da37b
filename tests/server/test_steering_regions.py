"""Steering with regions on a running stack: answer order per client region, the title and health moving
the ranking, the emulated RTT on the edges, and clients that cannot claim what only the stack may say."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import pytest

from server.config import RateLimitPolicy, StackConfig, save_stack_config
from server.regions import REGION_HEADER
from server.stack import RunningStack, start_stack
from tests.conftest import CLEAR_TITLE
from tests.server.conftest import PASSWORD, write_users

HEARTBEAT_S = 0.25
TWO_REGIONS = {
    "regions": ["eu", "us"],
    "default_region": "eu",
    "edges": [
        {"id": "eu-1", "region": "eu", "capacity": 50, "rtt_ms": {"eu": 10, "us": 90}},
        {"id": "eu-2", "region": "eu", "capacity": 50, "rtt_ms": {"eu": 15, "us": 95}},
        {"id": "us-1", "region": "us", "capacity": 50, "rtt_ms": {"eu": 90, "us": 10}},
    ],
}


def regions_stack(tmp_path: Path, content_root: Path, **changes: object) -> StackConfig:
    regions = tmp_path / "regions.json"
    regions.write_text(json.dumps(TWO_REGIONS))
    config = StackConfig(config_path=tmp_path / "state" / "stack.json", content_root=content_root, port=0,
                         heartbeat_s=HEARTBEAT_S, access_log=False, shutdown_timeout_s=2.0, regions_path=regions,
                         rate_limit=RateLimitPolicy(rate_per_s=100, burst=100), **changes)  # type: ignore[arg-type]
    save_stack_config(config)
    write_users(config.config_path, {"alice": (CLEAR_TITLE,)})
    return config


async def _steer(session: aiohttp.ClientSession, stack: RunningStack, token: str, query: str = "",
                 headers: dict[str, str] | None = None) -> tuple[int, dict[str, object]]:
    async with session.post(f"{stack.gateway_url}/playback/{CLEAR_TITLE}{query}",
                            headers={"Authorization": f"Bearer {token}", **(headers or {})}) as resp:
        return resp.status, await resp.json()


async def _token(session: aiohttp.ClientSession, stack: RunningStack) -> str:
    async with session.post(f"{stack.gateway_url}/auth/token", json={"username": "alice", "password": PASSWORD}) as r:
        return (await r.json())["access_token"]


def _order(answer: dict[str, object]) -> list[str]:
    return [s["edge_id"] for s in answer["steering"]]  # type: ignore[attr-defined, index]


async def test_steering_orders_edges_by_region_title_and_health(tmp_path: Path, packaged) -> None:  # type: ignore[no-untyped-def]
    config = regions_stack(tmp_path, packaged.content_root)
    async with start_stack(config) as stack, aiohttp.ClientSession() as session:
        assert stack.config.edges == 3 and stack.edge_services("eu") == {"edge-0": "eu-1", "edge-1": "eu-2"}
        token = await _token(session, stack)
        status, eu = await _steer(session, stack, token, "?region=eu")
        assert status == 200 and eu["region"] == "eu" and eu["placed_by"] == "hint"
        assert _order(eu) == ["eu-1", "eu-2", "us-1"]
        # Answer order is the ranking: the manifest URLs follow it edge by edge.
        assert [u.split("/s/")[0] for u in eu["manifest_urls"]] == [stack.url(n) for n in ("edge-0", "edge-1", "edge-2")]
        assert [s["reason"] for s in eu["steering"]] == ["nearby", "nearby", "far"]  # type: ignore[index]
        _, us = await _steer(session, stack, token, "?region=us")
        assert _order(us) == ["us-1", "eu-1", "eu-2"]
        _, default = await _steer(session, stack, token)
        assert default["placed_by"] == "default" and _order(default) == _order(eu)

        # eu-2 comes to hold the title: it goes ahead of the closer eu-1 (title before RTT, within nearby).
        async with session.get(eu["manifest_urls"][1]) as resp:
            assert resp.status == 200
        await asyncio.sleep(3 * HEARTBEAT_S)
        _, eu = await _steer(session, stack, token, "?region=eu")
        assert _order(eu) == ["eu-2", "eu-1", "us-1"]
        assert eu["steering"][0]["reason"] == "nearby+title"  # type: ignore[index]

        # Health: the eu edges die, eu clients are steered to the us region.
        for name in ("edge-0", "edge-1"):
            await stack.kill_service(name)
        deadline = time.monotonic() + 20 * HEARTBEAT_S
        while len(await stack.live_edges()) > 1 and time.monotonic() < deadline:
            await asyncio.sleep(HEARTBEAT_S / 4)
        _, eu = await _steer(session, stack, token, "?region=eu")
        assert _order(eu) == ["us-1"] and eu["steering"][0]["rtt_ms"] == 90  # type: ignore[index]


async def test_edges_apply_the_rtt_to_the_clients_region(tmp_path: Path, packaged) -> None:  # type: ignore[no-untyped-def]
    config = regions_stack(tmp_path, packaged.content_root)
    async with start_stack(config) as stack, aiohttp.ClientSession() as session:
        token = await _token(session, stack)
        _, eu = await _steer(session, stack, token, "?region=eu")
        far = eu["manifest_urls"][2]  # type: ignore[index]
        assert far.startswith(stack.url("edge-2"))
        for _ in range(2):  # the second time from the edge's cache: the delay is the distance, not the origin
            started = time.perf_counter()
            async with session.get(far) as resp:
                assert resp.status == 200
                await resp.read()
            assert time.perf_counter() - started >= 0.090  # us-1 is 90 ms from eu clients


@pytest.mark.parametrize("trusted", [False, True])
async def test_only_a_trusted_front_door_may_say_where_a_client_is(tmp_path: Path, packaged, trusted: bool) -> None:  # type: ignore[no-untyped-def]
    config = regions_stack(tmp_path, packaged.content_root, trusted_proxies=("127.0.0.1",) if trusted else ())
    async with start_stack(config) as stack, aiohttp.ClientSession() as session:
        token = await _token(session, stack)
        status, answer = await _steer(session, stack, token, headers={REGION_HEADER: "us"})
        assert status == 200
        # From a client the header is dropped at the gateway; from the trusted proxy it places the client.
        assert (answer["region"], answer["placed_by"]) == (("us", "proxy") if trusted else ("eu", "default"))
        # Straight to the playback service, without the stack's internal credential: refused outright.
        async with session.post(f"{stack.playback_url}/playback/{CLEAR_TITLE}",
                                headers={"Authorization": f"Bearer {token}", REGION_HEADER: "us"}) as resp:
            assert resp.status in (401, 403)
        # An unknown region is a clear 400, not a guess.
        status, answer = await _steer(session, stack, token, "?region=mars")
        assert status == 400 and "unknown region 'mars'" in str(answer["error"])


async def test_the_player_says_its_region_and_renewed_urls_keep_it(tmp_path: Path, packaged) -> None:  # type: ignore[no-untyped-def]
    from player.client.bootstrap import bootstrap_stack
    from player.client.fetch import Fetcher
    from player.client.renewal import SessionRenewal
    from server.formats.b64 import b64url_decode

    def region_of(token: str) -> str:
        return json.loads(b64url_decode(token.split(".")[0])).get("rg", "")

    config = regions_stack(tmp_path, packaged.content_root)
    async with start_stack(config) as stack, aiohttp.ClientSession() as http:
        fetcher = Fetcher(http)
        source = await bootstrap_stack(fetcher, stack.gateway_url, CLEAR_TITLE, username="alice", password=PASSWORD,
                                       region="us")
        # The failover order the player uses is the ranking for a us client.
        assert [u.split("/s/")[0] for u in source.manifest_urls] == [stack.url(n) for n in ("edge-2", "edge-0", "edge-1")]
        assert source.stack is not None and region_of(source.stack.url_token) == "us"
        renewal = SessionRenewal(fetcher, source.stack)
        await renewal.renew()
        assert renewal.url_token != source.stack.url_token and region_of(renewal.url_token) == "us"
