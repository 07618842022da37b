"""Decoding never crashes on foreign content: audio that changes format mid-stream, frames a consumer
refuses, and any error inside the decode worker become failed frames with the reason (issue 15.7)."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import av
import numpy as np
import pytest

from player.client.bootstrap import PlaybackSource
from player.client.fetch import Fetcher
from player.client.mpd import parse_mpd
from player.media.decoder import AudioDecoder, AudioOutputFormat, DecodedFrame, FrameRejected, SegmentDecoder
from player.media.pipeline import DecodePipeline
from tests.conftest import CLEAR_TITLE, ENCRYPTED_TITLE, PackagedTitles
from tests.player.conftest import serving_origin

FPS = 24


def _frame(rate_hz: int, layout: str, sample_format: str) -> av.AudioFrame:
    channels = len(av.AudioLayout(layout).channels)
    planar = av.AudioFormat(sample_format).is_planar
    shape = (channels, 1024) if planar else (1, 1024 * channels)
    dtype = {"fltp": np.float32, "s16": np.int16, "s16p": np.int16, "flt": np.float32}[sample_format]
    samples = (np.sin(np.arange(shape[0] * shape[1]) / 10.0) * (0.5 if dtype == np.float32 else 8000)).astype(dtype)
    frame = av.AudioFrame.from_ndarray(samples.reshape(shape), format=sample_format, layout=layout)
    frame.sample_rate = rate_hz
    return frame


def test_audio_that_changes_format_mid_stream_gets_a_new_resampler(packaged: PackagedTitles) -> None:
    # "Frame does not match AudioResampler setup" was a crash: a resampler takes one input format.
    init = (packaged.clear.title_dir / "audio" / "a128k" / "init.mp4").read_bytes()
    decoder = AudioDecoder(init, name="a128k", output=AudioOutputFormat())
    outputs = [decoder.resample(_frame(*spec)) for spec in ((48_000, "stereo", "fltp"), (44_100, "mono", "s16"),
                                                            (22_050, "5.1", "flt"), (48_000, "stereo", "fltp"))]
    flushed = [f for out in outputs for f in out]
    assert flushed, "no PCM came out"
    assert {(f.sample_rate, f.layout.name, f.format.name) for f in flushed} == {(48_000, "stereo", "s16")}


def test_a_frame_the_consumer_refuses_is_a_failed_frame_with_the_reason(packaged: PackagedTitles) -> None:
    title = packaged.clear.title_dir
    decoder = SegmentDecoder((title / "video" / "v216p" / "init.mp4").read_bytes(), name="v216p")
    seen = []

    def refuse_odd(frame: DecodedFrame) -> None:
        seen.append(frame)
        if len(seen) % 2:
            raise FrameRejected("the window cannot show this frame")

    result = decoder.decode((title / "video" / "v216p" / "1.m4s").read_bytes(), on_frame=refuse_odd, segment_number=1)
    assert result.frames_expected == len(seen) > 0
    assert result.frames_decoded == len(seen) // 2 and result.frames_failed == len(seen) - len(seen) // 2
    assert result.first_error == "the window cannot show this frame" and not result.ok


class _Exploding(DecodePipeline):
    """A pipeline whose decoding raises what no decoder is meant to raise (a bug, or a library
    error on content nobody tested)."""

    def _decode_segment(self, decoder, kind, rep_id, index, data, mode, drain):  # noqa: ANN001, ANN202
        if index == 1:
            raise RuntimeError("Frame does not match AudioResampler setup")
        return super()._decode_segment(decoder, kind, rep_id, index, data, mode, drain)


@pytest.mark.parametrize("pipeline", ["bad key", "exploding decoder"])
async def test_errors_inside_the_decode_worker_fail_frames_and_never_end_playback(packaged: PackagedTitles,
                                                                                 pipeline: str) -> None:
    title = ENCRYPTED_TITLE if pipeline == "bad key" else CLEAR_TITLE
    title_dir = packaged.content_root / title
    manifest = parse_mpd((title_dir / "manifest.mpd").read_bytes(), "http://x/manifest.mpd")
    keys = {}
    if pipeline == "bad key":  # a key the decoder refuses outright (ValueError): as from a broken license server
        keys = {k["kid"]: "zz" * 16 for k in json.loads((title_dir / "keys.json").read_text())["keys"]}
    source = PlaybackSource(title=title, manifest=manifest, manifest_urls=("http://x/manifest.mpd",), session_id="s",
                            keys=keys)
    decoder = DecodePipeline(source) if pipeline == "bad key" else _Exploding(source)
    rep = manifest.video.representations[0]  # type: ignore[union-attr]
    async with serving_origin(packaged.content_root) as origin, aiohttp.ClientSession() as http:
        await decoder.start({rep.id: ([f"{origin}/{title}/video/{rep.id}/init.mp4"], {})}, Fetcher(http),
                            continuous=False)
    segments = sorted((title_dir / "video" / rep.id).glob("[0-9]*.m4s"), key=lambda p: int(p.stem))
    for index, path in enumerate(segments):
        decoder.submit("video", rep.id, index, Path(path).read_bytes())
    summary = await decoder.finish()  # raised before: the worker's exception surfaced here
    frames = packaged.frame_count
    if pipeline == "bad key":
        assert summary.frames_decoded == 0 and summary.frames_failed == frames
        assert summary.failed_segments == len(segments)
        assert all("ValueError" in e and "key_hex must be 32 hex digits" in e for e in summary.errors)
        assert not any("zz" * 16 in e for e in summary.errors)
    else:
        assert summary.failed_segments == 1 and summary.frames_failed == 4 * FPS
        assert summary.frames_decoded == frames - 4 * FPS
        assert summary.errors == ("video segment 1 of v216p: RuntimeError: Frame does not match AudioResampler setup",)
