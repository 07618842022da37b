"""A live window's join: the picture and the sound start together.

The live session's playhead is the window's clock (liveclock.py), and the session starts playing
once the joined segment is downloaded; its video and audio are decoded after that, on two workers,
and under load the first PCM can come up to a second after the first frame (0.64 s seen at load 13):
the picture would start alone, the sound join it later (the start counted as silence). So at the
join the clock waits until a frame is decoded and PCM is there at the playhead (`JOIN_AUDIO_S` of
it), then starts at the session's playhead, both together (what the session played meanwhile is
skipped: the frames count as dropped, as after any jump of the clock). The wait is bounded
(`JOIN_WAIT_S`): a channel whose audio never decodes starts without sound, and says so
(`on_without_audio(waited_s)`: the window logs an `audio_missing` event). No pyglet here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

# PCM wanted at the playhead before the join starts the clock: more than the stretcher's first hop
# (the output reads 0.3 s ahead), so the first read is sound, not silence.
JOIN_AUDIO_S = 0.3
# The longest the join waits for a frame and that PCM (a live segment decodes in well under a second,
# even at load 13); past it the clock starts with what there is.
JOIN_WAIT_S = 2.0


@dataclass(slots=True)
class LiveJoin:
    """Whether a live window's clock may start: call `ready` on each window update until it says True
    (from then on it always does: after the join the session's playhead leads)."""

    has_audio: bool  # the stream has audio and the window plays it
    on_without_audio: Callable[[float], None] = field(default=lambda waited_s: None)
    wait_s: float = JOIN_WAIT_S
    audio_s: float = JOIN_AUDIO_S
    waited_s: float | None = None  # how long the join waited (None: not joined yet)
    with_audio: bool | None = None  # whether the sound was there when the clock started
    _since_wall_s: float | None = None

    def __post_init__(self) -> None:
        if not self.wait_s > 0 or not self.audio_s >= 0:
            raise ValueError(f"wait_s must be > 0 and audio_s >= 0, got {self.wait_s} and {self.audio_s}")

    def ready(self, now_wall_s: float, *, frame: bool, pcm_s: Callable[[], float]) -> bool:
        """`frame`: a frame is decoded (queued or on screen); `pcm_s()`: seconds of PCM held from the
        playhead on. True once both are there, or `wait_s` after the first call."""
        if self.waited_s is not None:
            return True
        if self._since_wall_s is None:
            self._since_wall_s = now_wall_s
        waited_s = now_wall_s - self._since_wall_s
        audio = not self.has_audio or pcm_s() >= self.audio_s
        if not (frame and audio) and waited_s < self.wait_s:
            return False
        self.waited_s, self.with_audio = waited_s, audio
        if not audio:
            self.on_without_audio(waited_s)
        return True
