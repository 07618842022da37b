"""Every session that starts decode threads stops them: a live session never calls the decoder's
`finish`, so the harness closes the decoder when any session ends (a long-running window that joins
and leaves channels would otherwise pile up threads, one of them blocked on a full frame queue)."""

from __future__ import annotations

import threading

from netsim.sources import open_trace
from player.client.bootstrap import PlaybackSource
from player.client.harness import LinkConfig, UrlTarget, play_headless
from player.client.headless import PlayerConfig
from player.client.liveplay import LivePlayConfig
from player.media.avsync import DesktopDecoder, FrameQueue, PcmBuffer
from tests.player.client.conftest import Origin


def _decode_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith(("abrkit-decode", "abrkit-audio"))}


async def test_a_live_window_session_stops_and_joins_its_decode_threads(live_origin: Origin) -> None:
    url, _ = await live_origin(speed=10.0)  # the channel at the player's speed: 2.4 s of wall time
    before = _decode_threads()
    frames = FrameQueue(capacity_frames=2)  # no window draws: the video worker soon waits for room
    decoders: list[DesktopDecoder] = []

    def window_decoder(source: PlaybackSource) -> DesktopDecoder:
        decoders.append(DesktopDecoder(source, frames, PcmBuffer(), texture_size_px=(64, 36)))
        return decoders[-1]

    # The window's path: a live channel decoded by the window's decoder (`on_live_player` set).
    report = await play_headless(UrlTarget(url=f"{url}/live/manifest.mpd"),
                                 PlayerConfig(abr="dynamic", decode="none", speed=10.0),
                                 link=LinkConfig(trace=open_trace("constant:5e6"), rtt_ms=40),
                                 decoder_factory=window_decoder, on_live_player=lambda player: None,
                                 live=LivePlayConfig(duration_s=24.0))
    assert report.error is None, report.error
    assert decoders and decoders[0]._segments >= 1  # it did decode (and so started its workers)
    assert _decode_threads() == before, [t.name for t in _decode_threads() - before]
