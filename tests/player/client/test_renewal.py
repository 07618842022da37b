"""A session that outlives its signed URLs and its access token: the player renews both as it plays
(player/client/renewal.py), and without renewing the same session fails."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from player.client.bootstrap import bootstrap_stack
from player.client.eventlog import EventLog
from player.client.fetch import Attempt, Fetcher
from player.client.harness import TitleTarget, play_headless
from player.client.headless import HeadlessPlayer, PlayerConfig
from player.client.liveplay import LivePlayConfig, play_live
from player.client.renewal import (
    FAILOVER_RENEW_GAP_S,
    EdgeRanking,
    SessionRenewal,
    StackSession,
    keep_alive,
    manifest_urls_now,
    origin_of,
)
from player.session import SessionConfig
from server.config import RateLimitPolicy, StackConfig, save_stack_config
from server.stack import start_stack
from tests.conftest import CLEAR_TITLE, PackagedTitles
from tests.player.conftest import running_stack
from tests.server.conftest import PASSWORD, write_users

URL_TTL_S = 2
ACCESS_TTL_S = 3
# A small buffer makes the player fetch at playback pace: 3 segments over ~8 s, several URL lifetimes.
PACED = PlayerConfig(abr="bba", decode="none", session=SessionConfig(buffer_cap_s=0.5))


async def test_a_session_outliving_several_url_lifetimes_keeps_playing(tmp_path: Path,
                                                                      packaged: PackagedTitles) -> None:
    log = EventLog()
    async with running_stack(tmp_path, packaged.content_root, url_ttl_s=URL_TTL_S,
                             access_ttl_s=ACCESS_TTL_S) as (stack, password):
        started = time.monotonic()
        report = await play_headless(TitleTarget(title=CLEAR_TITLE, gateway_url=stack.gateway_url, username="demo",
                                                 password=password), PACED, events=log)
        took_s = time.monotonic() - started
    assert report.error is None and report.metrics.segments == 3
    assert took_s > 2 * URL_TTL_S, "the session did not outlive its first URLs"
    requests = log.of_type("request")
    renewals = [r for r in requests if r["url"].endswith("/renew") and r["status"] == 200]
    refreshes = [r for r in requests if r["url"].endswith("/auth/refresh") and r["status"] == 200]
    assert len(renewals) >= 3 and len(refreshes) >= 1
    assert not [r for r in requests if r["status"] == 403], "a segment was refused"


async def test_without_renewal_the_same_session_fails_when_its_urls_expire(tmp_path: Path,
                                                                          packaged: PackagedTitles) -> None:
    async with running_stack(tmp_path, packaged.content_root, url_ttl_s=URL_TTL_S) as (stack, password), \
            aiohttp.ClientSession() as http:
        fetcher = Fetcher(http)
        source = await bootstrap_stack(fetcher, stack.gateway_url, CLEAR_TITLE, username="demo", password=password)
        report = await HeadlessPlayer(source, PACED, fetcher).run()
    assert report.error is not None and "HTTP 403" in report.error


async def test_renewal_refreshes_a_refused_token_then_stops_when_the_title_is_taken_away(
        tmp_path: Path, packaged: PackagedTitles) -> None:
    from player.cli import main as abrkit

    async with running_stack(tmp_path, packaged.content_root) as (stack, password), aiohttp.ClientSession() as http:
        fetcher = Fetcher(http)
        source = await bootstrap_stack(fetcher, stack.gateway_url, CLEAR_TITLE, username="demo", password=password)
        assert source.stack is not None
        renewal = SessionRenewal(fetcher, source.stack)
        await renewal.renew()
        first = renewal.url_token
        assert abrkit(["user", "--config", str(stack.config.config_path), "set", "demo", "--titles", "other"]) == 0
        with pytest.raises(Exception, match="HTTP 403"):  # 401 -> refreshed -> the new token is not entitled
            await renewal.renew()
        assert renewal.refreshes == 1 and renewal.url_token == first
        async with keep_alive(fetcher, source.stack) as running:
            assert running is not None
            assert await fetcher.route(source.manifest_urls[0]) == source.manifest_urls[0]  # type: ignore[misc]


async def test_the_player_follows_the_ranking_a_renewal_answer_brings(tmp_path: Path, packaged: PackagedTitles) -> None:
    # Mid-session the steering stops listing the edge the player uses (marked unhealthy; it still
    # serves, so failover alone would never move the player). The next renewal's answer ranks the
    # other edge first, and the player fetches from it from then on.
    log = EventLog()
    async with running_stack(tmp_path, packaged.content_root, url_ttl_s=URL_TTL_S, heartbeat_s=60.0) as (stack, password):
        edges = dict(zip(stack.edge_urls, stack.edge_services()))  # public URL -> edge id
        moved_at: list[int] = []

        async def steer_away() -> None:
            while not (used := [r for r in log.of_type("request") if r["url"].endswith(".m4s")]):
                await asyncio.sleep(0.02)
            first = origin_of(used[0]["url"])
            async with aiohttp.ClientSession() as http, http.post(
                    f"{stack.playback_url}/internal/edges/heartbeat", headers=stack.internal_headers(),
                    json={"edge_id": edges[first], "url": first, "healthy": False, "load": 0.0,
                          "cached_titles": []}) as resp:
                assert resp.status == 200, await resp.text()
            moved_at.append(len(log.events))

        mover = asyncio.create_task(steer_away())
        report = await play_headless(TitleTarget(title=CLEAR_TITLE, gateway_url=stack.gateway_url, username="demo",
                                                 password=password), PACED, events=log)
        await mover
    assert report.error is None and report.metrics.segments == 3 and report.failed_requests == 0
    first = origin_of(next(r["url"] for r in log.of_type("request") if r["url"].endswith(".m4s")))
    after = log.events[moved_at[0]:]
    renewed = next(i for i, e in enumerate(after) if e["type"] == "request" and e["url"].endswith("/renew")
                   and e["status"] == 200)
    later = [origin_of(e["url"]) for e in after[renewed:] if e["type"] == "request" and e["url"].endswith(".m4s")]
    assert later, "no segment was fetched after the re-ranking renewal"
    assert first not in later and set(later) <= set(edges), "the player did not follow the new ranking"


def test_an_edge_ranking_keeps_the_bootstrap_order_until_steering_changes_it() -> None:
    ranking = EdgeRanking(["http://a:1/s/T/film/manifest.mpd", "http://b:2/s/T/film/manifest.mpd",
                           "http://c:3/s/T/film/manifest.mpd"])
    segment = "http://a:1/s/T/film/v1/seg-3.m4s"
    assert ranking.alternatives(segment) == [segment, "http://b:2/s/T/film/v1/seg-3.m4s",
                                             "http://c:3/s/T/film/v1/seg-3.m4s"]
    assert ranking.alternatives("http://gateway:9/playback/film") == ["http://gateway:9/playback/film"]
    assert not ranking.adopt(["http://a:1/x", "http://b:2/x", "http://c:3/x"])  # the same ranking
    # Steering drops a and b (their region is down) and lists a new edge d: d and c first, then the
    # edges it dropped, as a last resort.
    assert ranking.adopt(["http://c:3/x", "http://d:4/x"])
    assert ranking.order == ("http://c:3", "http://d:4", "http://a:1", "http://b:2")
    assert ranking.alternatives(segment)[:2] == ["http://c:3/s/T/film/v1/seg-3.m4s", "http://d:4/s/T/film/v1/seg-3.m4s"]
    # The region is back and ranked first again: the player returns to it.
    assert ranking.adopt(["http://a:1/x", "http://b:2/x", "http://c:3/x"])
    assert ranking.alternatives(segment)[0] == segment and ranking.changes == 2


async def test_a_failover_renews_at_once_and_the_player_follows_the_new_ranking(tmp_path: Path,
                                                                               packaged: PackagedTitles) -> None:
    # URLs valid 2 minutes: no renewal is due in this ~8 s session. The edge the player uses dies
    # after its first segment; the failover to the other edge asks for a renewal at once (steering
    # notices the dead edge within two heartbeats, so the first early answer may still rank it first:
    # the next one, a little later, does not), and every segment after the re-ranking renewal comes
    # from the living edge.
    log = EventLog()
    async with running_stack(tmp_path, packaged.content_root, url_ttl_s=120) as (stack, password):
        services = {url: f"edge-{i}" for i, url in enumerate(stack.edge_urls)}
        killed: list[str] = []

        async def kill_first_edge() -> None:
            while not (used := [r for r in log.of_type("request") if r["url"].endswith(".m4s")]):
                await asyncio.sleep(0.02)
            killed.append(origin_of(used[0]["url"]))
            await stack.kill_service(services[killed[0]])

        killer = asyncio.create_task(kill_first_edge())
        report = await play_headless(TitleTarget(title=CLEAR_TITLE, gateway_url=stack.gateway_url, username="demo",
                                                 password=password), PACED, events=log)
        await killer
    assert report.error is None and report.metrics.segments == 3
    requests = [e for e in log.events if e["type"] == "request"]
    renewals = [i for i, e in enumerate(requests) if e["url"].endswith("/renew") and e["status"] == 200]
    assert renewals, "a failover did not renew early (none was due for another minute)"
    later = [origin_of(e["url"]) for e in requests[renewals[-1]:] if e["url"].endswith(".m4s")]
    assert later and killed[0] not in later


def test_an_edge_ranking_orders_the_manifest_urls_and_tells_a_failover() -> None:
    ranking = EdgeRanking(["http://a:1/s/T/film/manifest.mpd", "http://b:2/s/U/film/manifest.mpd"])
    assert ranking.manifest_urls(["http://a:1/s/T/film/manifest.mpd", "http://b:2/s/U/film/manifest.mpd"]) == [
        "http://a:1/s/T/film/manifest.mpd", "http://b:2/s/U/film/manifest.mpd"]
    assert not ranking.is_failover("http://a:1/s/T/film/v1/seg-1.m4s")
    assert ranking.is_failover("http://b:2/s/T/film/v1/seg-1.m4s")  # left the first edge
    assert not ranking.is_failover("http://gateway:9/playback/film/renew")  # not an edge
    # Steering now puts b first and adds c: each edge keeps its own URL, c gets the first's path.
    assert ranking.adopt(["http://b:2/x", "http://c:3/x"])
    assert ranking.manifest_urls(["http://a:1/s/T/film/manifest.mpd", "http://b:2/s/U/film/manifest.mpd"]) == [
        "http://b:2/s/U/film/manifest.mpd", "http://c:3/s/T/film/manifest.mpd", "http://a:1/s/T/film/manifest.mpd"]
    assert ranking.is_failover("http://a:1/s/T/film/v1/seg-1.m4s") and not ranking.is_failover("http://b:2/y")
    assert manifest_urls_now(None, ["http://a:1/m.mpd", "http://b:2/m.mpd"]) == ["http://a:1/m.mpd", "http://b:2/m.mpd"]


async def test_a_live_players_manifest_refreshes_follow_the_steerings_ranking(tmp_path: Path, packaged: PackagedTitles) -> None:
    # A live channel behind two edges, URLs renewed every second. Steering stops listing the edge the
    # MPD came from (unhealthy; it still serves): after the next renewal the refreshes go to the other.
    config = StackConfig(config_path=tmp_path / "state" / "stack.json", content_root=packaged.content_root, port=0,
                         heartbeat_s=60.0, access_log=False, shutdown_timeout_s=2.0, edges=2, url_ttl_s=URL_TTL_S,
                         rate_limit=RateLimitPolicy(rate_per_s=100, burst=100), live_title=CLEAR_TITLE, live_speed=10.0)
    save_stack_config(config)
    write_users(config.config_path, {"alice": ("live",)})
    attempts: list[Attempt] = []
    async with start_stack(config) as stack, aiohttp.ClientSession() as http:
        fetcher = Fetcher(http, observer=attempts.append)
        source = await bootstrap_stack(fetcher, stack.gateway_url, "live", username="alice", password=PASSWORD)
        assert source.stack is not None and len(source.manifest_urls) == 2
        first = origin_of(source.manifest_urls[0])
        edges = dict(zip(stack.edge_urls, stack.edge_services()))
        async with http.post(f"{stack.playback_url}/internal/edges/heartbeat", headers=stack.internal_headers(),
                             json={"edge_id": edges[first], "url": first, "healthy": False, "load": 0.0,
                                   "cached_titles": []}) as resp:
            assert resp.status == 200, await resp.text()
        async with keep_alive(fetcher, source.stack) as renewal:
            report = await play_live(source, PlayerConfig(abr="dynamic", decode="none", speed=10.0), fetcher,
                                     live=LivePlayConfig(duration_s=40.0), events=EventLog(keep=False))
    assert report.error is None, report.error
    assert renewal is not None and renewal.renewals >= 1 and source.stack.edges is not None
    assert source.stack.edges.order[0] != first
    renewed = next(i for i, a in enumerate(attempts) if a.url.split("?")[0].endswith("/renew") and a.status == 200)
    refreshes = [origin_of(a.url) for a in attempts[renewed:] if ".mpd" in a.url]
    assert refreshes, "no manifest refresh after the re-ranking renewal"
    assert first not in refreshes, "the refreshes kept the bootstrap's order of edges"


def _renewal_over_edges_a_b(lifetime_s: float) -> tuple[SessionRenewal, Fetcher]:
    """A session's renewal (URLs and token living `lifetime_s`) over edges a then b; no request is made."""
    session = StackSession(gateway_url="http://gateway:9", title="film", session_id="s", url_token="t",
                           urls_expire_in_s=lifetime_s, access_token="a", access_expires_in_s=lifetime_s,
                           edges=EdgeRanking(["http://a:1/m.mpd", "http://b:2/m.mpd"]))
    fetcher = Fetcher(None)  # type: ignore[arg-type]
    return SessionRenewal(fetcher, session), fetcher


