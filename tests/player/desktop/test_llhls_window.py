"""The window plays our low-latency channel over LL-HLS part by part, as it plays the low-latency
MPD chunk by chunk (test_live_window.py's test, run on the channel's master playlist): the parts are
pieces of one stream to its decoder, so the picture keeps up with the session's playhead at 2 s
latency, and the sound with it (before the decoder was told, frames stopped after the first parts:
each part was decoded and drained as if a segment). `chunk_s` 0.5 in the HLS report means parts
were played (whole segments report none)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import PackagedTitles
from tests.player.desktop import test_live_window


@pytest.mark.desktop
@pytest.mark.slow
def test_window_plays_a_low_latency_hls_channel_part_by_part(packaged: PackagedTitles, display: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    live_app = test_live_window.live_app

    def over_hls(url: str, **kwargs: Any) -> Any:
        assert url.endswith("/live/manifest.mpd")
        return live_app(url.replace("manifest.mpd", "master.m3u8"), **kwargs)

    monkeypatch.setattr(test_live_window, "live_app", over_hls)
    test_live_window.test_window_plays_a_low_latency_channel_chunk_by_chunk(packaged, display)
