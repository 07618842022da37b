"""The window's presentation clock for a live channel: the live session's playhead.

In video on demand the window's clock is pyglet's audio clock. A live session (`player.live`) plays
at a rate it steers itself (0.95x-1.05x to hold the target latency, a jump on a seek to
the live edge), so the window follows the session instead: each snapshot of the player thread gives
the playhead, when it was taken and the playback rate; between snapshots the clock runs on at that
rate. A frame is due when its pts <= this clock, so the rate the session chose is the rate frames
go on screen. The clock is re-anchored on the session when the two differ by more than
`resync_s` (a jump, a stall); within that it keeps its own smooth course at the session's rate.
It answers the same calls as the pyglet `Player` the window otherwise uses (`time`, `playing`,
`play`, `pause`, `seek`, `delete`). The sound follows this clock (livesound.py). No pyglet here.
"""

from __future__ import annotations

import time
from collections.abc import Callable

RESYNC_S = 0.05


class SessionClock:
    """Media seconds on screen, following a live session's playhead and playback rate."""

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic, resync_s: float = RESYNC_S) -> None:
        if not resync_s > 0:
            raise ValueError(f"resync_s must be > 0, got {resync_s}")
        self._monotonic = monotonic
        self.resync_s = resync_s
        self._media_s = 0.0
        self._anchor_wall_s = monotonic()
        self.rate = 1.0
        self.playing = False
        self.resyncs = 0  # times the clock jumped to the session (join, seeks to live, stalls)

    @property
    def time(self) -> float:
        if not self.playing:
            return self._media_s
        return self._media_s + (self._monotonic() - self._anchor_wall_s) * self.rate

    def follow(self, *, playhead_s: float, at_wall_s: float, rate: float, running: bool) -> None:
        """The session's state: playhead `playhead_s` at monotonic time `at_wall_s`, draining at
        `rate` while `running` (started, not stalled, not paused)."""
        if not rate > 0:
            raise ValueError(f"playback rate must be > 0, got {rate}")
        now = self._monotonic()
        session_s = playhead_s + ((now - at_wall_s) * rate if running else 0.0)
        mine = self.time
        if abs(session_s - mine) > self.resync_s:
            mine = session_s
            self.resyncs += 1
        self._media_s, self._anchor_wall_s = mine, now
        self.rate = rate
        self.playing = running

    # -- the pyglet Player calls the window makes ----------------------------------------------------

    def play(self) -> None:
        if not self.playing:
            self._anchor_wall_s = self._monotonic()
            self.playing = True

    def pause(self) -> None:
        if self.playing:
            self._media_s = self.time
            self.playing = False

    def seek(self, position_s: float) -> None:
        self._media_s, self._anchor_wall_s = position_s, self._monotonic()

    def delete(self) -> None:
        self.playing = False
