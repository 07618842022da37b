"""The `Decoder` protocol: light to import, and implemented by both decoders with its exact methods."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
from types import SimpleNamespace

import pytest

from player.client.decoding import KEPT_ERRORS, Decoder, ErrorLog, SegmentFailure
from player.client.harness import pipeline_factory
from player.client.periods import _PeriodDecoder
from player.media.avsync import DesktopDecoder
from player.media.pipeline import DecodePipeline
from player.research.crowdclient import InitSegmentsOnly
from tests.conftest import REPO_ROOT


def test_the_protocol_module_loads_no_pyav() -> None:
    code = "import sys, player.client.decoding; assert 'av' not in sys.modules, 'PyAV was imported'"
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)


@pytest.mark.parametrize("implementation", [DecodePipeline, DesktopDecoder, InitSegmentsOnly, _PeriodDecoder])
@pytest.mark.parametrize("method", ["start", "submit", "new_errors", "finish", "close"])
def test_decoders_implement_the_protocol_methods(implementation: type, method: str) -> None:
    wanted, got = getattr(Decoder, method), getattr(implementation, method)
    assert list(inspect.signature(got).parameters) == list(inspect.signature(wanted).parameters)
    assert inspect.iscoroutinefunction(got) == inspect.iscoroutinefunction(wanted)


class _NoRenditions:
    periods: tuple[object, ...] = ()

    def adaptation_sets(self) -> list[object]:
        return []


@pytest.mark.parametrize("mode", ["all", "keyframes"])
def test_pipeline_factory_builds_a_pipeline_decoding_the_mode(mode: str) -> None:
    factory = pipeline_factory(mode)
    assert factory is not None
    source = SimpleNamespace(manifest=_NoRenditions(), keys={})
    decoder = factory(source)  # type: ignore[arg-type]
    assert isinstance(decoder, DecodePipeline) and decoder.mode == mode
    asyncio.run(decoder.finish())  # nothing submitted: an empty summary, the worker shut down


def test_pipeline_factory_decodes_nothing_for_mode_none() -> None:
    assert pipeline_factory("none") is None


def test_the_error_log_keeps_the_first_and_last_errors_and_the_exact_count() -> None:
    log = ErrorLog(keep=3)
    for n in range(10):
        log.add(f"e{n}", SegmentFailure(media="audio", rendition="a", segment_index=n, reason="r") if n % 2 else None)
    assert log.count == 10 and log.left_out == 4
    assert log.messages() == ("e0", "e1", "e2", "e7", "e8", "e9")
    assert [f.segment_index for f in log.failures()] == [1, 7, 9]
    new, count, missed = log.since(2)
    assert [m for m, _ in new] == ["e2", "e7", "e8", "e9"] and count == 10 and missed == 4
    assert log.since(10) == ([], 10, 0)
    # One polling reader gets each once; where it fell behind the kept ones, a line says how many it missed.
    assert log.take_new() == ("e0", "e1", "e2", "(4 more decode errors, not kept)", "e7", "e8", "e9")
    assert log.take_new() == ()
    log.add("e10")
    assert log.take_new() == ("e10",)
    with pytest.raises(ValueError, match="keep must be >= 1"):
        ErrorLog(keep=0)


def test_a_stream_that_keeps_failing_keeps_exact_counts_in_bounded_memory() -> None:
    """Every segment of a rendition without its init segment fails: counted, one error each, but only
    the first and last `KEPT_ERRORS` messages and records are held (a live channel fails for hours)."""
    source = SimpleNamespace(manifest=_NoRenditions(), keys={})
    decoder = DecodePipeline(source)  # type: ignore[arg-type]
    segments = 3 * KEPT_ERRORS + 7
    for index in range(segments):
        decoder.submit("audio" if index % 2 else "video", "r1", index, b"not a segment")
    summary = asyncio.run(decoder.finish())
    assert summary.failed_segments == summary.segments == summary.error_count == segments
    assert len(summary.errors) == 2 * KEPT_ERRORS and summary.errors_left_out == segments - 2 * KEPT_ERRORS
    assert summary.errors[0] == "video segment 0 of r1: no init segment for r1"
    assert summary.errors[-1] == f"video segment {segments - 1} of r1: no init segment for r1"
    assert len(decoder.errors.failures()) == 2 * KEPT_ERRORS
    assert summary.frames_failed >= segments // 2  # the video segments' frames: counted, not kept


class _Chunked(DecodePipeline):
    """A pipeline whose decoder is a script: each submission's `data` says (frames expected, decoded)."""

    def _decoder(self, kind, rep_id):  # noqa: ANN001, ANN202
        return None

    def _decode_segment(self, decoder, kind, rep_id, index, data, mode, drain):  # noqa: ANN001, ANN202
        expected, decoded = data
        self.drains.append(drain)
        return SimpleNamespace(frames_expected=expected, frames_decoded=decoded,
                               frames_failed=max(0, expected - decoded), first_frame_s=None, decode_s=0.0)


def test_frames_a_chunk_holds_back_fail_only_if_its_segments_end_does_not_bring_them_out() -> None:
    decoder = _Chunked(SimpleNamespace(manifest=_NoRenditions(), keys={}))  # type: ignore[arg-type]
    decoder.drains = []  # type: ignore[attr-defined]
    decoder.continuous = True  # as `start(..., continuous=True)` sets it
    # Segment 0: 2 frames held back by the first chunk come out with the last (drained) one.
    # Segment 1: its last chunk leaves 3 missing: those failed.
    for index, chunks in enumerate([[(12, 10), (12, 12), (12, 14)], [(12, 9), (12, 12), (12, 12)]]):
        for n, counts in enumerate(chunks):
            decoder.submit("video", "v", index, counts, ends_segment=n == len(chunks) - 1)  # type: ignore[arg-type]
    summary = asyncio.run(decoder.finish())
    assert decoder.drains == [False, False, True] * 2  # type: ignore[attr-defined]
    assert (summary.frames_decoded, summary.frames_failed) == (69, 3)


def test_a_seek_forgets_the_frames_chunks_held_back_they_are_not_failures() -> None:
    from player.media.avsync import FrameQueue, PcmBuffer

    class ChunkedWindow(_Chunked, DesktopDecoder):
        pass

    decoder = ChunkedWindow(SimpleNamespace(manifest=_NoRenditions(), keys={}), FrameQueue(4), PcmBuffer(),  # type: ignore[arg-type]
                            texture_size_px=(64, 36))
    decoder.drains = []  # type: ignore[attr-defined]
    decoder.continuous = True
    decoder.submit("video", "v", 3, (12, 10), ends_segment=False)  # type: ignore[arg-type]  # 2 held back
    decoder._futures[-1].result()
    decoder.flush(40.0)  # a seek to live: the decoders are reset, what they held is gone
    decoder.submit("video", "v", 10, (12, 12), ends_segment=True)  # type: ignore[arg-type]
    summary = asyncio.run(decoder.finish())
    assert (summary.frames_decoded, summary.frames_failed) == (22, 0)
