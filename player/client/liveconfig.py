"""What a live session is asked to play (`LivePlayConfig`): a light module, so that `abrkit play` and the
window build it without loading the live player (player/client/liveplay.py re-exports it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from player.clocksync import ClockSyncConfig


@dataclass(frozen=True, kw_only=True, slots=True)
class LivePlayConfig:
    """How long to play, what latency to aim for (None: the MPD's ServiceDescription target,
    else its suggestedPresentationDelay, else 3 s) and when to sync the clock (dash.js's schedule)."""

    duration_s: float = 60.0
    target_latency_s: float | None = None
    clock_sync: ClockSyncConfig = field(default_factory=ClockSyncConfig)
    # Live HLS: play LL-HLS parts where a playlist offers them (hls.js's lowLatencyMode); False:
    # whole segments at HOLD-BACK (player/client/hlslive.py)
    play_parts: bool = True

    def __post_init__(self) -> None:
        if not self.duration_s > 0:
            raise ValueError(f"live play duration must be > 0 s, got {self.duration_s}")
        if self.target_latency_s is not None and not self.target_latency_s > 0:
            raise ValueError(f"target latency must be > 0 s, got {self.target_latency_s}")
