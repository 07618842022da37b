"""The live player's clock sync schedule (dash.js's `streaming.utcSynchronization`)."""

from __future__ import annotations

import pytest

from player.clocksync import RESYNC_REQUESTS, ClockSyncConfig, ClockSyncSchedule


def test_defaults_are_dash_js_settings() -> None:
    # dash.js src/core/Settings.js: backgroundAttempts 2, timeBetweenSyncAttempts 30, maximum 600,
    # minimum 2, adjustment factor 2, maximumAllowedDrift 100 ms; a re-sync is one request
    c = ClockSyncConfig()
    assert (c.background_attempts, c.time_between_sync_attempts_s, c.maximum_time_between_sync_attempts_s,
            c.minimum_time_between_sync_attempts_s, c.adjustment_factor, c.maximum_allowed_drift_s) == (
        2, 30.0, 600.0, 2.0, 2.0, 0.1)
    assert c.join_requests == 3 and RESYNC_REQUESTS == 1


def test_the_interval_doubles_while_the_offset_holds_and_halves_when_it_drifts() -> None:
    schedule = ClockSyncSchedule(ClockSyncConfig())
    assert schedule.due(0.0)  # never synced
    schedule.synced(0.5, 10.0)  # the join's: no adjustment
    assert schedule.interval_s == 30.0 and not schedule.due(30.4) and schedule.due(30.5)
    intervals = []
    at = 0.5
    for _ in range(6):  # the offset holds within 100 ms: 60, 120, 240, 480, 600, 600
        at += schedule.interval_s
        schedule.synced(at, 10.0 + 0.09)
        intervals.append(schedule.interval_s)
    assert intervals == [60.0, 120.0, 240.0, 480.0, 600.0, 600.0]
    for expected in (300.0, 150.0, 75.0, 37.5, 18.75, 9.375, 4.6875, 2.34375, 2.0, 2.0):  # it drifts 0.5 s each time
        at += schedule.interval_s
        schedule.synced(at, schedule.last_offset_s + 0.5)  # type: ignore[operator]
        assert schedule.interval_s == expected


@pytest.mark.parametrize("kwargs", [{"background_attempts": -1}, {"time_between_sync_attempts_s": 1.0},
                                    {"minimum_time_between_sync_attempts_s": 0.0},
                                    {"maximum_time_between_sync_attempts_s": float("inf")},
                                    {"adjustment_factor": 0.5}, {"maximum_allowed_drift_s": -0.1}])
def test_bad_settings_are_refused_by_name(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="clock sync"):
        ClockSyncConfig(**kwargs)  # type: ignore[arg-type]
