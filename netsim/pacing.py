"""The shaper's pacing core: a bottleneck link paced by the link model, and the pipes it serves.

`PacedLink` releases bytes as `FaultedLink.bytes_until` allows, shared max-min fairly between the
pipes attached to it; a `Pipe` is one direction of one proxied connection (source -> link -> delay
line -> sink). `netsim.shaper` wires them to sockets. See docs/SHAPER.md for the model and its limits.
"""

from __future__ import annotations

import asyncio
import bisect
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from netsim.clock import WarpClock, WarpTimer
from netsim.faults import FaultedLink, FaultWindow
from netsim.trace import Trace

# Below a full segment the link waits for more capacity instead of waking every quantum; a real
# bottleneck also serves whole packets (TCP MSS over Ethernet). A receiver has a byte when the packet
# carrying it has crossed: the simulated live twin reports its time to first byte so (live_sim).
PACKET_BYTES = 1448
_SEGMENT_BYTES = PACKET_BYTES
# An unshaped direction may hold this much in its delay line before the sender is paused.
_DELAY_LINE_LIMIT_BYTES = 4 * 1024 * 1024
_MIN_SLEEP_S = 0.001
# On a bounded warp clock (netsim.clock) a tick runs at its exact clock time however late the loop
# wakes, so the floor only has to keep float rounding from spinning: 0.1 ms of link time.
_MIN_SLEEP_BOUNDED_S = 0.0001
# On an emulation clock without exact timers (`WarpClock.loose_timers`: live links) a wake-up comes up
# to a millisecond after its due time (epoll waits whole milliseconds, rounded up), so a queue's last
# bytes ("the tail") reached the client that late, and later still behind the timer floor: 8 ms of
# session time at 10x (median). Instead a tick releases a tail due within half that millisecond at
# once, and the link wakes for a tail half a millisecond before it is due: the tail then leaves
# within half a millisecond either side of its due time, on average at it (the link borrows at most
# that half millisecond's bytes, and pays them back). The delay line leads its bytes the same way.
# The head of an answer on an idle link (its first bytes from the server) waited for that floor too: its first byte reached the client 1.2 wall ms late (12 ms of session time
# at 10x, most of the emulated TTFB's excess over the RTT). It is woken as a tail is, half a millisecond
# before its first packet is due, and that tick releases what is due by then plus the lead.
# Plain shaping (`abrkit shape`: a wall clock) keeps its timers as they were: a byte never early.
_TAIL_LEAD_S = 0.0005


class PipeOwner(Protocol):
    """The connection a pipe belongs to: told when the pipe has delivered everything and closed."""

    def pipe_finished(self) -> None: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class LinkStats:
    """What one link delivered, per `bin_s` seconds of its own clock (loop seconds, less what the clock
    leaves out: netsim.clock)."""

    started_s: float  # event-loop time at which the link's clock started
    started_clock_s: float  # the link's clock (its `WarpClock`) reading then: the bins' origin on that clock
    bin_s: float
    delivered_bytes: tuple[int, ...]  # bytes the link released in each bin
    capacity_bytes: tuple[float, ...]  # bytes the link model (faults included) offered in each bin

    @property
    def delivered_total_bytes(self) -> int:
        return sum(self.delivered_bytes)


def peak_bytes(trace: Trace, window_s: float) -> float:
    """The most bytes `trace` offers in any window of `window_s` (the largest burst one tick releases)."""
    rate = trace.bandwidth_bps / 8.0
    ends = np.cumsum(trace.durations_s)
    cum = np.cumsum(trace.durations_s * rate)
    period_s, period_bytes = float(ends[-1]), float(cum[-1])
    if window_s >= period_s:
        return period_bytes * math.ceil(window_s / period_s)
    # Two passes so windows may wrap; the maximum starts or ends on an interval edge.
    times = np.concatenate(([0.0], ends, period_s + ends))
    total = np.concatenate(([0.0], cum, period_bytes + cum))
    starts = np.concatenate((times[: ends.size], np.maximum(ends - window_s, 0.0)))
    return float(np.max(np.interp(starts + window_s, times, total) - np.interp(starts, times, total)))


