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
