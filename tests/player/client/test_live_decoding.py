"""A low-latency live channel's chunks reach the decoder as pieces of one stream, over DASH (the
MPD's `availabilityTimeOffset` chunks) and LL-HLS (parts) alike: the live player says so through the
`Decoder` protocol's `start(..., continuous=)`, decided from its schedule, and the decoder keeps its
reference frames from one chunk to the next (draining after each, as after a segment, loses them:
the chunks after the first of a segment fail). A channel of whole segments is not continuous."""

from __future__ import annotations

import pytest

from netsim.sources import open_trace
from player.client.bootstrap import PlaybackSource
from player.client.decoding import InitUrls
from player.client.fetch import Fetcher
from player.client.harness import LinkConfig, UrlTarget, play_headless
from player.client.headless import PlayerConfig
from player.client.liveplay import LivePlayConfig
from player.media.pipeline import DecodePipeline
from tests.player.client.conftest import Origin


class _Told(DecodePipeline):
    """The headless decoder, keeping what `start` was told."""

    told: list[bool]

    async def start(self, init_urls: InitUrls, fetcher: Fetcher, *, continuous: bool) -> None:
        self.told = [*getattr(self, "told", []), continuous]
        await super().start(init_urls, fetcher, continuous=continuous)


@pytest.mark.parametrize(("path", "low_latency"), [("manifest.mpd", True), ("master.m3u8", True),
                                                   ("manifest.mpd", False)],
                         ids=["dash-chunks", "llhls-parts", "dash-segments"])
async def test_live_chunks_decode_as_one_stream(live_origin: Origin, path: str, low_latency: bool) -> None:
    url, _ = await live_origin(speed=10.0, low_latency=low_latency)
    decoders: list[_Told] = []

    def factory(source: PlaybackSource) -> _Told:
        decoders.append(_Told(source, mode="all"))
        return decoders[-1]

    # The window's path (a live channel decoded when `on_live_player` is set), at 10x: about 2 s of wall time.
    report = await play_headless(UrlTarget(url=f"{url}/live/{path}"),
                                 PlayerConfig(abr="dynamic", decode="none", speed=10.0, audio=False),
                                 link=LinkConfig(trace=open_trace("constant:5e6"), rtt_ms=20),
                                 decoder_factory=factory, on_live_player=lambda player: None,
                                 live=LivePlayConfig(duration_s=20.0, target_latency_s=None if low_latency else 8.0))
    assert report.error is None, report.error
    assert report.live is not None and (report.live["chunk_s"] == 0.5) == low_latency, report.live
    decoder = decoders[0]
    assert decoder.told == [low_latency]
    summary = decoder._summary()  # closed by the harness: what it decoded by then
    assert summary.segments >= (8 if low_latency else 2), summary  # chunk by chunk: several per segment
    assert summary.frames_decoded >= 12 * summary.segments // (8 if low_latency else 1), summary
    assert summary.failed_segments == 0 and summary.frames_failed == 0, summary