async def test_a_failover_renewal_waits_out_the_gap_and_never_delays_a_due_one() -> None:
    renewal, fetcher = _renewal_over_edges_a_b(60.0)
    routed = renewal.route(None)
    assert await routed("http://a:1/v/seg-1.m4s") == "http://a:1/v/seg-1.m4s" and not renewal._failover.is_set()
    fetcher.exclude("http://a:1/v/seg-2.m4s")  # the first edge failed
    await routed("http://b:2/v/seg-2.m4s")  # left the first edge: a failover
    started = time.monotonic()
    assert await renewal._wait(30.0)  # early, once the gap since the last renewal (start) is out
    assert FAILOVER_RENEW_GAP_S - 0.05 <= time.monotonic() - started < 5.0
    renewal._renewed_at = time.monotonic()  # just renewed: a renewal due sooner than the gap comes first
    started = time.monotonic()
    assert not await renewal._wait(0.3)
    assert time.monotonic() - started < FAILOVER_RENEW_GAP_S


async def test_a_first_edge_that_only_lacks_the_object_asks_for_one_early_renewal_per_ranking() -> None:
    # A 404 says the edge is up and the URLs are valid: no reason to renew the playback grant every
    # few seconds. Only the steering's ranking might be stale (the title moved): one renewal per ranking.
    renewal, fetcher = _renewal_over_edges_a_b(600.0)
    routed = renewal.route(None)
    await routed("http://b:2/v/seg-1.m4s")  # a answered 404 (it is not excluded): ask once
    assert renewal._failover.is_set()
    renewal._failover.clear()  # as `renew` does; its answer kept the ranking
    for n in range(2, 8):
        await routed(f"http://b:2/v/seg-{n}.m4s")  # a keeps answering 404
    assert not renewal._failover.is_set()  # before: each asked again (renewals 1, 2, 4... s apart)
    fetcher.exclude("http://a:1/v/seg-8.m4s")  # now a fails (no connection, 5xx): steering will move
    await routed("http://b:2/v/seg-8.m4s")
    assert renewal._failover.is_set()
    renewal._failover.clear()
    edges = renewal.session.edges
    assert edges is not None and edges.adopt(["http://b:2/m.mpd", "http://a:1/m.mpd"])
    await routed("http://a:1/v/seg-9.m4s")  # a new ranking whose first edge lacks a segment: asks once again
    assert renewal._failover.is_set()
