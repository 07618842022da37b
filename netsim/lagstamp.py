"""A live request's lag header, stamped again as the request leaves the link's delay line (emulation).

An emulated live player whose clock leaves time out (`WarpClock`) tells the channel how far its
clock runs behind the wall (`CHANNEL_LAG_HEADER`, channel seconds: `WarpClock.paused_s` times the
speed, player.client.harness), and the channel answers by that view of its clock. The player stamps
the request as it sends it; if the clock then leaves time out while the request is still in the
shaper's delay line (a loop stall, another request's hold at its server), the server reads a lag
that is short by that much and answers ahead of the player's clock: a blocking playlist reload lists
parts the player's clock has not reached, and the player's next `_HLS_part` is then judged past the
Advance Part Limit (docs/LIVE-EMULATION.md, "The rare HTTP 400"). `LagRestamp`, the request
direction's sink, writes each request head with the lag as it stands when the head leaves the delay
line: the server then sees the request at the player's clock when it arrives, as a stall-free
world's server would. Only for a shaper whose clock the player stamps by
(`ShaperConfig.restamp_channel_lag`): any other player's lag is its own.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

from netsim.waits import RequestHeads
from server.formats.names import CHANNEL_LAG_HEADER

_LAG = re.compile(rb"^(" + re.escape(CHANNEL_LAG_HEADER.encode()) + rb"[ \t]*:[ \t]*)[^\r\n]*?([ \t]*\r?)$",
                  re.IGNORECASE | re.MULTILINE)


class LagRestamp(asyncio.Transport):
    """The request bytes' sink towards the upstream (an `asyncio.Transport` to `netsim.pacing.Pipe`):
    passes them on, each request head's `CHANNEL_LAG_HEADER` value replaced by `lag_s()` (channel
    seconds) as the head goes out. Heads are split by `netsim.waits.RequestHeads`, as the shaper
    reads the targets (a body by its `Content-Length` passes as it is; after a chunked body or an
    overlong head, everything does: `lost`); a head is written once it is whole."""

    __slots__ = ("_sink", "_lag_s", "_heads", "restamped")

    def __init__(self, sink: asyncio.Transport, lag_s: Callable[[], float]) -> None:
        super().__init__()
        self._sink = sink
        self._lag_s = lag_s
        self._heads = RequestHeads()
        self.restamped = 0  # heads whose lag was stamped again (for tests and debugging; no report reads it)

    @property
    def lost(self) -> bool:
        """Whether the heads can no longer be told apart (netsim.waits `RequestHeads`): all passes as it is."""
        return self._heads.lost

    def write(self, data: bytes) -> None:
        for piece, head in self._heads.feed(data):
            self._sink.write(self._restamp(piece) if head else piece)

    def _restamp(self, head: bytes) -> bytes:
        def value(match: re.Match[bytes]) -> bytes:
            self.restamped += 1
            return match[1] + f"{max(0.0, self._lag_s()):.6f}".encode() + match[2]

        return _LAG.sub(value, head, count=1)

    def is_closing(self) -> bool:
        return self._sink.is_closing()

    def can_write_eof(self) -> bool:
        return self._sink.can_write_eof()

    def write_eof(self) -> None:
        if rest := self._heads.rest():  # a head that never ended goes as it came
            self._sink.write(rest)
        self._sink.write_eof()

    def abort(self) -> None:
        self._sink.abort()
