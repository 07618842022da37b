"""The LL-HLS requests an emulated server holds for publication, announced to the link's clock.

A blocking playlist reload (`_HLS_msn`/`_HLS_part`) and a preload hint's part wait at the server
until the channel publishes what they ask for (draft-pantos-hls-rfc8216bis 6.2.5.2, 6.2.6). In
emulation that leaves out the stack's time (netsim.clock.WarpClock) the wait is the channel's time,
and counted from the answer's `Server-Timing` it comes in one step at the end, every other transfer
on the player's link standing still meanwhile. The player knows when that publication is on its own
clock (the playlists date the channel, which follows the player's clock), so it says so before it
asks (netsim.waits): the shaper then lets the clock run through the wait as it happens and holds it
only for the stack's time after. On any other clock (a real server's link) this does nothing, and
nothing of it goes on the wire.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from yarl import URL

from netsim.clock import warp_of


def publication_s(*, segment_start_s: float, segment_s: float, part_s: float | None, part: int | None) -> float:
    """When the channel publishes part `part` of a segment that starts at `segment_start_s` (its media
    has ended: `part_s` each), or with `part` None the whole segment (any clock, seconds)."""
    if part is None or not part_s:
        return segment_start_s + segment_s
    return segment_start_s + min((part + 1) * part_s, segment_s)


def announce_wait(clock: Callable[[], float], urls: Iterable[str], publish_at_s: float) -> int:
    """Tell the link's clock that a request for any of `urls` (its failover alternatives) waits at
    the server until clock time `publish_at_s` at most; how many were announced (0: `clock` is no
    emulated link's, or that time is past: the request is held as any other)."""
    warp = warp_of(clock)
    if warp is None or publish_at_s <= warp.now():
        return 0
    count = 0
    for url in urls:
        warp.expected_waits.expect(URL(url).raw_path_qs, publish_at_s)  # as aiohttp writes the request line
        count += 1
    return count
