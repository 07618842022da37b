"""The emulated world's clock: event-loop time that stands still while the server works.

The simulator's download model gives a server no time: a response's first byte leaves the server
the moment the request reaches it. A real stack takes a few milliseconds per request (10-15 ms on
this project's machine, more under load), and at a time-warp of K each wall millisecond is K
milliseconds of trace time, so that cost would count K times and shift QoE with K. A `WarpClock`
removes it: while any request is held at the upstream (`hold` when its bytes reach the server,
`release` at the first byte of the answer), the clock stops, and the link, its delay lines, the
player's session clock and its HTTP timeouts, which all read this clock, stop with it. What stays
is the trace's own time: at any K an emulated session then sees the link the simulator sees.
A live server that holds a request until the channel publishes what it asks for (an LL-HLS blocking
reload, a preload hint's part) says how long it waited (server.formats.servertiming); that wait is the
channel's time, not the stack's, and `release(waited_s=)` counts it: the clock moves on by it.
Where the player announced when the channel publishes it (`expected_waits`, netsim.waits), the
shaper holds the clock only from then on: the wait runs on the clock as it happens.

With `cover_stalls`, the clock also leaves out the times its event loop was stalled: a callback
that ran long, or the process waiting for a core on a loaded machine. Nothing in the loop (the
shaper, the player) moved meanwhile, so the emulated world should not have aged either; at a
time-warp of K a 50 ms stall would otherwise be half a second of trace time. A heartbeat every
`beat_s` re-anchors the clock, and between beats it runs at most `beat_s + slack_s` ahead: a beat
that comes later than that finds the excess left out (`stalled_s`), and the clock never jumps back.

With `cover_stalls`, the clock is also bounded by its own timers (`call_at`, `sleep`): it never
reads past the due time of a timer that has not run yet. A timer the loop runs late (epoll's
millisecond rounding, a busy loop, a loaded machine) then runs with the clock reading exactly its
due time, and the lateness is left out like a stall: a link paced on these timers releases its bytes
at the link model's times, and a player's sleep ends at its session time, at any K and any load.
`exact_timers=False` keeps only the heartbeat's bound: what a server outside this loop times on the
wall clock (the live channel's chunks, in emulation) then drifts less from this clock.

The hops between the player and the shaper are no time either (`hold_for_client`): from the moment
the shaper hands the player the last byte it had queued for a connection until the player acts
again (its next request reaches the shaper, or it starts to wait) or, if the answer was not
complete, until the server sends more (server time), the clock stands still. The simulator's
player decides and asks at the instant a download ends; with this, so does the emulated one,
whatever its decision and its HTTP client cost in CPU.
A live link cannot hold for its client so (its channel streams on the wall clock: a hold between two
chunks would stop the link). Only while the live player says its one open request is alone
(`lone_request`) does the clock leave out the player's own time before that request reaches the
shaper (`hold_for_player`) and its delay line's lateness (`leave_out_lateness`): nothing of the
player's streams then, and the server has not seen the request yet.

With `events_only` (a bounded clock whose every wait outside the model is held: the shaper with
`exclude_client_time`), the clock moves only at the model's events: it reads the due time of the
last timer it ran, or where a hold left it, and the loop's time between events is no clock time at
all. Without it, the CPU time between a hold's release and what the release sets off (the shaper
reading the answer's first bytes and starting to pace them; a request's bytes entering the delay
line) counts as link time: tens of microseconds, a millisecond of trace time at 10x, more when the
process loses its core just then, and at an outage in the trace a request that starts a few
milliseconds later can end hundreds of milliseconds later, so the same session took other decisions
from run to run. A clock with nothing due and nothing held for `idle_wall_s` of loop time runs on
with the loop from there (a server that stops mid-answer must still time out).

With `run_delay` (`netsim.corewait`: the loop thread's wait for a core so far, as Linux measures it),
the clock reads the loop's time less that wait (`CoreFreeLoop`): a process waiting for a core runs
nothing, so the emulated world does not age either, however short and many the waits (the heartbeat
finds only those past its slack). Everything above then runs on that time, so a beat or timer late
by a core wait finds nothing more to leave out (`stalled_s`, `late_s` count the rest; the wait is
`core_waited_s`), and `paused_s`, what the live channel is told, includes it.

`now` reads the clock (loop seconds, the left-out spans removed); `call_at` runs a callback at a
clock time; `wall_at` maps a clock time to the loop's time (None while held: nothing is due until it
runs again, and `on_resume` callbacks then reschedule); `sync` has every link paced on the clock
release what it owes until now (a reader that holds the clock at an exact time then sees the link
model's bytes by that time, not by the link's last tick).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import Callable

from netsim.corewait import CoreFreeLoop, LoopTime
from netsim.waits import ExpectedWaits

_ORDER = itertools.count()  # ties between timers due at the same clock time: first scheduled, first run


class WarpTimer:
    """A callback scheduled on a `WarpClock` (`WarpClock.call_at`); `cancel()` before it runs."""

    __slots__ = ("due_s", "callback", "cancelled", "_order", "_clock")

    def __init__(self, clock: WarpClock, due_s: float, callback: Callable[[], None]) -> None:
        self._clock = clock
        self.due_s = due_s
        self.callback = callback
        self.cancelled = False  # cancelled, or already run
        self._order = next(_ORDER)

    def __lt__(self, other: WarpTimer) -> bool:
        return (self.due_s, self._order) < (other.due_s, other._order)

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self._clock._cancelled(self)


class WarpClock:
    """Event-loop time without the spans a request was held at the server (and, with
    `cover_stalls`, without the loop's stalls)."""

    __slots__ = ("_loop", "_anchor_loop", "_anchor_clock", "_limit_loop", "_holds", "_resume_callbacks",
                 "_created_loop", "_created_clock", "_beat_s", "_slack_s", "_beat", "held_s", "holds_total",
                 "stalled_s", "_held_since", "_timers", "_timer_handle", "_bounded", "late_s", "timers_run",
                 "_client_hold", "client_holds", "client_timeouts", "_pinned", "holds_for_client", "_client_keys",
                 "_events_only", "_idle_wall_s", "_closed", "_syncs", "_cover_stalls", "_waits", "waited_s",
                 "_floor", "expected_waits", "lone_request", "_wall_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, *, cover_stalls: bool = False, beat_s: float = 0.005,
                 slack_s: float = 0.001, idle_wall_s: float = 0.5, exact_timers: bool = True,
                 run_delay: Callable[[], float] | None = None) -> None:
        if not (beat_s > 0 and slack_s >= 0 and idle_wall_s >= 0):
            raise ValueError("need beat_s > 0, slack_s >= 0 and idle_wall_s >= 0")
        self._wall_loop = loop  # `_loop` is its time less the waits for a core, with `run_delay`
        self._loop: LoopTime = loop if run_delay is None else CoreFreeLoop(loop, run_delay)
        now = loop.time()
        self._anchor_loop = now  # the clock read `_anchor_clock` at loop time `_anchor_loop`...
        self._anchor_clock = now
        self._limit_loop = math.inf  # ...and runs on with the loop up to this loop time
        self._created_loop = now
        self._created_clock = now
        self._holds = 0  # requests at the server right now
        self._held_since: float | None = None
        self._resume_callbacks: list[Callable[[], None]] = []
        self._beat_s, self._slack_s = beat_s, slack_s
        self._beat: asyncio.TimerHandle | None = None
        self.held_s = 0.0  # loop seconds left out while requests were held (closed holds; reporting)
        self.holds_total = 0  # requests held so far (reporting)
        self.stalled_s = 0.0  # loop seconds left out as stalls of the loop (reporting)
        self.waited_s = 0.0  # loop seconds held for a live channel's publication, counted (`release`)
        self._waits: list[tuple[float, float]] = []  # those spans (loop times) in the current stand-still
        # Where counting them moved the clock to: a bounded clock's timers due before it run late
        # without that lateness being left out (it is the channel's time).
        self._floor = -math.inf
        # Requests a player expects the live server to hold for publication, and until when on this
        # clock (netsim.waits): the shaper lets the clock run through that wait as it happens.
        self.expected_waits = ExpectedWaits()
        self._timers: list[WarpTimer] = []  # heap of `call_at` timers not run yet
        self._timer_handle: asyncio.TimerHandle | None = None  # the loop's wake-up for the earliest
        # The clock never reads past a timer that has not run (`exact_timers` False: stalls only, as
        # the heartbeat finds them; a timer the loop runs late is then link time, not left out).
        self._bounded = cover_stalls and exact_timers
        self._cover_stalls = cover_stalls
        self.late_s = 0.0  # loop seconds left out because a timer ran late (part of `stalled_s`)
        self.timers_run = 0  # (reporting)
        self._client_hold: asyncio.TimerHandle | None = None  # the safety expiry of a hold for the client
        self.holds_for_client = False  # whether `hold_for_client` holds (the shaper's exclude_client_time)
        self._client_keys: set[object] = set()  # what the clock waits for: connections, or None (the player)
        self.client_holds = 0  # holds for the client so far (reporting)
        self.client_timeouts = 0  # of which expired without the client acting (reporting)
        self._pinned: float | None = None  # the reading while a bounded clock runs its timers
        self._events_only = False  # the reading moves only at timers and holds (`events_only`)
        self._idle_wall_s = idle_wall_s  # ...unless nothing happened for this long (loop seconds)
        self._closed = False
        self._syncs: list[Callable[[], None]] = []  # `sync` callbacks (the shaper's links)
        # The live player says its one open request is alone on the link (`leave_out_lateness`)
        self.lone_request = False
        if cover_stalls:
            self._heartbeat()

    @property
    def bounded(self) -> bool:
        """Whether the clock never reads past a timer that has not run (`cover_stalls`)."""
        return self._bounded

    @property
    def loose_timers(self) -> bool:
        """Whether the clock leaves the loop's stalls out but not its timers' lateness (`cover_stalls`
        without `exact_timers`: live emulation): a timer runs when the loop wakes, up to a
        millisecond after its time (netsim.pacing leads its tails and delay line by half of that)."""
        return self._cover_stalls and not self._bounded

    @property
    def events_only(self) -> bool:
        """Whether the clock moves only at its timers and holds (see the module's docstring)."""
        return self._events_only

    @events_only.setter
    def events_only(self, value: bool) -> None:
        if value == self._events_only:
            return
        if value and not self._bounded:
            raise ValueError("events_only needs a bounded clock (cover_stalls=True)")
        if not self._holds and self._pinned is None:
            self._reanchor()  # the reading as it stands, in the mode it stands in
        self._events_only = value
        if not value and self._beat is None and self._bounded and not self._closed:
            self._heartbeat()

    @property
    def paused(self) -> bool:
        return self._holds > 0

    def paused_s(self) -> float:
        """Loop seconds left out so far (holds, the current one included, stalls and waits for a core)."""
        return (self._wall_loop.time() - self._created_loop) - (self.now() - self._created_clock)

    @property
    def core_waited_s(self) -> float:
        """Loop seconds left out as the loop thread's wait for a core (`run_delay`; part of `paused_s`)."""
        return self._loop.left_out_s if isinstance(self._loop, CoreFreeLoop) else 0.0

    def now(self) -> float:
        """The clock's time: event-loop seconds, the left-out spans removed."""
        if self._holds:
            return self._anchor_clock
        if self._pinned is not None:
            return self._pinned
        return self._reading_at(self._loop.time())

    def _reading_at(self, t: float) -> float:
        """The running clock's reading at loop time `t` (neither held nor pinned). A caller that also
        anchors at `t` reads the loop once: a second read would put the span between the two on both
        sides (clock time and, from the anchor on, held or stalled time)."""
        if self._events_only:  # stands at the last event, unless nothing happened for idle_wall_s
            reading = self._anchor_clock + max(t - self._anchor_loop - self._idle_wall_s, 0.0)
        else:  # never below the anchor: the limit may lie behind a re-anchoring that came late
            reading = self._anchor_clock + max(min(t, self._limit_loop) - self._anchor_loop, 0.0)
        if self._bounded and self._timers:
            return min(reading, self._timers[0].due_s)
        return reading

    def call_at(self, clock_s: float, callback: Callable[[], None]) -> WarpTimer:
        """Run `callback()` once the clock reads `clock_s` (now, if that is past); while held, later.
        A bounded clock (`cover_stalls`) reads exactly `clock_s` when the callback runs."""
        timer = WarpTimer(self, max(clock_s, self.now()), callback)
        heapq.heappush(self._timers, timer)
        if self._timers[0] is timer:
            self._arm()
        return timer

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> WarpTimer:
        return self.call_at(self.now() + delay_s, callback)

    def _cancelled(self, timer: WarpTimer) -> None:
        if self._timers and self._timers[0] is timer:  # a bounded clock stops waiting for it at once
            self._drop_cancelled()
            self._arm()

    async def sleep(self, duration_s: float, *, acts: bool = True) -> None:
        """Sleep `duration_s` seconds of this clock (on a bounded clock, to the exact reading). With
        `acts` (the player's own waits) the sleeper has acted (`client_acted`) and acts again on
        waking (`hold_for_client`: its hop back is no clock time); a bystander (a sampler) does not."""
        if acts:
            self.client_done(None)
        future = self._loop.create_future()

        def wake() -> None:
            if not future.done():
                if acts:
                    self.hold_for_client()
                future.set_result(None)

        timer = self.call_at(self.now() + max(duration_s, 0.0), wake)
        try:
            await future
        finally:
            timer.cancel()

    def _drop_cancelled(self) -> None:
        while self._timers and self._timers[0].cancelled:
            heapq.heappop(self._timers)

    def _arm(self) -> None:
        """(Re)schedule the loop's wake-up for the earliest timer (none while held)."""
        if self._timer_handle is not None:
            self._timer_handle.cancel()
            self._timer_handle = None
        self._drop_cancelled()
        if not self._timers or self._holds:
            return
        wall = self._anchor_loop + self._timers[0].due_s - self._anchor_clock
        self._timer_handle = self._loop.call_at(wall, self._run_timers)

    def _run_timers(self) -> None:
        self._timer_handle = None
        if self._holds:
            return  # `release` re-arms
        self._drop_cancelled()
        if not self._timers:
            return
        first = self._timers[0]
        t = self._loop.time()
        if t < self._anchor_loop + first.due_s - self._anchor_clock - 1e-9:
            self._arm()  # early: the loop's clock resolution, or armed for a timer cancelled since
            return
        if self._bounded:
            # The clock stood at the timer's due time while the loop was late: leave the lateness out.
            lateness = (self._anchor_clock + t - self._anchor_loop) - max(first.due_s, self._floor)
            if lateness > 0:
                self.late_s += lateness
                self.stalled_s += lateness
            self._anchor_at(first.due_s, t)
        # Every timer due at this reading runs now (in due order); the next one waits for its time.
        due = self.now() if not self._bounded else first.due_s
        # A bounded clock reads exactly `due` while its callbacks run (and what they set off at once).
        self._pinned = due if self._bounded else None
        try:
            while self._timers and (self._timers[0].cancelled or self._timers[0].due_s <= due):
                timer = heapq.heappop(self._timers)
                if timer.cancelled:
                    continue
                timer.cancelled = True  # ran: a late cancel() is a no-op
                self.timers_run += 1
                timer.callback()
                if self._holds:
                    break  # a callback held the clock: the rest run once it is released
        finally:
            if self._pinned is not None:
                self._pinned = None
                if not self._holds:  # the callbacks' own time is no clock time
                    self._anchor_at(max(due, self._floor), self._loop.time())
        self._arm()

    def wall_at(self, clock_s: float) -> float | None:
        """The loop time at which the clock reads `clock_s` if it runs on (None while held)."""
        if self._holds:
            return None
        return self._anchor_loop + clock_s - self._anchor_clock + self.core_waited_s

    def _anchor_at(self, clock_s: float, loop_s: float) -> None:
        """The clock reads `clock_s` at loop time `loop_s` and runs on from there, up to the beat's
        limit (the next beat plus its slack) while a heartbeat runs."""
        self._anchor_clock, self._anchor_loop = clock_s, loop_s
        if self._beat is not None:
            self._limit_loop = loop_s + self._beat_s + self._slack_s

    def _reanchor(self) -> float:
        """Anchor the clock's reading at the loop's time now; returns that loop time."""
        t = self._loop.time()
        offset = self._anchor_loop - self._anchor_clock
        running = not self._holds and self._pinned is None
        unbounded = self._anchor_clock + t - self._anchor_loop if running else None
        self._anchor_clock = self._reading_at(t) if running else self.now()  # the reading at `t` itself
        self._anchor_loop = t
        if unbounded is not None:  # what the beat's limit (or a timer not yet run) left out: a stall
            self.stalled_s += max(0.0, unbounded - max(self._anchor_clock, self._floor))
        if self._beat is not None:
            self._limit_loop = t + self._beat_s + self._slack_s
        if self._timer_handle is not None and abs((t - self._anchor_clock) - offset) > 1e-9:
            self._arm()  # the clock's reading moved against the loop's: so did its timers' wall times
        return t

    def _heartbeat(self) -> None:
        if self._events_only:  # nothing to bound: the reading moves at events only
            self._beat = None
            return
        if not self._holds:
            t = self._reanchor()  # counts what the limit left out in `stalled_s`
        else:
            t = self._loop.time()
        self._beat = self._loop.call_at(t + self._beat_s, self._heartbeat)
        if not self._holds:
            self._limit_loop = t + self._beat_s + self._slack_s

    def close(self) -> None:
        """Stop the heartbeat and drop pending timers (the clock keeps reading; it no longer leaves
        stalls or waits for a core out)."""
        self.client_acted()
        self._closed = True
        if self._events_only:  # from here on the clock reads on with the loop
            self._reanchor()
            self._events_only = False
            self._limit_loop = math.inf
        if self._timer_handle is not None:
            self._timer_handle.cancel()
            self._timer_handle = None
        self._timers.clear()
        if self._beat is not None:
            self._beat.cancel()
            self._beat = None
            self._reanchor()
            self._limit_loop = math.inf
        if isinstance(self._loop, CoreFreeLoop):
            self._loop.stop()

    def hold(self, *, counted: bool = True) -> None:
        """A request reached the server: stop the clock until its answer begins (nested holds count).
        `counted` False: a hold that is no request (an abandonment check's own span), left out of
        `holds_total`."""
        if not self._holds:
            self._reanchor()
            self._held_since = self._anchor_loop
            if self._timer_handle is not None:
                self._timer_handle.cancel()
                self._timer_handle = None
        self._holds += 1
        self.holds_total += counted

    def release(self, *, waited_s: float = 0.0) -> None:
        """A held request's answer began (or its connection closed): run on when none is held.

        `waited_s`: the last `waited_s` loop seconds of this hold were the server waiting for the
        live channel to publish what the request asked for (an LL-HLS blocking reload, a preload
        hint's part; the answer's `Server-Timing`, `publish_wait_s`), not the stack's own work: the
        channel's time, which the clock counts. It stood still meanwhile, so it moves on by those
        spans (their union with other requests' waits, within this stand-still) as it runs again;
        timers due in them run at once."""
        if self._holds == 0:
            raise RuntimeError("release() without a matching hold()")
        if not (math.isfinite(waited_s) and waited_s >= 0):
            raise ValueError(f"waited_s must be finite and >= 0, got {waited_s}")
        t = self._loop.time()
        if waited_s > 0:
            self._waits.append((t - waited_s, t))
        self._holds -= 1
        if self._holds:
            return
        assert self._held_since is not None
        waited = _union_s(self._waits, self._held_since, t)
        self._waits.clear()
        self.held_s += t - self._held_since - waited
        self.waited_s += waited
        self._held_since = None
        # The channel's time while held: the clock counts it (never reading below what an earlier
        # count reached, should a bounded clock have been held at a timer due before that).
        self._anchor_clock = max(self._anchor_clock + waited, self._floor)
        if waited > 0:
            self._floor = self._anchor_clock
        self._anchor_loop = t  # the clock reads on from where it stopped
        self._limit_loop = t + self._beat_s + self._slack_s if self._beat is not None else math.inf
        self._arm()
        for callback in list(self._resume_callbacks):
            callback()

    def hold_for_client(self, key: object = None, max_wall_s: float = 1.0) -> None:
        """The shaper handed the player the last bytes it had queued (`key`: that connection), or
        the player is about to act: stand still until it acts (`client_acted`), or at most
        `max_wall_s` of loop time (a player that never acts, say one that dropped the response, must
        not stop the world). Only with `holds_for_client`. A sleep on this clock that ends holds for
        its sleeper too: it acts on waking."""
        if not self.holds_for_client:
            return
        if not self._client_keys:
            self.hold()
            self.client_holds += 1
            self._client_hold = self._loop.call_later(max_wall_s, self._client_hold_expired)
        self._client_keys.add(key)

    def client_acted(self, key: object = None) -> None:
        """End the hold for connection `key` (more of its answer came from the server, or it closed),
        or (None) every hold for the client (the shaper stopped holding for it)."""
        self.client_done(*(list(self._client_keys) if key is None else [key]))

    def client_done(self, *keys: object) -> None:
        """End the holds for the client with these keys (None: the player's own; a connection's), and
        run again once none is left: one pipeline's request or wait does not end the hold that
        stands for another connection's server time."""
        if not self._client_keys:
            return
        self._client_keys.difference_update(keys)
        if self._client_keys:
            return
        assert self._client_hold is not None
        self._client_hold.cancel()
        self._client_hold = None
        self.release()

    def _client_hold_expired(self) -> None:
        self.client_timeouts += 1
        self._client_hold = None
        self._client_keys.clear()
        self.release()

    def leave_out_lateness(self, due_s: float) -> float:
        """On loose timers (live emulation), bytes due at clock time `due_s` leave late: the player's
        only open request (`lone_request`) reaching its server, on a timer the loop ran late. Nothing
        else of the player's streams meanwhile, so the lateness is left out as a bounded clock leaves
        out a late timer's (`late_s`, `stalled_s`): the clock reads `due_s` again. Before the bytes go,
        so the lag the request is stamped with (netsim.lagstamp) counts it. Returns the loop seconds
        left out (0 when held, not lone, or on time)."""
        if not (self.loose_timers and self.lone_request) or self._holds or self._pinned is not None:
            return 0.0
        due_s = max(due_s, self._floor)
        t = self._loop.time()  # one read: the lateness and the stall are measured at the same instant
        late = self._reading_at(t) - due_s
        if late <= 0:
            return 0.0
        self.stalled_s += self._anchor_clock + t - self._anchor_loop - due_s  # a stall past the beat's limit too
        self.late_s += late
        self._anchor_at(due_s, t)
        if self._timer_handle is not None:
            self._arm()  # the clock moved back against the loop: so did its timers' wall times
        return late

    def hold_for_player(self, max_wall_s: float = 0.05) -> None:
        """On loose timers, the live player acts with nothing of its own streaming: it is about to send
        its only open request (`lone_request`), or its lone request's answer is in and nothing else is
        open. Stand still until its next request's bytes reach the shaper (the shaper's
        `request_arrived`: `client_done(None)`), or it starts a sleep, or at most `max_wall_s` of loop
        time. Its decisions, its HTTP client's CPU and the loop's hop to the shaper are then no link
        time, as in the simulator; the channel follows, as the lag is stamped again when the request
        leaves the delay line (netsim.lagstamp). The caller knows nothing of its streams: only it may ask."""
        if not self.loose_timers or self._client_keys or self._closed:
            return
        self.hold(counted=False)
        self.client_holds += 1
        self._client_hold = self._loop.call_later(max_wall_s, self._client_hold_expired)
        self._client_keys.add(None)

    def add_sync(self, callback: Callable[[], None]) -> None:
        """Call `callback()` on `sync`: it brings what it paces up to the clock's reading."""
        self._syncs.append(callback)

    def remove_sync(self, callback: Callable[[], None]) -> None:
        if callback in self._syncs:
            self._syncs.remove(callback)

    def sync(self) -> None:
        """Bring every transfer paced on this clock up to its reading now: each link releases what
        it owes until now rather than at its next tick. A reader that then looks at what has arrived
        (the headless player's abandonment check, held at its exact time) sees what the link model
        delivered by now, whatever the pacing quantum (so at any time-warp)."""
        for callback in list(self._syncs):
            callback()

    def on_resume(self, callback: Callable[[], None]) -> None:
        """Call `callback()` each time the clock starts again after a hold."""
        self._resume_callbacks.append(callback)

    def remove_on_resume(self, callback: Callable[[], None]) -> None:
        if callback in self._resume_callbacks:
            self._resume_callbacks.remove(callback)


def _union_s(spans: list[tuple[float, float]], start: float, end: float) -> float:
    """The length of the union of `spans` (start, end) within [start, end]."""
    total, reached = 0.0, start
    for first, last in sorted(spans):
        first, last = max(first, reached), min(last, end)
        if last > first:
            total += last - first
            reached = last
    return total


def warp_of(clock: Callable[[], float]) -> WarpClock | None:
    """The `WarpClock` whose `now` `clock` is (None for any other clock)."""
    owner = getattr(clock, "__self__", None)
    return owner if isinstance(owner, WarpClock) else None


async def sleep_on(clock: Callable[[], float], duration_s: float, *, acts: bool = True) -> None:
    """Sleep until `clock()` (a `WarpClock.now` or any monotonic clock in loop seconds) has advanced
    by `duration_s`: a pause in the middle lengthens the wait in loop time. On a warp clock the sleep
    is one of its timers (`WarpClock.sleep`: a bounded clock then ends it at the exact reading)."""
    warp = warp_of(clock)
    if warp is not None:
        await warp.sleep(duration_s, acts=acts)
        return
    deadline = clock() + max(duration_s, 0.0)
    while True:
        remaining = deadline - clock()
        if remaining <= 0:
            return
        await asyncio.sleep(remaining)
