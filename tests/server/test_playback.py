"""Playback (steering) API: heartbeats, ranking by affinity and load, signed URLs and their renewal, error cases."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from server import playback, urlsign
from server.config import PlaybackConfig, SteeringWeights, TokenPolicy
from server.internal import internal_headers
from server.keys import ed25519_public
from server.playback import EdgeStatus, rank_edges, rendezvous_weight
from server.regions import regions_from_json
from server.revocation import RevocationStore
from server.tokens import TokenIssuer
from tests.server.conftest import INTERNAL_TOKEN, SIGNING_KEY, URL_KEY, fake_title, issue, token_policy

LICENSE_URL = "http://127.0.0.1:8000/license"
EDGE_AUTH = internal_headers(INTERNAL_TOKEN)
URL_VERIFY_KEY = ed25519_public(URL_KEY)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def policy(tmp_path: Path) -> TokenPolicy:
    return token_policy(tmp_path)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def client(aiohttp_client, tmp_path: Path, policy: TokenPolicy, clock: FakeClock) -> TestClient:  # type: ignore[no-untyped-def]
    fake_title(tmp_path / "content", "demo")
    fake_title(tmp_path / "content", "premium")
    config = PlaybackConfig(content_root=tmp_path / "content", tokens=policy, url_signing_key=URL_KEY,
                            internal_token=INTERNAL_TOKEN, license_url=LICENSE_URL, heartbeat_s=1.0, url_ttl_s=600)
    # As the gateway calls it: with the internal credential on every request.
    return await aiohttp_client(playback.create_app(config, monotonic=clock), headers=EDGE_AUTH)


def bearer(policy: TokenPolicy, titles: tuple[str, ...] = ("demo",)) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue(policy, 'alice', titles)}"}


async def beat(client: TestClient, edge_id: str, port: int, *, healthy: bool = True, load: float = 0.0,
               cached: tuple[str, ...] = ()) -> None:
    resp = await client.post("/internal/edges/heartbeat", headers=EDGE_AUTH, json={
        "edge_id": edge_id, "url": f"http://127.0.0.1:{port}", "healthy": healthy, "load": load,
        "cached_titles": list(cached)})
    assert resp.status == 200, await resp.text()


async def start(client: TestClient, policy: TokenPolicy, title: str = "demo") -> dict:  # type: ignore[type-arg]
    resp = await client.post(f"/playback/{title}", headers=bearer(policy))
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_session_gets_signed_manifest_urls_on_every_live_edge(client: TestClient, policy: TokenPolicy) -> None:
    await beat(client, "edge-0", 9000)
    await beat(client, "edge-1", 9001)
    body = await start(client, policy)
    assert body["license_url"] == LICENSE_URL and body["expires_in"] == 600 and len(body["session_id"]) == 32
    assert {URL(u).port for u in body["manifest_urls"]} == {9000, 9001}
    for url in body["manifest_urls"]:
        grant, path = urlsign.check_path(URL_VERIFY_KEY, URL(url).path, now=time.time())
        assert path == "/demo/manifest.mpd"
        assert grant.session_id == body["session_id"] and grant.path_prefix == "/demo/"
        assert grant.subject == "alice" and grant.family and grant.issued_at > 0  # bound to the login


async def test_an_edge_silent_for_two_heartbeats_leaves_the_ranking(client: TestClient, policy: TokenPolicy,
                                                                     clock: FakeClock) -> None:
    await beat(client, "edge-0", 9000)
    await beat(client, "edge-1", 9001)
    clock.now += 1.0
    await beat(client, "edge-1", 9001)
    clock.now += 1.0  # edge-0 last heard 2.0 s ago: still in
    assert len((await start(client, policy))["manifest_urls"]) == 2
    clock.now += 0.01
    assert [URL(u).port for u in (await start(client, policy))["manifest_urls"]] == [9001]
    edges = await (await client.get("/internal/edges", headers=EDGE_AUTH)).json()
    assert {e["edge_id"]: e["live"] for e in edges["edges"]} == {"edge-0": False, "edge-1": True}


async def test_an_unhealthy_edge_is_not_ranked(client: TestClient, policy: TokenPolicy) -> None:
    await beat(client, "edge-0", 9000, healthy=False)
    await beat(client, "edge-1", 9001)
    assert [URL(u).port for u in (await start(client, policy))["manifest_urls"]] == [9001]


async def test_no_healthy_edge_is_503_with_a_reason(client: TestClient, policy: TokenPolicy) -> None:
    resp = await client.post("/playback/demo", headers=bearer(policy))
    assert resp.status == 503
    body = await resp.json()
    assert body["error"] == "no healthy edge" and "reason" in body


async def test_when_no_edge_is_live_the_ones_late_but_healthy_are_steered_to(
        client: TestClient, policy: TokenPolicy, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    # Fail static: every heartbeat late (a loaded machine) is not every edge down. Edges last heard
    # healthy within 30 heartbeats are steered to, best first as ever; one that said it is unhealthy is not.
    await beat(client, "edge-0", 9000)
    await beat(client, "edge-1", 9001)
    await beat(client, "edge-2", 9002, healthy=False)
    clock.now += 5.0  # no edge live any more (heard 5 s ago, the window is 2 s)
    with caplog.at_level("WARNING", logger="abrkit.playback"):
        first = await start(client, policy)
        second = await start(client, policy)
    assert {URL(u).port for u in first["manifest_urls"]} == {9000, 9001}
    assert second["manifest_urls"][0].split("/s/")[0] == first["manifest_urls"][0].split("/s/")[0]
    assert len([r for r in caplog.records if "fail static" in r.getMessage()]) == 1, "logged once per episode"
    metrics = await (await client.get("/metrics", headers=EDGE_AUTH)).text()
    assert "playback_fail_static_total 2" in metrics
    edges = await (await client.get("/internal/edges", headers=EDGE_AUTH)).json()
    assert not any(e["live"] for e in edges["edges"]), "/internal/edges still says which edges are live"
    await beat(client, "edge-1", 9001)  # one heard again: live edges only
    assert [URL(u).port for u in (await start(client, policy))["manifest_urls"]] == [9001]
    clock.now += 30.01  # edge-1 heard 30.01 s ago, edge-0 35.01 s: past the 30 heartbeats
    resp = await client.post("/playback/demo", headers=bearer(policy))
    assert resp.status == 503
    assert "nor in the last 30 s" in (await resp.json())["reason"]


async def test_an_edge_late_while_another_is_heard_is_down_not_late(
        aiohttp_client, tmp_path: Path, policy: TokenPolicy, clock: FakeClock) -> None:  # type: ignore[no-untyped-def]
    # Fail static is decided on the whole fleet, not on one client's ranking: here the only live edge is
    # a telco ISP's, which a client of no ISP is not steered to, and the region's edge went silent while
    # the telco edge kept beating, so it is down. The answer stays 503 (it was not fail static).
    fake_title(tmp_path / "content", "demo")
    regions = regions_from_json({"regions": ["eu"], "default_region": "eu", "edges": [
        {"id": "eu-1", "region": "eu", "capacity": 10, "rtt_ms": {"eu": 10}},
        {"id": "telco-1", "region": "eu", "isp": "telco", "capacity": 10, "rtt_ms": {"eu": 3}}]})
    config = PlaybackConfig(content_root=tmp_path / "content", tokens=policy, url_signing_key=URL_KEY,
                            internal_token=INTERNAL_TOKEN, license_url=LICENSE_URL, heartbeat_s=1.0, regions=regions)
    client = await aiohttp_client(playback.create_app(config, monotonic=clock), headers=EDGE_AUTH)
    await beat(client, "eu-1", 9000)
    clock.now += 5.0
    await beat(client, "telco-1", 9001)
    resp = await client.post("/playback/demo?region=eu", headers=bearer(policy))
    assert resp.status == 503, await resp.text()
    assert "none of the 1 live edge(s) is ranked for this client" in (await resp.json())["reason"]
    metrics = await (await client.get("/metrics", headers=EDGE_AUTH)).text()
    assert "playback_fail_static_total" not in metrics


async def test_fail_static_can_be_turned_off(aiohttp_client, tmp_path: Path, policy: TokenPolicy,  # type: ignore[no-untyped-def]
                                             clock: FakeClock) -> None:
    fake_title(tmp_path / "content", "demo")
    config = PlaybackConfig(content_root=tmp_path / "content", tokens=policy, url_signing_key=URL_KEY,
                            internal_token=INTERNAL_TOKEN, license_url=LICENSE_URL, heartbeat_s=1.0,
                            fail_static_heartbeats=0)
    client = await aiohttp_client(playback.create_app(config, monotonic=clock), headers=EDGE_AUTH)
    await beat(client, "edge-0", 9000)
    clock.now += 2.01
    resp = await client.post("/playback/demo", headers=bearer(policy))
    assert resp.status == 503 and (await resp.json())["error"] == "no healthy edge"


@pytest.mark.parametrize("heartbeats", [1, -1, 100_001])
def test_fail_static_must_cover_the_live_window(tmp_path: Path, policy: TokenPolicy, heartbeats: int) -> None:
    with pytest.raises(ValueError, match="fail_static_heartbeats must be 0"):
        PlaybackConfig(content_root=tmp_path, tokens=policy, url_signing_key=URL_KEY, license_url=LICENSE_URL,
                       fail_static_heartbeats=heartbeats)


@pytest.mark.parametrize(("title", "titles", "status"), [
    ("premium", ("demo",), 403), ("nosuch", ("demo",), 403), ("nosuch", ("*",), 404), ("..", ("*",), 404),
    ("a%00b", ("*",), 404)])
async def test_entitlement_and_unknown_titles(client: TestClient, policy: TokenPolicy, title: str,
                                              titles: tuple[str, ...], status: int) -> None:
    await beat(client, "edge-0", 9000)
    resp = await client.post(f"/playback/{title}", headers=bearer(policy, titles))
    assert resp.status == status
    assert "error" in await resp.json()


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}])
async def test_bad_token_is_401(client: TestClient, headers: dict[str, str]) -> None:
    resp = await client.post("/playback/demo", headers=headers)
    assert resp.status == 401


@pytest.mark.parametrize("body", [
    [], {"edge_id": "e", "url": "ftp://x:1", "healthy": True}, {"edge_id": "", "url": "http://x:1", "healthy": True},
    {"edge_id": "e", "url": "http://x:1", "healthy": "yes"}, {"edge_id": "e", "url": "http://x:1", "healthy": True,
                                                             "load": -1},
    {"edge_id": "e", "url": "http://x:1/path", "healthy": True},
    {"edge_id": "e", "url": "http://x:1", "healthy": True, "cached_titles": "demo"}])
async def test_malformed_heartbeats_are_400(client: TestClient, body: object) -> None:
    resp = await client.post("/internal/edges/heartbeat", json=body, headers=EDGE_AUTH)
    assert resp.status == 400


@pytest.mark.parametrize("headers", [{"X-Abrkit-Internal": ""}, {"X-Abrkit-Internal": "forged"},
                                     internal_headers(b"x" * 32), {"X-Abrkit-Internal": "\u00ff"}])
async def test_heartbeats_and_the_edge_list_need_the_internal_credential(client: TestClient, policy: TokenPolicy,
                                                                        headers: dict[str, str]) -> None:
    resp = await client.post("/internal/edges/heartbeat", headers=headers,
                             json={"edge_id": "rogue", "url": "http://evil.example:80", "healthy": True})
    assert resp.status == 403
    assert (await client.post("/playback/demo", headers=bearer(policy))).status == 503
    assert (await client.get("/internal/edges", headers=headers)).status == 403


async def test_renewal_gives_fresh_urls_for_the_same_session(client: TestClient, policy: TokenPolicy,
                                                             clock: FakeClock) -> None:
    await beat(client, "edge-0", 9000)
    first = await start(client, policy)
    resp = await client.post("/playback/demo/renew", json={"session_id": first["session_id"]}, headers=bearer(policy))
    assert resp.status == 200
    renewed = await resp.json()
    assert renewed["session_id"] == first["session_id"] and renewed["expires_in"] == 600
    grant, _ = urlsign.check_path(URL_VERIFY_KEY, URL(renewed["manifest_urls"][0]).path, now=time.time())
    assert grant.session_id == first["session_id"]


@pytest.mark.parametrize(("body", "titles", "status"), [
    ({"session_id": "nope"}, ("demo",), 400), ({}, ("demo",), 400), ([], ("demo",), 400),
    ({"session_id": "0" * 32}, ("premium",), 403)])
async def test_renewal_checks_the_session_id_and_the_entitlement(client: TestClient, policy: TokenPolicy,
                                                                  body: object, titles: tuple[str, ...],
                                                                  status: int) -> None:
    await beat(client, "edge-0", 9000)
    resp = await client.post("/playback/demo/renew", json=body, headers=bearer(policy, titles))
    assert resp.status == status


async def test_a_revoked_login_can_neither_start_nor_renew(client: TestClient, policy: TokenPolicy) -> None:
    await beat(client, "edge-0", 9000)
    pair = TokenIssuer(policy, SIGNING_KEY).issue("alice", ("demo",))
    headers = {"Authorization": f"Bearer {pair.access_token}"}
    session = (await (await client.post("/playback/demo", headers=headers)).json())["session_id"]
    assert policy.revocations_path is not None
    RevocationStore(policy.revocations_path).logout(jti=pair.claims.jti, family=pair.claims.family, until=time.time() + 60)
    assert (await client.post("/playback/demo", headers=headers)).status == 401
    assert (await client.post("/playback/demo/renew", json={"session_id": session}, headers=headers)).status == 401


async def test_an_unreadable_revocation_store_is_503_not_a_session(client: TestClient, policy: TokenPolicy) -> None:
    await beat(client, "edge-0", 9000)
    assert policy.revocations_path is not None
    policy.revocations_path.unlink()
    resp = await client.post("/playback/demo", headers=bearer(policy))
    assert resp.status == 503 and int(resp.headers["Retry-After"]) >= 1
    assert "manifest_urls" not in await resp.json()


def _edge(edge_id: str, load: float = 0.0, cached: tuple[str, ...] = ()) -> EdgeStatus:
    return EdgeStatus(edge_id=edge_id, url=f"http://{edge_id}:1", healthy=True, load=load,
                      cached_titles=frozenset(cached), last_seen_s=0.0)


def test_ranking_puts_the_titles_rendezvous_home_first_when_loads_are_equal() -> None:
    edges = [_edge(f"edge-{i}") for i in range(5)]
    for title in ("demo", "movie-a", "movie-b"):
        home = max(edges, key=lambda e: rendezvous_weight(title, e.edge_id))
        assert rank_edges(title, edges, SteeringWeights())[0] is home


def test_removing_an_edge_moves_only_the_titles_it_was_home_to() -> None:
    edges = [_edge(f"edge-{i}") for i in range(4)]
    titles = [f"title-{i}" for i in range(200)]
    before = {t: rank_edges(t, edges, SteeringWeights())[0].edge_id for t in titles}
    after = {t: rank_edges(t, edges[1:], SteeringWeights())[0].edge_id for t in titles}
    moved = [t for t in titles if before[t] != after[t]]
    assert moved and all(before[t] == "edge-0" for t in moved)


def test_heavy_load_outweighs_affinity_and_a_cached_title_attracts() -> None:
    weights = SteeringWeights(affinity_weight=1.0, load_weight=0.1, cached_bonus=0.5)
    a, b = _edge("a"), _edge("b")
    home = rank_edges("demo", [a, b], weights)[0].edge_id
    other = "b" if home == "a" else "a"
    loaded = [_edge(home, load=50.0), _edge(other)]
    assert rank_edges("demo", loaded, weights)[0].edge_id == other
    tied = [_edge(home, load=10.0), _edge(other, cached=("demo",))]
    assert rank_edges("demo", tied, weights)[0].edge_id == other


async def test_hls_urls_come_beside_the_mpd_urls_when_the_title_has_a_master_playlist(
        client: TestClient, policy: TokenPolicy, tmp_path: Path) -> None:
    await beat(client, "edge-0", 9000)
    assert "hls_urls" not in await start(client, policy)
    (tmp_path / "content" / "demo" / "master.m3u8").write_text("#EXTM3U\n")
    body = await start(client, policy)
    assert [u.removesuffix("master.m3u8") for u in body["hls_urls"]] == \
        [u.removesuffix("manifest.mpd") for u in body["manifest_urls"]]
    grant, path = urlsign.check_path(URL_VERIFY_KEY, URL(body["hls_urls"][0]).path, now=time.time())
    assert path == "/demo/master.m3u8" and grant.session_id == body["session_id"]
