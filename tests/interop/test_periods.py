"""Multi-period DASH through the headless player (issue 15.3): every Period plays in order with its
own ladder and codecs, the report covers them all, and what cannot be played is a clear error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from player.client.eventlog import EventLog
from player.client.harness import UrlTarget, pipeline_factory, play_headless
from player.client.headless import PlaybackError, PlayerConfig
from tests.interop.corpus import AD_S, FPS
from tests.interop.play import FETCH
from tests.interop.server import misbehaving_servers

AD_FRAMES = 25 * AD_S  # the ad is 25 fps


async def _play(corpus: Path, path: str, **config: object):  # noqa: ANN202
    log = EventLog()
    async with misbehaving_servers(corpus) as (server, _):
        report = await play_headless(UrlTarget(url=f"{server.origin}/{path}"), PlayerConfig(abr="bba", **config),
                                     fetch=FETCH, events=log, decoder_factory=pipeline_factory("all"))
    return report, log


def _variant(corpus: Path, name: str, old: str, new: str) -> str:
    mpd = corpus / "stitched-multiperiod" / "manifest.mpd"
    text = mpd.read_text()
    assert old in text
    (mpd.parent / name).write_text(text.replace(old, new))
    return f"plain/stitched-multiperiod/{name}"


async def test_an_ad_period_and_the_programme_play_as_one_session(corpus: Path) -> None:
    report, log = await _play(corpus, "plain/stitched-multiperiod/manifest.mpd")
    assert report.error is None and report.periods == 2
    assert report.metrics.segments == AD_S + 4 and [r.segment_index for r in report.records] == list(range(6))
    assert report.frames_decoded == AD_FRAMES + 4 * FPS and report.frames_failed == 0
    # Each Period's own ladder: the ad has one HEVC rendition, the programme two H.264 ones.
    assert {r.bitrate_bps for r in report.records[:AD_S]}.isdisjoint(r.bitrate_bps for r in report.records[AD_S:])
    # One startup (the ad's first segment), no stall at the Period boundary on loopback.
    assert report.metrics.rebuffer_count == 0 and log.of_type("play") and len(log.of_type("play")) == 1
    starts, periods, ends = log.of_type("start"), log.of_type("period"), log.of_type("end")
    assert len(starts) == 1 and starts[0]["periods"] == 2 and starts[0]["segments"] == 6
    assert [(p["index"], p["id"]) for p in periods] == [(0, "ad"), (1, "main")]
    assert len(ends) == 1 and ends[0]["segments"] == 6 and ends[0]["frames_decoded"] == report.frames_decoded
    downloads = log.of_type("download")
    assert [d["t"] for d in downloads] == sorted(d["t"] for d in downloads)  # one clock across Periods


async def test_max_segments_counts_across_periods(corpus: Path) -> None:
    report, _ = await _play(corpus, "plain/stitched-multiperiod/manifest.mpd", max_segments=3)
    assert report.error is None and report.periods == 2 and report.metrics.segments == 3
    assert report.frames_decoded == AD_FRAMES + FPS and report.frames_failed == 0


async def test_a_failure_in_a_later_period_names_it_and_keeps_what_played(corpus: Path) -> None:
    path = _variant(corpus, "main-missing.mpd", "<BaseURL>main/</BaseURL>",
                    "<BaseURL>/missing/stitched-multiperiod/main/</BaseURL>")
    report, log = await _play(corpus, path)
    # the audio and video pipelines run side by side: whichever reaches the missing Period first names it
    assert report.error is not None and re.match(r"Period 2 \(id 'main'\): (audio )?segment 0 could not be fetched",
                                                 report.error), report.error
    assert report.periods == 2 and report.metrics.segments == AD_S
    assert report.frames_decoded == AD_FRAMES  # the ad decoded; the decoder was finished, not left running
    assert len(log.of_type("end")) == 1


async def test_a_period_without_video_is_refused_before_playback(corpus: Path) -> None:
    text = (corpus / "stitched-multiperiod" / "manifest.mpd").read_text()
    main = text.index('<Period id="main"')
    video_start = text.index('<AdaptationSet', main)
    video_end = text.index('</AdaptationSet>', video_start) + len('</AdaptationSet>')
    (corpus / "stitched-multiperiod" / "audio-only-main.mpd").write_text(text[:video_start] + text[video_end:])
    with pytest.raises(PlaybackError, match=r"Period 2 \(id 'main'\) has no video \(audio only\)"):
        await _play(corpus, "plain/stitched-multiperiod/audio-only-main.mpd")
