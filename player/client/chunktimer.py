"""Timing a chunked live answer: where its CMAF chunks end (`chunk_ends`) and when each crossed the
link (`ChunkTimer`), for the live players' chunk-aware throughput samples (player.client.liveplay,
player.client.hlslive). Split from liveplay.py, which it served alone."""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence

from abr.estimators import ChunkArrival, chunk_active_s
from player.client.headless import PlaybackError


def chunk_ends(data: bytes | bytearray, start: int) -> tuple[list[int], int]:
    """Where each complete `mdat` box ends in `data` (ISO BMFF box headers walked from `start`, a
    box boundary): a CMAF chunk is a `moof`+`mdat` pair. Returns the ends and the next unread box start."""
    ends: list[int] = []
    pos = start
    while pos + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > len(data):
                break
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            header = 16
        if size < header:
            raise PlaybackError(f"a live segment has a malformed box header (size {size}) at byte {pos}")
        if pos + size > len(data):
            break
        pos += size
        if kind == b"mdat":
            ends.append(pos)
    return ends, pos


class ChunkTimer:
    """The arrival of a chunked body's CMAF chunks, as pieces of it come in: each complete
    `moof`+`mdat` becomes a `ChunkArrival` from the time its first byte began crossing the link to
    the time its last byte came. A piece that ends one chunk and starts the next starts the next at
    that time (the link was busy through it); the wait before a chunk that was not made yet is idle,
    not network time (`abr.estimators.chunk_active_s`, which `active_s` applies to these arrivals).

    A chunk that begins a piece after an idle link: that piece's bytes crossed before it arrived,
    for as long as the link takes to carry them. Leaving that out (measuring from the piece's
    arrival, as dash.js's moof parsing does) shortens every such chunk by up to one read or pacing
    period, which on small chunks is a large part of their time (at 10x in emulation, 10-20 ms of a
    40-60 ms chunk: measured so, samples ran 5-21% above the shaper's own record). So the piece is
    taken to have crossed at the link's rate measured between consecutive pieces of a chunk so far
    in this body (`rate_Bps`; the previous body's, `rate_hint_Bps`, before one is measured), never
    before the previous piece came (the link carried that first) nor, for the first chunk, before
    the request (`requested_s`).

    Before any rate is known, with `ready_s` (chunk index -> the earliest its bytes could leave for
    us: made, plus half the round trip) the chunk starts when the piece could have started
    crossing: after the previous piece, not before the chunk was ready; `left_out_s` (seconds the
    reading clock has left out since the answer began: the channel streams the rest on the clock
    as it stood then) moves that readiness earlier. Without either, at the piece's arrival.

    The last piece of a chunk, likewise, is timed by the link's timers more than by its bytes. A
    paced link hands over the tail of a drained queue (a few hundred bytes to a tick's worth) when
    its timer fires: once no sooner than its floor, a wall millisecond late (wave 8: 10 ms of a
    ~30-80 ms chunk at 10x; bola's samples on a 5 Mbit/s link ran 14% under it), and on live
    links' loose timers now within half a wall millisecond either side of when it is due, later
    when the loop is late (netsim/pacing.py, docs/SHAPER.md "Tails on loose timers"). A piece that
    ends a chunk (and its piece) is taken to have come when its bytes crossed at the rate measured
    before it, moved back by at most `tail_slack_s` and on by at most `tail_lead_s` (0: as it came),
    and its timing is not taken as the link's rate: it says when a timer fired. The live player
    gives two wall milliseconds of session time back (the floor and the loop's wake-up) and the
    link's half-millisecond lead on; correcting late tails alone left the early ones in the chunk's
    time and the rate, and samples on that link read 1.6-3.4% high. A tail later than the slack (a
    real network's retransmission, a stalled loop) counts past it as the chunk's time, not as the
    rate; one earlier than the lead allows says the link was faster than the rate (the previous
    body's, on a link that sped up: a chunk in two pieces has no other say), so it counts, less the
    lead, as both. Within them a chunk that comes in two pieces measures nothing new: on
    the live player's 10x link that is a tail within 5 ms early or 20 ms late of the rate, which a
    2x faster link leaves behind in a few bodies (tests/player/client/test_chunktimer.py).

    `others` (the player's other answers on the same link, as (session time landed, bytes) in the
    order they landed, appended as they do) shared the link with a chunk's first piece when they
    were crossing as it did: one that landed after the previous piece and before that piece (its
    bytes crossed while the piece was on its way) moves the chunk's start back by its bytes' time
    at the link's rate; one that landed later, before the chunk ended, by as many bytes as the
    piece (a fair-shared link gives both the same share). An LL-HLS part and the blocking playlist
    reload held for it are answered at the same moment: left out, each part's time was short by the
    playlist's (about 2.6 kB on a 20 kB part) and its sample that much high.

    A piece read within `back_to_back_s` of the one before was read back to back with it: a loop
    late to read finds what the link handed over separately queued and reads it piece after piece
    (aiohttp hands over one received buffer a read), so their gap is the loop's own work, not the
    link's time, and their pair is left out of the rate (the piece's timing is kept). Counted, one
    such pair after a stall took the rate to 1.7 MB/s on a 4-5 Mbit/s link, and an LL-HLS part that
    then came in one piece was timed by it (18-22 kB in 4 ms; docs/LIVE-SIM.md): a part is one to
    three pieces, so one pair is its whole rate, and the rate carries to the next body."""

    def __init__(self, ready_s: Callable[[int], float] | None = None, *,
                 left_out_s: Callable[[], float] | None = None, rate_hint_Bps: float | None = None,
                 requested_s: float | None = None, tail_slack_s: float = 0.0, tail_lead_s: float = 0.0,
                 others: Sequence[tuple[float, int]] = (), back_to_back_s: float = 0.0) -> None:
        if not (tail_slack_s >= 0 and tail_lead_s >= 0):
            raise ValueError(f"a chunk timer's tail slack and lead must be >= 0 s, got {tail_slack_s} and {tail_lead_s}")
        if not back_to_back_s >= 0:
            raise ValueError(f"a chunk timer's back-to-back gap must be >= 0 s, got {back_to_back_s}")
        self.body = bytearray()
        self.arrivals: list[ChunkArrival] = []
        self.first_byte_s: float | None = None
        self._scan = 0
        self._chunk_start = 0
        self._ready_s = ready_s
        self._left_out_s = left_out_s
        self._last_piece_s: float | None = None
        self._rate_hint_Bps = rate_hint_Bps
        # The link's rate between consecutive pieces of one chunk, summed over this body.
        self._paced_bytes = 0
        self._paced_s = 0.0
        # The chunk in progress: its first piece (arrival, its bytes of it, whether it began inside
        # a piece that ended the previous chunk), the arrival of the piece before, its latest piece.
        self._first: tuple[float, int, bool] | None = None
        self._requested_s = requested_s  # no byte of the answer crossed before its request
        self._before_s: float | None = None
        self._latest_s: float | None = None
        self._tail_slack_s = tail_slack_s  # the most a chunk's late last piece is moved back (class docstring)
        self._tail_lead_s = tail_lead_s  # the most an early one is moved on
        self._others = others
        self._back_to_back_s = back_to_back_s  # pieces closer than this were read back to back (class docstring)

    @property
    def rate_Bps(self) -> float | None:
        """The link's rate (bytes/s) measured between pieces of a chunk in this body, else the hint."""
        if self._paced_bytes > 0 and self._paced_s > 0:
            return self._paced_bytes / self._paced_s
        return self._rate_hint_Bps

    def _add(self, t: float, size: int, *, inside: bool, tail: bool = False) -> float:
        """`size` bytes of the chunk in progress came in a piece at `t` (`inside`: after the end of
        the previous chunk, in the same piece; `tail`: they end the chunk and the piece). Returns
        when they came: `t`, except for a tail, which is taken to have come when it crossed at the
        link's rate within the slack and the lead (class docstring)."""
        if self._first is None:
            self._first = (t, size, inside)
            self._before_s = self._last_piece_s
        else:
            assert self._latest_s is not None
            if t > self._latest_s:
                apart = t - self._latest_s >= self._back_to_back_s  # else read back to back: not the link's
                rate = self.rate_Bps
                if tail and rate is not None and rate > 0:
                    # Moved to its crossing at the rate, back by at most the slack, on by at most the lead,
                    # and not the link's rate unless earlier than the lead allows (class docstring).
                    due = self._latest_s + size / rate
                    if t >= due - self._tail_lead_s:
                        return max(due, t - self._tail_slack_s)
                    t += self._tail_lead_s
                if apart:
                    self._paced_bytes += size
                    self._paced_s += t - self._latest_s
        self._latest_s = t
        return t

    def _first_byte_s(self, index: int, last_s: float) -> float:
        """When the chunk in progress (its last byte at `last_s`) began crossing (class docstring)."""
        assert self._first is not None
        t, size, inside = self._first
        if inside:
            return t
        rate = self.rate_Bps
        if rate is not None and rate > 0:
            start = self._shared_start_s(t - size / rate, t, size, last_s, rate)
        elif self._ready_s is not None and self._before_s is not None:
            start = self._ready_s(index) - (self._left_out_s() if self._left_out_s is not None else 0.0)
        else:
            return t
        floor = self._before_s if self._before_s is not None else self._requested_s
        if floor is not None:
            start = max(start, floor)
        return min(start, t)

    def _shared_start_s(self, start_s: float, t: float, size: int, last_s: float, rate_Bps: float) -> float:
        """`start_s` moved back by the other answers that crossed with the chunk's first piece (`size`
        bytes at `t`; the chunk ended at `last_s`), after the previous piece (class docstring)."""
        after = self._before_s if self._before_s is not None else -math.inf
        for landed, other in reversed(self._others):
            if landed > last_s:
                continue
            if landed <= after or landed < start_s:
                break
            start_s -= (other if landed <= t else min(other, size)) / rate_Bps
        return start_s

    def feed(self, t: float, piece: bytes) -> list[ChunkArrival]:
        """Add `piece` (arrived at `t`); the chunks it completed."""
        if not piece:
            return []
        if self.first_byte_s is None:
            self.first_byte_s = t
        begin = len(self.body)
        self.body += piece
        ends, self._scan = chunk_ends(self.body, self._scan)
        done = []
        pos = begin
        for end in ends:
            last = self._add(t, end - pos, inside=pos > begin, tail=end == len(self.body))
            done.append(ChunkArrival(first_byte_s=self._first_byte_s(len(self.arrivals) + len(done), last), last_byte_s=last,
                                     size_bytes=end - self._chunk_start))
            self._chunk_start = pos = end
            self._first = None
        if len(self.body) > pos:  # the rest of this piece is the next chunk's first bytes
            self._add(t, len(self.body) - pos, inside=pos > begin)
        self.arrivals += done
        self._last_piece_s = t
        return done

    def active_s(self) -> float | None:
        """The time the network was delivering the chunks (None before any arrived)."""
        return chunk_active_s(self.arrivals) if self.arrivals else None
