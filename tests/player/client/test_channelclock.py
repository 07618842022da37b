"""Whether a live channel's clock runs at the player's speed, from two clock syncs' offsets."""

from __future__ import annotations

import pytest

from player.client.channelclock import OVERDUE_TOLERANCE, RESYNC_TOLERANCE, channel_rate_error


@pytest.mark.parametrize("channel_speed,player_speed,tolerance,named", [
    (1.0, 1.0, RESYNC_TOLERANCE, None),
    (10.0, 10.0, OVERDUE_TOLERANCE, None),
    (0.85, 1.0, RESYNC_TOLERANCE, None),  # within 20%: a loaded machine's measure
    (1.0, 10.0, RESYNC_TOLERANCE, "runs at 1.0x the wall clock but the player at 10x: play it at --speed 1,"),
    (1.0, 2.0, OVERDUE_TOLERANCE, "runs at 1.0x the wall clock but the player at 2x: play it at --speed 1,"),
    (0.7, 1.0, OVERDUE_TOLERANCE, None),  # 30% off: only a re-sync's longer measure says so
    (0.7, 1.0, RESYNC_TOLERANCE, "runs at 0.7x the wall clock but the player at 1x: play it at --speed 1,"),
])
def test_the_channels_rate_is_measured_between_two_syncs(channel_speed: float, player_speed: float,
                                                         tolerance: float, named: str | None) -> None:
    elapsed_s = 20.0  # session seconds between the syncs (2 wall s at 10x)
    # server time - session time: the server ran channel_speed/player_speed seconds per session second
    offset_s = 100.0 + elapsed_s * (channel_speed / player_speed - 1.0)
    error = channel_rate_error(offset_s=offset_s, base_offset_s=100.0, elapsed_s=elapsed_s, speed=player_speed,
                               tolerance=tolerance)
    assert (error is None) if named is None else (error is not None and named in error), error
