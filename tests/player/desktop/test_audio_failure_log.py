"""Audio that fails reaches the `--log` event stream, not only the overlay, summary and JSON: each
audio segment the window's decoder could not use becomes one `audio_failure` event (rendition,
0-based segment, reason) while the window plays. (A live window with damaged audio segments, with
its log: test_live_audio.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp

from player.client.bootstrap import PlaybackSource
from player.client.eventlog import EventLog
from player.client.fetch import Fetcher
from player.client.mpd import parse_mpd
from player.desktop.player_thread import log_audio_failures
from player.media.avsync import DesktopDecoder, FrameQueue, PcmBuffer
from tests.conftest import CLEAR_TITLE, PackagedTitles
from tests.player.conftest import serving_origin


async def test_each_audio_segment_that_fails_is_one_audio_failure_event(packaged: PackagedTitles,
                                                                       tmp_path: Path) -> None:
    title_dir = packaged.content_root / CLEAR_TITLE
    manifest = parse_mpd((title_dir / "manifest.mpd").read_bytes(), "http://x/manifest.mpd")
    source = PlaybackSource(title=CLEAR_TITLE, manifest=manifest, manifest_urls=("http://x/manifest.mpd",),
                            session_id="s")
    audio = manifest.audio.representations[0]  # type: ignore[union-attr]
    decoder = DesktopDecoder(source, FrameQueue(4), PcmBuffer(), texture_size_px=(64, 36))
    async with serving_origin(packaged.content_root) as origin, aiohttp.ClientSession() as http:
        await decoder.start({audio.id: ([f"{origin}/{CLEAR_TITLE}/audio/{audio.id}/init.mp4"], {})}, Fetcher(http),
                            continuous=False)
    segment = (title_dir / "audio" / audio.id / "1.m4s").read_bytes()
    mdat = segment.find(b"mdat") + 4
    log_path = tmp_path / "events.jsonl"
    with decoder, EventLog(log_path) as log:
        decoder.submit("audio", audio.id, 0, segment)  # plays
        decoder.submit("audio", audio.id, 1, segment[:mdat] + bytes(len(segment) - mdat))  # samples zeroed
        decoder.submit("audio", audio.id, 2, b"not a segment")
        await decoder.finish()
        logged = log_audio_failures(decoder.audio_failures(), 0, log, lambda: 12.5)
        assert log_audio_failures(decoder.audio_failures(), logged, log, lambda: 13.0) == logged == 2  # once each
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [(e["t"], e["type"], e["rendition"], e["segment"]) for e in lines] == [
        (12.5, "audio_failure", audio.id, 1), (12.5, "audio_failure", audio.id, 2)]
    assert all(e["reason"] for e in lines) and "decode" in lines[0]["reason"], lines
    assert len(decoder.audio_errors()) == 2  # the overlay's and summary's text says the same
