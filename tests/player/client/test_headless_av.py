"""Audio and video on their own pipelines, against FFmpeg DASH whose audio segments (2 s) are cut
differently from its video segments (4 s), served by a plain static server through the shaper."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest
from aiohttp import web

from netsim import synthetic
from player.client.eventlog import EventLog
from player.client.harness import LinkConfig, UrlTarget, play_headless
from player.client.headless import PlaybackReport, PlayerConfig
from player.media.pipeline import DecodePipeline
from tests.player.avcontent import AUDIO_SEGMENT_S, FRAME_RATE, VIDEO_SEGMENT_S, write_split_av_dash
from tests.player.conftest import serving_app

DURATION_S = 12.0


@pytest.fixture(scope="module")
def split_title(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("split-av")
    write_split_av_dash(root / "split", duration_s=DURATION_S)
    return root


def _serving(root: Path) -> contextlib.AbstractAsyncContextManager[str]:
    app = web.Application()
    app.router.add_static("/", root)
    return serving_app(app)


async def _play(root: Path, rate_bps: float, log: EventLog) -> PlaybackReport:
    async with _serving(root) as server:
        return await play_headless(UrlTarget(url=f"{server}/split/manifest.mpd"), PlayerConfig(abr="rate", speed=2.0, buffer_sample_s=0.05),
                                   link=LinkConfig(trace=synthetic.constant(rate_bps, duration_s=600)), events=log,
                                   decoder_factory=lambda source: DecodePipeline(source, mode="all"))


async def test_audio_cut_apart_from_the_video_plays_on_its_own_pipeline_without_phantom_stalls(
        split_title: Path) -> None:
    log = EventLog()
    report = await _play(split_title, 3e6, log)
    assert report.error is None
    assert report.frames_decoded == DURATION_S * FRAME_RATE and report.frames_failed == 0
    video_count, audio_count = int(DURATION_S / VIDEO_SEGMENT_S), int(DURATION_S / AUDIO_SEGMENT_S)
    assert [r.segment_index for r in report.records] == list(range(video_count))
    assert [r.segment_index for r in report.audio_records] == list(range(audio_count))
    assert report.requests_by_media == {"video": video_count, "audio": audio_count, "other": 4}  # + 4 inits
    # Each media type's buffer grows by its own segments: 4 s for video, about 2 s for audio.
    video_steps = [e["buffer_s"] for e in log.events if e["type"] == "download" and e["media"] == "video"]
    audio_steps = [e["buffer_s"] for e in log.events if e["type"] == "download" and e["media"] == "audio"]
    assert len(video_steps) == video_count and len(audio_steps) == audio_count
    assert all(abs(r.buffer_after_s - r.buffer_before_s) <= AUDIO_SEGMENT_S + 0.05 for r in report.audio_records)
    samples = log.of_type("buffer")
    assert all({"video_s", "audio_s"} <= e.keys() for e in samples)
    assert any(abs(e["video_s"] - e["audio_s"]) > 1.0 for e in samples), "the buffers moved in lock-step"
    # The two pipelines were on the wire at the same time.
    assert any(a.request_time_s < v.request_time_s + v.download_s and v.request_time_s < a.request_time_s + a.download_s
               for a in report.audio_records for v in report.records)
    # Audio ends 11 ms before the video (AAC frames): the video plays out, no stall is reported.
    assert report.metrics.rebuffer_count == 0 and not log.of_type("stall")
    media = report.as_dict()["media"]
    assert media["audio"]["segments"] == audio_count and media["video"]["requests"] == video_count


@pytest.mark.parametrize(("rate_bps", "top_audio"), [(4e6, True), (0.5e6, False)])
async def test_the_audio_rendition_follows_what_the_link_leaves_beside_the_video(
        split_title: Path, rate_bps: float, top_audio: bool) -> None:
    log = EventLog()
    report = await _play(split_title, rate_bps, log)
    assert report.error is None
    renditions = [r.quality for r in report.audio_records]
    assert renditions[0] == 0  # no estimate before the first video segment is in
    assert (1 in renditions) == top_audio, [e["reason"] for e in log.of_type("decision") if e["media"] == "audio"]


async def test_a_missing_audio_segment_is_a_clear_error(split_title: Path, tmp_path: Path) -> None:
    root = tmp_path / "content"
    shutil.copytree(split_title / "split", root / "split")
    for stream in (2, 3):  # both audio renditions
        (root / "split" / f"chunk-stream{stream}-00003.m4s").unlink()
    log = EventLog()
    report = await _play(root, 3e6, log)
    assert report.error is not None and report.error.startswith("audio segment 2 could not be fetched")
    assert "404" in report.error
