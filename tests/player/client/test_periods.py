"""`play_periods` keeps session time on the fetcher's clock (in emulation a shaper's warp clock, which
lags loop time by the server time it left out; on a shared link by every player's)."""

from __future__ import annotations

import time

import aiohttp

from player.client.bootstrap import bootstrap_url
from player.client.eventlog import EventLog
from player.client.fetch import Fetcher
from player.client.headless import PlayerConfig
from player.client.periods import play_periods
from tests.conftest import CLEAR_TITLE, PackagedTitles
from tests.player.conftest import serving_origin

LAG_S = 1000.0  # how far the fetcher's clock is behind loop time when the session starts


async def test_session_time_counts_on_the_fetchers_clock(packaged: PackagedTitles) -> None:
    log = EventLog()
    async with serving_origin(packaged.content_root) as origin, aiohttp.ClientSession() as http:
        fetcher = Fetcher(http, clock=lambda: time.monotonic() - LAG_S)
        source = await bootstrap_url(fetcher, f"{origin}/{CLEAR_TITLE}/manifest.mpd")
        started = time.monotonic()
        report = await play_periods(source, PlayerConfig(abr="bba", decode="none"), fetcher, events=log, decoder=None)
        took_s = time.monotonic() - started
    # Session time 0 lies on the fetcher's clock too: taken from loop time, every download would end
    # LAG_S seconds before the session began ("time went backwards").
    assert report.error is None and report.metrics.segments == 3
    times = [e["t"] for e in log.events]
    assert times and min(times) >= 0.0 and max(times) <= took_s + 5.0
