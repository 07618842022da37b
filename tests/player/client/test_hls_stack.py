"""Our own titles over HLS through the whole stack: the playback API lists signed master-playlist URLs
beside the MPDs, the edge serves and caches the playlists like the MPD, and `--protocol hls` plays
the clear and the ClearKey title with every frame decoded and the same ABR, shaper and report."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp

from netsim import synthetic
from player.client.harness import LinkConfig, TitleTarget, play_headless
from player.client.headless import PlayerConfig
from player.media.pipeline import DecodePipeline
from server.formats.hls import PLAYLIST_CONTENT_TYPE
from tests.conftest import CLEAR_TITLE, ENCRYPTED_TITLE, PackagedTitles
from tests.player.conftest import running_stack


def _hls(stack: object, password: str, title: str) -> TitleTarget:
    return TitleTarget(title=title, gateway_url=stack.gateway_url, username="demo", password=password,  # type: ignore[attr-defined]
                       protocol="hls")


async def test_our_titles_play_over_hls_through_the_stack(tmp_path: Path, packaged: PackagedTitles) -> None:
    log = tmp_path / "events.jsonl"
    async with running_stack(tmp_path, packaged.content_root) as (stack, password):
        reports = {}
        for title in (CLEAR_TITLE, ENCRYPTED_TITLE):
            reports[title] = await play_headless(
                _hls(stack, password, title), PlayerConfig(abr="bba", speed=4.0),
                link=LinkConfig(trace=synthetic.constant(3e6, duration_s=600)), log_path=log,
                decoder_factory=lambda source: DecodePipeline(source, mode="all"))
    for title, report in reports.items():
        assert report.error is None, (title, report.error)
        assert report.metrics.segments == 3
        assert report.frames_decoded == packaged.frame_count and report.frames_failed == 0, title
    # start-up counts every step before the first media segment, the init segments included
    assert set(reports[ENCRYPTED_TITLE].bootstrap_s) == {"token_s", "playback_s", "manifest_s", "init_s", "license_s"}
    urls = [json.loads(line).get("url", "") for line in log.read_text().splitlines()]
    assert any("/video/" in u and u.endswith(".m4s") and "/s/" in u for u in urls)


async def test_playback_api_lists_signed_hls_urls_served_with_a_short_ttl(tmp_path: Path,
                                                                         packaged: PackagedTitles) -> None:
    async with running_stack(tmp_path, packaged.content_root) as (stack, password), aiohttp.ClientSession() as http:
        async with http.post(f"{stack.gateway_url}/auth/token", json={"username": "demo", "password": password}) as r:
            token = (await r.json())["access_token"]
        async with http.post(f"{stack.gateway_url}/playback/{CLEAR_TITLE}",
                             headers={"Authorization": f"Bearer {token}"}) as r:
            steering = await r.json()
        assert len(steering["hls_urls"]) == len(steering["manifest_urls"])
        master_url = steering["hls_urls"][0]
        assert master_url == steering["manifest_urls"][0].removesuffix("manifest.mpd") + "master.m3u8"
        async with http.get(master_url) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith(PLAYLIST_CONTENT_TYPE)
            assert r.headers["Cache-Control"] == "max-age=2"
            master = await r.text()
        variant = next(line for line in master.splitlines() if line and not line.startswith("#"))
        async with http.get(master_url.removesuffix("master.m3u8") + variant) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith(PLAYLIST_CONTENT_TYPE)
            media = await r.text()
        segment = next(line for line in media.splitlines() if line.endswith(".m4s"))
        async with http.get(master_url.removesuffix("master.m3u8") + variant.rsplit("/", 1)[0] + "/" + segment) as r:
            assert r.status == 200 and "immutable" in r.headers["Cache-Control"]
        unsigned = master_url.split("/s/", 1)[0] + f"/{CLEAR_TITLE}/master.m3u8"
        async with http.get(unsigned) as r:
            assert r.status == 403  # the playlists are signed like everything else
