"""Audio at a playback rate, pitch kept: a streaming WSOLA time-stretcher reading a `PcmBuffer`.

A live session steers latency with the playback rate (0.95x-1.05x). Browsers play audio at a
`playbackRate` with its pitch kept (`preservesPitch` is true by default; Chromium time-stretches with
WSOLA in its `AudioRendererAlgorithm`), which is what dash.js and Shaka rely on when they catch up by
rate, so the window does the same rather than resampling (a 5% resample is almost a semitone sharp).

WSOLA (Verhelst and Roelands, ICASSP 1993): output is built hop by hop from Hann-windowed frames of
the input overlapped by half; the frame for each hop starts near where the rate puts it (the
"nominal" input position advances `ratio` x the hop), moved within +-`tolerance` to the position
that best continues the previous frame's natural continuation (cross-correlation, on a 4x decimated
mono mix to keep it cheap). At ratio 1 the chosen frames are the natural continuations and the
output is the input, sample for sample.

`StretchReader` reads a `PcmBuffer` (media-timed PCM) this way for an audio output that asks for
bytes: the ratio of each hop is chosen so the audio is heard where a master clock will be when the
hop is heard (`target`: ffplay's "sync to an external clock", within +-10% of the clock's rate as
ffplay's SAMPLE_CORRECTION_PERCENT_MAX), which takes the output's read-ahead into account, and it keeps
which media position each output sample came from (`media_s_at`), so the A/V offset of what is heard
can be measured. No pyglet here.
"""

from __future__ import annotations

import bisect
import threading
from collections import deque
from collections.abc import Callable

import numpy as np

from player.media.avsync import PcmBuffer

WINDOW_S = 0.032  # WSOLA frame: 32 ms (1536 samples at 48 kHz), hop half of it
TOLERANCE_S = 0.008  # the frame may move +-8 ms from its nominal position to continue the previous one
DECIMATE = 4  # the similarity search runs on every 4th sample of a mono mix
MAX_CORRECTION = 0.10  # the ratio stays within +-10% of the master clock's rate
_ANCHORS_KEPT = 512  # hops remembered for media_s_at (about 8 s)

# target(ahead_s) -> (media s the master clock will be at ahead_s from now, its rate), or None (no clock)
Target = Callable[[float], "tuple[float, float] | None"]


