"""Where a packaged track presents the demo clip's t=0, measured from its decoded content.

The demo clip (`server.packaging.demo`) flashes a white box and pips on every whole second, in
step. Given an init segment + first media segment(s) of a track, these find the media time at which
the source's t=0 is seen (video: the first flashed frame after the start, less its second) or heard
(audio: the lag that best lines the decoded sound up with the clip's own samples). Comparing the two
for one title gives its A/V start offset as a player presents it: `ignore_editlist=False` is a
player that applies each init segment's edit list (FFmpeg's mov demuxer, Chromium's MSE),
`ignore_editlist=True` one that honours only the media timestamps (hls.js, Safari's HLS); a DASH
player then also subtracts each AdaptationSet's presentationTimeOffset. Used by
tests/server/test_packager_avsync.py and bench/av_start.py (docs/PACKAGING.md, "A/V alignment").
"""

from __future__ import annotations

import io

import av
import numpy as np

from server.packaging.demo import DemoClip

FLASH_S = 1.0  # the flash and pip looked for: the one at 1 s (one at t=0 may lie before the track starts)
_SEARCH_S = 0.3  # audio lags tried: +-this around "the first decoded sample is the source's t=0"


def _open(data: bytes, ignore_editlist: bool) -> av.container.InputContainer:
    options = {"ignore_editlist": "1"} if ignore_editlist else {}
    return av.open(io.BytesIO(data), "r", format="mp4", options=options)


def video_origin_s(data: bytes, *, ignore_editlist: bool = False) -> float:
    """Media time (s) at which the clip's t=0 is shown: the first lit frame past the track's first
    half second, less 1 s. `data`: init + media segment(s) holding at least 1.5 s of video."""
    shown = []
    with _open(data, ignore_editlist) as container:
        for frame in container.decode(container.streams.video[0]):
            luma = frame.to_ndarray(format="gray")
            stroke = max(2, luma.shape[0] // 90)  # as DemoClip.frame_planes draws the flash box
            box = luma[2 * stroke : 12 * stroke, luma.shape[1] - 12 * stroke : luma.shape[1] - 2 * stroke]
            shown.append((float(frame.time), float(box.mean()) > 200))
    if not shown:
        raise ValueError("no video frame decoded")
    shown.sort()
    first = shown[0][0]
    lit = [time_s for time_s, on in shown if time_s > first + 0.5 and on]
    if not lit:
        raise ValueError("no flash found: not the demo clip, or under 1.5 s of it")
    return lit[0] - FLASH_S


def audio_origin_s(data: bytes, clip: DemoClip, *, ignore_editlist: bool = False) -> float:
    """Media time (s) at which the clip's t=0 is heard. `data`: init + media segment(s) holding at
    least 2.4 s of the clip's sound at its sample rate."""
    rate = clip.config.sample_rate_hz
    chunks, first_time = [], None
    with _open(data, ignore_editlist) as container:
        stream = container.streams.audio[0]
        if stream.sample_rate != rate:
            raise ValueError(f"audio at {stream.sample_rate} Hz, the clip's is {rate} Hz")
        for frame in container.decode(stream):
            if first_time is None:
                first_time = float(frame.time)
            chunks.append(frame.to_ndarray().reshape(len(frame.layout.channels), -1)[0])
    if first_time is None:
        raise ValueError("no audio frame decoded")
    decoded = np.concatenate(chunks).astype(np.float64)
    max_lag = int(_SEARCH_S * rate)
    span = slice(int(0.6 * rate), int(2.1 * rate))  # 1.5 s around the pip at 1 s
    if decoded.shape[0] < span.stop + max_lag:
        raise ValueError(f"{decoded.shape[0] / rate:.2f} s of audio decoded; 2.4 s needed")
    reference = clip.audio_samples(0, span.stop)[0].astype(np.float64)[span]
    # Cross-correlation by FFT: scores[k] = sum_i window[i + k] * reference[i], lag = k - max_lag.
    window = decoded[span.start - max_lag : span.stop + max_lag]
    n = 1 << (window.shape[0] + reference.shape[0]).bit_length()
    scores = np.fft.irfft(np.fft.rfft(window, n) * np.conj(np.fft.rfft(reference, n)), n)[: 2 * max_lag + 1]
    lag = int(np.argmax(scores)) - max_lag  # decoded[i + lag] is the source's sample i
    return first_time + lag / rate