class RateChanges:
    """Times (looped) at which a trace interval of at least `min_interval_s` starts or ends.

    The link ticks on these edges, so bytes owed at the old rate leave before the new rate applies;
    shorter intervals (Mahimahi's 1 ms slots) are left to the quantum, which averages them anyway.
    """

    __slots__ = ("_period_s", "_edges")

    def __init__(self, trace: Trace, min_interval_s: float) -> None:
        ends = trace.end_times_s
        starts = ends - trace.durations_s
        long = trace.durations_s >= min_interval_s
        self._period_s = float(ends[-1])
        edges = set(starts[long].tolist()) | {e % self._period_s for e in ends[long].tolist()}
        self._edges = sorted(edges)

    def next_after(self, time_s: float) -> float:
        if not self._edges:
            return math.inf
        laps = math.floor(time_s / self._period_s)
        i = bisect.bisect_right(self._edges, time_s - laps * self._period_s)
        if i == len(self._edges):
            return (laps + 1) * self._period_s + self._edges[0]
        return laps * self._period_s + self._edges[i]


class PacedLink:
    """A paced bottleneck shared by the pipes attached to it (fair-queued, max-min fair per tick).

    `cursor` counts capacity bytes already used or lost. While a pipe is backlogged the link releases
    `bytes_until(now) - cursor` every quantum; when no pipe can send, the cursor jumps to
    `bytes_until(now)`: an idle link's capacity is lost, never banked. A queue that will empty
    before the next quantum is served by one tick at the time its last byte is due, so a response
    ends when the link model says. Link time is `warp`'s time (netsim.clock), and the ticks are its
    timers: the link stands still while the clock is paused, and on a bounded clock every tick
    runs at its exact link time however late the event loop wakes.
    """

    __slots__ = (
        "_loop", "model", "origin", "cursor", "pipes", "_timer", "_last_tick", "_quantum_s",
        "_in_tick", "_bin_s", "bins", "_changes", "_owed", "_owed_limit_bytes", "_closed_at", "_warp", "_clock0",
        "_min_sleep_s", "_tail_lead_s", "_head",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        model: FaultedLink,
        changes: RateChanges,
        *,
        quantum_s: float,
        bin_s: float,
        owed_limit_bytes: int,
        warp: WarpClock | None = None,
    ) -> None:
        self._loop = loop
        self._warp = warp if warp is not None else WarpClock(loop)
        self._clock0 = self._warp.now()
        self._min_sleep_s = _MIN_SLEEP_BOUNDED_S if self._warp.bounded else _MIN_SLEEP_S
        # A bounded clock runs each tick at its exact time: a tail leaves when due, never early.
        self._tail_lead_s = _TAIL_LEAD_S if self._warp.loose_timers else 0.0
        self._head = False  # the next tick serves the head of a burst on an idle link (`notify`)
        self.model = model
        self._changes = changes
        self._owed = False  # the last tick emptied a queue that our read-ahead limit had throttled
        self._owed_limit_bytes = owed_limit_bytes
        self._closed_at: float | None = None  # link time at close: its stats stop there
        self.origin = loop.time()
        self.cursor = 0.0
        self.pipes: list[Pipe] = []
        self._timer: WarpTimer | None = None
        self._last_tick = -math.inf
        self._quantum_s = quantum_s
        self._in_tick = False
        self._bin_s = bin_s
        self.bins: list[int] = []
        self._warp.add_sync(self.settle)  # a reader at an exact time gets what is owed until then

    def clock(self) -> float:
        """Seconds of link time since this link started (pauses of the warp clock left out)."""
        return self._warp.now() - self._clock0

    def add_fault(self, window: FaultWindow) -> None:
        self.model = self.model.with_window(window)

    def attach(self, pipe: Pipe) -> None:
        self.pipes.append(pipe)

    def detach(self, pipe: Pipe) -> None:
        if pipe in self.pipes:
            self.pipes.remove(pipe)
        if not self.pipes and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        self._warp.remove_sync(self.settle)
        self._closed_at = self.clock()
        self.pipes.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def notify(self, *, head: bool = False) -> None:
        """A pipe has new data or its receiver drained: start pacing if the link was idle. On loose
        timers the `head` of an answer (its first bytes from the server) is woken for as a tail is
        (`_TAIL_LEAD_S`): its first packet leaves within the lead of its time, not behind the timer
        floor. (Only an answer's head: the chunks a live channel pushes later in the same answer keep
        the floor, which the live player's chunk timer is calibrated on; docs/LIVE-EMULATION.md.)"""
        if self._timer is not None or self._in_tick:
            return
        now = self.clock()
        self._catch_up(self.model.bytes_until(now))
        self._head = head and bool(self._tail_lead_s)
        if self._tail_due(now) or self._head_due(now):
            self._tick()  # an answer's head or whole small answer due within the lead leaves now
            return
        self._schedule(now)

    def settle(self) -> None:
        """A pipe is about to join or leave the backlogged set: release now what the link owes the
        pipes backlogged until now. Otherwise the next tick would share a whole quantum's capacity
        with a pipe that was not there for it (or not give it to one that was), and a response
        that starts while another runs would be up to half a quantum (at 10x, 10 ms of trace time)
        off the link model's sharing."""
        if self._timer is None or self._in_tick:
            return
        self._timer.cancel()
        self._timer = None
        self._tick()

    def _catch_up(self, available: float) -> None:
        """Drop the capacity of an idle spell; what a throttled sender was owed (one buffer) stays."""
        self.cursor = max(self.cursor, available - (self._owed_limit_bytes if self._owed else 0))
        self._owed = False

    def _queues(self) -> list[int]:
        """The queue lengths of the pipes the link can serve now."""
        return [len(p.buf) for p in self.pipes if p.buf and not p.sink_paused]

    def _tail_wake(self, queues: list[int]) -> float:
        """When the link wakes for the shortest queue's last byte: when it is due, shared fairly,
        less the tail lead (a tick then releases it whole: `_share`)."""
        return self.model.time_for_bytes(self.cursor + len(queues) * min(queues)) - self._tail_lead_s

    def _tail_due(self, now: float) -> bool:
        """Whether, on loose timers, some queue's tail is due within the tail lead of `now`."""
        queues = self._queues() if self._tail_lead_s else []
        return bool(queues) and self._tail_wake(queues) <= now

    def _head_wake(self, queues: list[int]) -> float:
        """When the link wakes for the first packet of a burst (`_head`): when it is due, less the lead."""
        return self.model.time_for_bytes(self.cursor + min(_SEGMENT_BYTES, sum(queues))) - self._tail_lead_s

    def _head_due(self, now: float) -> bool:
        """Whether a burst's first packet (`_head`, loose timers) is due within the lead of `now`."""
        queues = self._queues() if self._head else []
        return bool(queues) and self._head_wake(queues) <= now

    def _schedule(self, now: float) -> None:
        queues = self._queues()
        if not queues:
            return
        pending = sum(queues)
        due = self.model.time_for_bytes(self.cursor + min(_SEGMENT_BYTES, pending))
        # The floor keeps float rounding (a budget of 0.99 bytes) from spinning the loop.
        floor = now + self._min_sleep_s
        if self._head:
            # A burst's head on loose timers: woken as a tail is, the lead before it is due, and not
            # a quantum after the last tick: the link was idle (`notify` marks a head only when no
            # tick was due). An origin's headers often come alone, a whole answer due within the
            # lead that leaves at once, and its body a moment later: that body's first packet waited
            # a quantum behind the headers' tick (2.5 wall ms at 4x, 10 ms of session time on each
            # such TTFB and, on the join's requests, on the first frame; docs/LIVE-EMULATION.md).
            at = max(self._head_wake(queues), now + _MIN_SLEEP_BOUNDED_S)
        else:
            at = max(due, self._last_tick + self._quantum_s, floor)
        # Shared fairly, the shortest queue empties once each ready pipe has had as much: if that is
        # before the next quantum, tick when its last byte is due (a response sharing the link ends
        # when the model says, not at the next quantum). With one pipe, that is the whole queue.
        # On loose timers the wake for that tail comes `_tail_lead_s` before it is due, and the tick
        # releases it whole (`_share`): it leaves within the lead either side of its due time.
        drained = self._tail_wake(queues)
        if drained < at:
            at = max(drained, now + (_MIN_SLEEP_BOUNDED_S if self._tail_lead_s else self._min_sleep_s))
        # Also wake on stats bin edges: bytes due in a bin leave in it, even from a burst at its end.
        next_bin = (math.floor(now / self._bin_s) + 1) * self._bin_s
        edge = min(self._changes.next_after(now), self.model.next_fault_edge_s(now), next_bin)
        if now + self._min_sleep_s <= edge < at:
            at = edge
        self._timer = self._warp.call_at(self._clock0 + at, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._in_tick = True
        head, self._head = self._head, False
        try:
            now = self.clock()
            available = self.model.bytes_until(now)
            ready = [p for p in self.pipes if p.buf and not p.sink_paused]
            # A budget due at this time, less float rounding: link times are loop times less `_clock0`
            # (about 1e-11 s of rounding, 1e-5 bytes at 10x), and a byte short would wait a whole tick.
            budget = int(available - self.cursor + 1e-3)
            # What is due by the tail lead: a queue it empties (a tail) goes now (see `_TAIL_LEAD_S`).
            tail_budget = budget
            if self._tail_lead_s:
                tail_budget = int(self.model.bytes_until(now + self._tail_lead_s) - self.cursor + 1e-3)
                if head:  # a burst's head: what is due by the lead goes now, borrowed from the next tick
                    budget = tail_budget
            if ready and tail_budget > 0:
                # A sender paused by our read-ahead limit is backlogged even if its queue runs dry
                # (a late tick may owe more than one buffer); any other dry queue is idle.
                throttled = any(p.source_paused for p in ready)
                sent = self._share(ready, budget, tail_budget)
                self._record(now, sent)
                queued = any(p.buf for p in ready)
                self.cursor += sent
                if not queued and not throttled:
                    self._catch_up(available)  # idle for the rest of the interval: lost, not banked
                self._owed = throttled and not queued
                self._last_tick = now
            elif not ready:
                self._catch_up(available)
        finally:
            self._in_tick = False
        self._schedule(now)

    @staticmethod
    def _share(ready: list[Pipe], budget: int, tail_budget: int) -> int:
        """Water-filling: each pipe gets an equal share, what a short queue leaves goes to the rest.
        A queue that its equal share of `tail_budget` (>= `budget`: what is due a tail lead later)
        empties goes whole: a tail due within the lead leaves now, not a late wake-up later."""
        ready.sort(key=lambda p: len(p.buf))
        remaining, remaining_tail = budget, tail_budget
        for i, pipe in enumerate(ready):
            queued = len(pipe.buf)
            if queued <= remaining_tail // (len(ready) - i):
                take = queued
            else:
                take = min(queued, max(remaining, 0) // (len(ready) - i))
            if take:
                pipe.release(take)
                remaining -= take
                remaining_tail -= take
        return budget - remaining

    def _record(self, now: float, sent: int) -> None:
        index = int(now / self._bin_s)
        if index >= len(self.bins):
            self.bins.extend([0] * (index + 1 - len(self.bins)))
        self.bins[index] += sent

    def stats(self) -> LinkStats:
        now = self.clock() if self._closed_at is None else self._closed_at
        count = max(len(self.bins), int(now / self._bin_s) + 1)
        delivered = self.bins + [0] * (count - len(self.bins))
        edges = [min(i * self._bin_s, now) for i in range(count + 1)]
        available = [self.model.bytes_until(t) for t in edges]
        capacity = tuple(b - a for a, b in zip(available, available[1:]))
        return LinkStats(started_s=self.origin, started_clock_s=self._clock0, bin_s=self._bin_s,
                         delivered_bytes=tuple(delivered), capacity_bytes=capacity)


class Pipe:
    """One direction of one proxied connection: source -> [link] -> delay line -> sink."""

    __slots__ = (
        "_loop", "_conn", "link", "_delay", "_limit", "source", "sink", "buf", "delayed", "_delayed_bytes",
        "_timer", "_last_due", "eof", "_abort", "done", "source_paused", "sink_paused", "written", "_warp",
        "on_write", "_lead_s", "_exact_lone",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        conn: PipeOwner,
        *,
        link: PacedLink | None,
        delay: Callable[[], float],
        limit_bytes: int,
        warp: WarpClock | None = None,
        exact_lone: bool = False,
    ) -> None:
        self._loop = loop
        self._warp = warp if warp is not None else WarpClock(loop)
        self._conn = conn
        # A request pipe: a live player's lone request leaves the delay line at its due time on the
        # clock, not within the lead either side of it (`_lead`, netsim.clock `leave_out_lateness`).
        self._exact_lone = exact_lone
        self.link = link
        self._delay = delay
        self._limit = limit_bytes if link is not None else _DELAY_LINE_LIMIT_BYTES
        self.source: asyncio.Transport | None = None
        self.sink: asyncio.Transport | None = None
        self.buf = bytearray()  # read from the source, not yet released by the link
        self.delayed: deque[tuple[float, bytes]] = deque()  # released, waiting out the one-way delay
        self._delayed_bytes = 0
        self._timer: WarpTimer | None = None
        self._last_due = 0.0
        self.eof = False
        self._abort = False
        self.done = False
        self.source_paused = False
        self.sink_paused = False
        self.written = 0
        self.on_write: Callable[[], None] | None = None  # told after bytes were written to the sink
        # On a clock with loose timers the delay line leaves bytes within half a millisecond either
        # side of their due time, as the link does a tail (`_TAIL_LEAD_S`), not up to a ms after it.
        self._lead_s = _TAIL_LEAD_S if self._warp.loose_timers else 0.0
        if link is not None:
            link.attach(self)

    def feed(self, data: bytes, *, head: bool = False) -> None:
        """Bytes from the source (`head`: an answer's first bytes; `PacedLink.notify`)."""
        if self.done:
            return
        if self.link is None:
            self._emit(data)
        else:
            if not self.buf and not self.sink_paused:
                self.link.settle()  # this pipe joins the backlogged ones: its share starts now
            self.buf += data
            self.link.notify(head=head)
        self._flow_control()

    def feed_eof(self, *, abort: bool = False) -> None:
        """The source finished (abort: it was reset, so reset the sink once the data is out)."""
        self.eof = True
        self._abort = self._abort or abort
        self._maybe_finish()

    def release(self, size: int) -> None:
        """Called by the link: `size` bytes may cross the bottleneck now."""
        chunk = bytes(self.buf[:size])
        del self.buf[:size]
        self._emit(chunk)
        self._flow_control()
        self._maybe_finish()

    def pause_sink(self) -> None:
        if self.link is not None and self.buf and not self.sink_paused:
            self.link.settle()  # this pipe leaves the backlogged ones: what it was owed goes first
        self.sink_paused = True
        self._flow_control()

    def resume_sink(self) -> None:
        if self.link is not None and self.buf and self.sink_paused:
            self.link.settle()  # this pipe rejoins the backlogged ones: its share starts now
        self.sink_paused = False
        self._flow_control()
        if self.link is not None:
            self.link.notify()

    def kill(self) -> None:
        """Drop everything: the sink or the whole connection is gone."""
        self.done = True
        self.buf.clear()
        self.delayed.clear()
        self._delayed_bytes = 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.link is not None:
            self.link.detach(self)

    def _emit(self, chunk: bytes) -> None:
        delay_s = self._delay()
        if delay_s <= 0 and not self.delayed and self.sink is not None:
            self._write(chunk)
            return
        due = max(self._warp.now() + delay_s, self._last_due)  # FIFO even if the delay shrinks
        self._last_due = due
        self.delayed.append((due, chunk))
        self._delayed_bytes += len(chunk)
        if self._timer is None:
            self._timer = self._warp.call_at(due - self._lead(), self._flush)

    def _lone(self) -> bool:
        """Whether the delay line carries a live player's lone request on loose timers (`exact_lone`,
        netsim.clock `lone_request`): it leaves at its due time on the clock, with no lead."""
        return self._exact_lone and self._warp.lone_request and self._warp.loose_timers

    def _lead(self) -> float:
        """How long before their due time the delay line's bytes may leave (none for a lone request)."""
        return 0.0 if self._lone() else self._lead_s

    def _flush(self) -> None:
        self._timer = None
        if self.sink is None:
            return
        lead = self._lead()
        now = self._warp.now()
        if self._lone() and self.delayed:
            # Sent at its due time whatever the loop's wake-up: a timer armed with the lead (before the
            # request was alone) waits for it; one that ran late has its lateness left out.
            due = self.delayed[0][0]
            if now < due - 1e-9:
                self._timer = self._warp.call_at(due, self._flush)
                return
            self._warp.leave_out_lateness(due)
            now = max(self._warp.now(), due)
        while self.delayed and self.delayed[0][0] <= now + lead:
            _, chunk = self.delayed.popleft()
            self._delayed_bytes -= len(chunk)
            self._write(chunk)
        if self.delayed:
            self._timer = self._warp.call_at(self.delayed[0][0] - self._lead(), self._flush)
        self._flow_control()
        self._maybe_finish()

    def start_sink(self, sink: asyncio.Transport) -> None:
        """The sink connected: deliver what is already due."""
        self.sink = sink
        if self.delayed and self._timer is None:
            self._timer = self._warp.call_at(self.delayed[0][0] - self._lead(), self._flush)

    def _write(self, chunk: bytes) -> None:
        if self.sink is None or self.sink.is_closing():
            return
        self.written += len(chunk)
        self.sink.write(chunk)
        if self.on_write is not None:
            self.on_write()

    def _flow_control(self) -> None:
        if self.source is None or self.done:
            return
        backlog = len(self.buf) if self.link is not None else self._delayed_bytes
        # A shaped pipe throttles its sender by the read-ahead buffer alone (a full receiver stops
        # the link, the buffer fills); an unshaped one must pass the receiver's backpressure on.
        blocked = backlog >= self._limit or (self.link is None and self.sink_paused)
        if blocked and not self.source_paused:
            self.source_paused = True
            self.source.pause_reading()
        elif self.source_paused and not blocked and backlog < self._limit // 2:
            self.source_paused = False
            if not self.source.is_closing():
                self.source.resume_reading()

    def _maybe_finish(self) -> None:
        if self.done or not self.eof or self.buf or self.delayed or self.sink is None:
            return
        self.done = True
        if self.link is not None:
            self.link.detach(self)
        if not self.sink.is_closing():
            if self._abort:
                self.sink.abort()
            elif self.sink.can_write_eof():
                try:
                    self.sink.write_eof()
                except OSError:  # the peer is already gone (ENOTCONN): nothing left to tell it
                    self.sink.abort()
        self._conn.pipe_finished()
