"""The live channel's clock as the DASH live player reads it (player/client/liveplay.py): a UTCTiming
answer, and whether the channel's clock runs at the player's speed, from two clock syncs.

A live channel makes media on its own clock, so a player at `--speed K` needs a channel whose clock
runs K times faster too. Played against a 1x channel, a 10x player asks for each segment ten times
too soon; the origin answers 404 until the channel has made it. The rate shows between two clock
syncs: server seconds per session second, 1 when the two agree. A re-sync on dash.js's schedule
measures it over a wall second or more; a segment still missing `OVERDUE_S` after the player's
schedule says it was made has it measured at once, over `OVERDUE_WALL_S`, with a looser tolerance
(the measure is shorter, and only a rate off by a whole speed step matters).
"""

from __future__ import annotations

from datetime import datetime

from player.client.headless import PlaybackError

UTC_TIMING_SCHEMES = ("urn:mpeg:dash:utc:http-xsdate:2014", "urn:mpeg:dash:utc:http-iso:2014")

# A re-sync's measure: over a wall second at least (a few ms of jitter is a few %), off by > 20%.
RESYNC_WALL_S = 1.0
RESYNC_TOLERANCE = 0.2
# Session seconds a segment may be missing past its time before the rate is measured out of turn:
# a player at the channel's speed asks at most a clock sync's margin early (a few ms).
OVERDUE_S = 0.5
# That measure: over half a wall second at least (200 ms of jitter to be 40% off), off by > 40% (a 2x
# player on a 1x channel is 50% off, 10x on 1x 90%).
OVERDUE_WALL_S = 0.5
OVERDUE_TOLERANCE = 0.4


def channel_rate_error(*, offset_s: float, base_offset_s: float, elapsed_s: float, speed: float,
                       tolerance: float) -> str | None:
    """Why the channel does not run at the player's `speed`, or None: `offset_s` and `base_offset_s`
    are two clock syncs' server-minus-session offsets `elapsed_s` session seconds apart."""
    rate = 1.0 + (offset_s - base_offset_s) / elapsed_s  # server seconds per session second
    if abs(rate - 1.0) <= tolerance:
        return None
    channel = rate * speed
    # A measured 0.9x is a 1x channel on a loaded machine: channel speeds are whole numbers (but for
    # slow motion), and the measure is a few wall seconds of /time requests.
    suggested = round(channel) if channel >= 0.5 else channel
    return (f"the live channel's clock runs at {channel:.1f}x the wall clock but the player at {speed:g}x: play it "
            f"at --speed {suggested:.2g}, or run the channel at the player's speed (server LiveConfig.speed)")


def parse_server_time(text: str) -> float:
    """An http-xsdate / http-iso answer (xs:dateTime) as unix seconds."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise PlaybackError(f"the UTCTiming server answered {text.strip()[:60]!r}, not an xs:dateTime") from None
    if value.tzinfo is None:
        raise PlaybackError(f"the UTCTiming server's time {text.strip()[:60]!r} has no time zone")
    return value.timestamp()
