"""Every corpus case (tests/interop/corpus.py) through the headless player: plays with no failed
frame, or fails with the expected one-line error; and what the corpus itself must be."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from player.client.mpd import parse_mpd
from tests.interop.corpus import CASES, FLAVOUR, KID, Case
from tests.interop.play import play_case
from tests.interop.server import misbehaving_servers


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_corpus_case_plays_or_fails_clearly(corpus: Path, case: Case) -> None:
    async with misbehaving_servers(corpus) as (server, _):
        outcome = await play_case(case, server)
    assert not outcome.problems, f"{case.name} ({case.what}): {outcome.problems}; {outcome.summary()}"


def test_every_flavour_has_a_case_and_every_case_a_flavour() -> None:
    assert {c.flavour for c in CASES} <= set(FLAVOUR)
    assert set(FLAVOUR) <= {c.name for c in CASES}, "each flavour is played as written at least once"


def test_the_corpus_has_the_layouts_it_claims(corpus: Path) -> None:
    """The packagers wrote what the table says (else a case would test something else)."""
    def text(flavour: str, name: str = "manifest.mpd") -> str:
        return (corpus / flavour / name).read_text()

    assert "$Number%05d$" in text("ffmpeg-number") and "SegmentTimeline" not in text("ffmpeg-number")
    assert "SegmentTimeline" in text("ffmpeg-timeline") and "$Time$" in text("ffmpeg-time")
    assert "SegmentURL" in text("ffmpeg-list") and "mediaRange" in text("ffmpeg-single-file")
    assert "$Time$" in text("shaka-time") and "SegmentTimeline" in text("shaka-timeline")
    assert "indexRange" in text("shaka-segmentbase") and "SegmentURL" in text("shaka-segmentlist")
    assert 'value="cenc"' in text("shaka-cenc") and 'value="cbcs"' in text("shaka-cbcs")
    assert text("shaka-multiperiod").count("<Period") == 2
    stitched = parse_mpd(text("stitched-multiperiod"), "http://h/stitched-multiperiod/manifest.mpd")
    codecs = [(r.codecs or "")[:4] for p in stitched.periods for a in p.adaptation_sets for r in a.representations]
    assert codecs == ["hvc1", "mp4a", "avc1", "avc1", "mp4a"], codecs
    rates = [r.audio_sampling_rate_hz for p in stitched.periods if p.audio for r in p.audio.representations]
    assert rates == [44100, 48000]
    for flavour in ("ffmpeg-hls-fmp4", "ffmpeg-hls-ts", "shaka-hls-fmp4", "shaka-hls-ts"):
        master = text(flavour, "master.m3u8")
        assert master.startswith("#EXTM3U") and "#EXT-X-STREAM-INF" in master
    assert any(p.suffix == ".ts" for p in (corpus / "ffmpeg-hls-ts").rglob("*"))
    assert any(p.suffix == ".ts" for p in (corpus / "shaka-hls-ts").rglob("*"))


@pytest.mark.parametrize("flavour", ["shaka-cenc", "shaka-cbcs", "shaka-segmentbase-cenc"])
async def test_a_wrong_key_on_foreign_content_is_failed_frames_not_a_crash(corpus: Path, flavour: str) -> None:
    case = replace(next(c for c in CASES if c.name == flavour), keys={KID: "00" * 16})
    async with misbehaving_servers(corpus) as (server, _):
        outcome = await play_case(case, server)
    report = outcome.report
    assert report is not None and report.error is None, outcome.error
    assert report.metrics.segments == 4
    # Garbage from a wrong key now and then decodes into a frame FFmpeg does not flag.
    assert report.frames_failed >= 0.9 * case.frames and report.frames_decoded + report.frames_failed >= case.frames
    assert report.decode_errors and all("key" in e or "decrypt" in e for e in report.decode_errors)


async def test_an_init_segment_hanging_before_failover_counts_in_the_startup(corpus: Path) -> None:
    # Issue 15: an init fetch hanging 8 s before failover used to report startup 0.002 s. Here the
    # first CDN never answers and the fetcher gives up after FETCH's 1 s.
    case = next(c for c in CASES if c.name == "failover-stall-cdn")
    async with misbehaving_servers(corpus) as (server, _):
        outcome = await play_case(case, server)
    report = outcome.report
    assert report is not None and report.error is None and report.frames_failed == 0
    init_s = report.bootstrap_s["init_s"]
    assert init_s >= 0.9
    assert report.metrics.startup_s >= init_s and report.first_frame_s is not None and report.first_frame_s >= init_s


async def test_segment_index_time_is_a_bootstrap_step_of_its_own(corpus: Path) -> None:
    case = next(c for c in CASES if c.name == "shaka-segmentbase")
    async with misbehaving_servers(corpus) as (server, _):
        outcome = await play_case(case, server)
    report = outcome.report
    assert report is not None and report.error is None
    assert {"manifest_s", "sidx_s", "init_s"} <= set(report.bootstrap_s)
    assert report.metrics.startup_s >= report.bootstrap_s["sidx_s"] + report.bootstrap_s["init_s"]