class StretchReader:
    """Reads `pcm` at a varying rate with its pitch kept (module docstring). `read` is called by the
    audio output's thread, `reset`/`media_s_at` by others: a lock guards the state."""

    def __init__(self, pcm: PcmBuffer, *, target: Target | None = None, heard_out_s: Callable[[], float] | None = None,
                 window_s: float = WINDOW_S, tolerance_s: float = TOLERANCE_S) -> None:
        rate_hz = pcm.sample_rate_hz
        self.pcm = pcm
        self.target = target
        self.heard_out_s = heard_out_s  # output seconds heard since the last reset (the output's play cursor)
        self.channels = pcm.output.channels
        self.dtype = pcm.output.numpy_dtype
        self._hop = max(DECIMATE, int(window_s * rate_hz) // 2 // DECIMATE * DECIMATE)
        self._size = 2 * self._hop
        self._tolerance = max(DECIMATE, int(tolerance_s * rate_hz) // DECIMATE * DECIMATE)
        n = np.arange(self._size)
        self._window = (0.5 - 0.5 * np.cos(2 * np.pi * n / self._size)).astype(np.float32)[:, None]  # periodic Hann
        info = np.iinfo(self.dtype) if self.dtype.kind == "i" else None
        self._limits = (float(info.min), float(info.max)) if info is not None else (-1.0, 1.0)
        self._lock = threading.Lock()
        self.ratios: deque[float] = deque(maxlen=256)  # the last hops' ratios (for tests and the overlay)
        self.frames_out_total = 0  # output sample frames handed out, over all resets
        self.reset(0.0)

    @property
    def sample_rate_hz(self) -> int:
        return self.pcm.sample_rate_hz

    def reset(self, position_s: float) -> None:
        """Start again at media second `position_s` (a seek, a jump of the master clock)."""
        with self._lock:
            self._nominal = position_s * self.sample_rate_hz  # media frame where the next hop's frame should start
            self._natural: int | None = None  # where the previous frame naturally continues
            self._acc = np.zeros((self._size, self.channels), np.float32)
            self._pending = np.zeros((0, self.channels), np.float32)
            self._out_frames = 0  # output frames made since the reset (returned or pending)
            self._returned = 0  # output frames handed to the output since the reset
            self._anchors: deque[tuple[int, int]] = deque(maxlen=_ANCHORS_KEPT)  # (output frame, media frame)
            self.pcm.seek(position_s)

    def read(self, size_bytes: int) -> bytes:
        """Exactly `size_bytes` (whole sample frames) of output."""
        frames = size_bytes // (self.channels * self.dtype.itemsize)
        with self._lock:
            while len(self._pending) < frames:
                self._pending = np.concatenate([self._pending, self._hop_once()])
            out, self._pending = self._pending[:frames], self._pending[frames:]
            self._returned += frames
            self.frames_out_total += frames
        low, high = self._limits
        return np.clip(np.rint(out) if self.dtype.kind == "i" else out, low, high).astype(self.dtype).tobytes()

    def media_s_at(self, out_s: float) -> float | None:
        """The media second the output sample `out_s` seconds after the reset came from (None: not made yet)."""
        out_frame = round(out_s * self.sample_rate_hz)
        with self._lock:
            anchors = self._anchors
            if not anchors or out_frame < anchors[0][0] or out_frame >= self._out_frames:
                return None
            i = bisect.bisect_right(anchors, (out_frame, float("inf"))) - 1
            start_out, start_media = anchors[i]
        return (start_media + out_frame - start_out) / self.sample_rate_hz

    # -- one hop ------------------------------------------------------------------------------------

    def _hop_ratio(self) -> float:
        if self.target is None:
            return 1.0
        heard = self.heard_out_s() * self.sample_rate_hz if self.heard_out_s is not None else self._returned
        ahead_s = max(0.0, self._out_frames + self._hop - heard) / self.sample_rate_hz
        aim = self.target(ahead_s)
        if aim is None:
            return 1.0
        media_s, rate = aim
        wanted = (media_s * self.sample_rate_hz - self._nominal) / self._hop
        return min(max(wanted, rate * (1 - MAX_CORRECTION)), rate * (1 + MAX_CORRECTION))

    def _frames(self, start: int, count: int) -> np.ndarray:
        return self.pcm.frames_at(start, count)[0].astype(np.float32)

    def _hop_once(self) -> np.ndarray:
        hop, size, tol = self._hop, self._size, self._tolerance
        nominal = round(self._nominal)
        if self._natural is None:
            chosen = nominal
            # The second half of the frame before: the first hop needs no fade-in.
            self._acc[:hop] += (self._frames(chosen - hop, size) * self._window)[hop:]
        elif self._natural == nominal:
            chosen = nominal
        else:
            region = self._frames(nominal - tol, size + 2 * tol).mean(axis=1)[::DECIMATE]
            ref = self._frames(self._natural, size).mean(axis=1)[::DECIMATE]
            if not ref.any() or not region.any():
                chosen = nominal
            else:
                score = np.correlate(region, ref, mode="valid")
                chosen = nominal - tol + int(np.argmax(score)) * DECIMATE
        frame = self._frames(chosen, size)
        self.pcm.note_silence(hop - self.pcm.frames_at(chosen, hop)[1])  # the part of this hop with nothing decoded
        self._acc += frame * self._window
        out = self._acc[:hop].copy()
        self._acc[:hop] = self._acc[hop:]
        self._acc[hop:] = 0.0
        self._anchors.append((self._out_frames, chosen))
        ratio = self._hop_ratio()
        self.ratios.append(ratio)
        self._natural = chosen + hop
        self._nominal += hop * ratio
        self._out_frames += hop
        self.pcm.release_before(min(chosen, round(self._nominal)))
        return out
