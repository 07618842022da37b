"""A session that outlives its signed URLs and its access token: the player renews both as it plays
(player/client/renewal.py), and without renewing the same session fails."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest

from player.client.bootstrap import bootstrap_stack
from player.client.eventlog import EventLog
from player.client.fetch import Fetcher
from player.client.harness import TitleTarget, play_headless
from player.client.headless import HeadlessPlayer, PlayerConfig
from player.client.renewal import SessionRenewal, keep_alive
from player.session import SessionConfig
from tests.conftest import CLEAR_TITLE, PackagedTitles
from tests.player.conftest import running_stack

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
