"""Audio that fails reaches the `--log` event stream, not only the overlay, summary and JSON: each
audio segment the window's decoder could not use becomes one `audio_failure` event (rendition,
0-based segment, reason) while the window plays, and those found as the session ends too (the
decoder's `on_settled`, before the log closes). (A live window with damaged audio segments, with
its log: test_live_audio.py.)"""

from __future__ import annotations

import asyncio
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
        logged = log_audio_failures(decoder.audio_log, 0, log, lambda: 12.5)
        assert log_audio_failures(decoder.audio_log, logged, log, lambda: 13.0) == logged == 2  # once each
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [(e["t"], e["type"], e["rendition"], e["segment"]) for e in lines] == [
        (12.5, "audio_failure", audio.id, 1), (12.5, "audio_failure", audio.id, 2)]
    assert all(e["reason"] for e in lines) and "decode" in lines[0]["reason"], lines
    assert len(decoder.audio_errors()) == 2  # the overlay's and summary's text says the same


async def test_an_audio_failure_found_as_the_session_ends_is_logged(packaged: PackagedTitles, tmp_path: Path) -> None:
    """The window logs failures every 50 ms; one found after its last look (a live session's last
    segment, decoded as the decoder closes; a VOD's, as `finish` returns) is logged by `on_settled`."""
    title_dir = packaged.content_root / CLEAR_TITLE
    manifest = parse_mpd((title_dir / "manifest.mpd").read_bytes(), "http://x/manifest.mpd")
    source = PlaybackSource(title=CLEAR_TITLE, manifest=manifest, manifest_urls=("http://x/manifest.mpd",),
                            session_id="s")
    audio = manifest.audio.representations[0]  # type: ignore[union-attr]
    log_path = tmp_path / "events.jsonl"
    for ending in ("close", "finish"):
        logged = [0]
        with EventLog(log_path) as log:
            def settled() -> None:
                logged[0] = log_audio_failures(decoder.audio_log, logged[0], log, lambda: 30.0)

            decoder = DesktopDecoder(source, FrameQueue(4), PcmBuffer(), texture_size_px=(64, 36), on_settled=settled)
            decoder.submit("audio", audio.id, 7, b"not a segment")  # no init segment fetched: fails at once
            if ending == "close":
                while not decoder.audio_log.count:  # failed after the window's last look
                    await asyncio.sleep(0.001)
                decoder.close()  # a live session: never finished
            else:
                await decoder.finish()
                decoder.close()
        events = [json.loads(line) for line in log_path.read_text().splitlines()]
        assert [(e["type"], e["segment"]) for e in events] == [("audio_failure", 7)], (ending, events)
