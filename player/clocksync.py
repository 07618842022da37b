"""When a live player syncs its clock with the channel's `UTCTiming` source: dash.js's adaptive
schedule, one source for the live player (player/client/liveplay.py) and the live simulator's
model of its link traffic (player/research/live_sim.py `ControlTraffic`).

dash.js (`streaming.utcSynchronization`, src/streaming/controllers/TimeSyncController.js; defaults
in src/core/Settings.js): at the join one request, then `backgroundAttempts` (2) more to confirm
the offset. After that a sync is tried only on an MPD update, and only once
`timeBetweenSyncAttempts` (30 s to start) have passed since the last one: one request. After each
re-sync the interval is multiplied by `timeBetweenSyncAttemptsAdjustmentFactor` (2) when the offset
moved by at most `maximumAllowedDrift` (100 ms) since the last sync, else divided by it, within
`minimumTimeBetweenSyncAttempts` (2 s) and `maximumTimeBetweenSyncAttempts` (600 s).

Times here are session seconds (the channel's clock: at `--speed K` the player's K-times-faster
clock), so the player and its simulated twin follow one schedule at any speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True, slots=True)
class ClockSyncConfig:
    """dash.js's `streaming.utcSynchronization` settings (module docstring), its defaults."""

    background_attempts: int = 2  # requests after the join's first, confirming its offset
    time_between_sync_attempts_s: float = 30.0  # the first interval
    maximum_time_between_sync_attempts_s: float = 600.0
    minimum_time_between_sync_attempts_s: float = 2.0
    adjustment_factor: float = 2.0  # timeBetweenSyncAttemptsAdjustmentFactor
    maximum_allowed_drift_s: float = 0.1  # maximumAllowedDrift (dash.js: 100 ms)

    def __post_init__(self) -> None:
        if self.background_attempts < 0:
            raise ValueError(f"clock sync background attempts must be >= 0, got {self.background_attempts}")
        low, first, high = (self.minimum_time_between_sync_attempts_s, self.time_between_sync_attempts_s,
                            self.maximum_time_between_sync_attempts_s)
        if not 0 < low <= high or not low <= first <= high or not math.isfinite(high):
            raise ValueError(f"clock sync intervals need 0 < minimum <= first <= maximum (finite), got "
                             f"{low:g} s, {first:g} s, {high:g} s")
        if not self.adjustment_factor >= 1:
            raise ValueError(f"the clock sync adjustment factor must be >= 1, got {self.adjustment_factor}")
        if not self.maximum_allowed_drift_s >= 0:
            raise ValueError(f"the clock sync's maximum allowed drift must be >= 0 s, got {self.maximum_allowed_drift_s}")

    @property
    def join_requests(self) -> int:
        """UTCTiming requests at the join, one after another: the first and the background attempts."""
        return 1 + self.background_attempts


RESYNC_REQUESTS = 1  # UTCTiming requests per re-sync after the join (dash.js: one)


class ClockSyncSchedule:
    """The state of one player's schedule: `synced(at_s, offset_s)` after every sync (the join's
    too), `due(now_s)` on every MPD update says whether to sync again."""

    def __init__(self, config: ClockSyncConfig) -> None:
        self.config = config
        self.interval_s = config.time_between_sync_attempts_s
        self.last_sync_s: float | None = None
        self.last_offset_s: float | None = None

    def due(self, now_s: float) -> bool:
        return self.last_sync_s is None or now_s - self.last_sync_s >= self.interval_s

    def synced(self, at_s: float, offset_s: float) -> None:
        """A sync ended at `at_s` and found `offset_s` (server minus session seconds): widen the
        interval when the offset held within the allowed drift, narrow it when not (not after the join)."""
        c = self.config
        if self.last_offset_s is not None:
            if abs(offset_s - self.last_offset_s) <= c.maximum_allowed_drift_s:
                self.interval_s = min(self.interval_s * c.adjustment_factor, c.maximum_time_between_sync_attempts_s)
            else:
                self.interval_s = max(self.interval_s / c.adjustment_factor, c.minimum_time_between_sync_attempts_s)
        self.last_sync_s, self.last_offset_s = at_s, offset_s
