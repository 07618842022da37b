"""The warp clock leaving out its loop thread's wait for a core (netsim/corewait.py, `WarpClock(run_delay=)`).
On virtual time: an event loop whose thread can be kept off its core (`wait_for_core`: nothing runs,
and the run delay grows by it, as schedstat's does) or kept busy by a long callback (`busy`: its own
time, no wait); so the figures are exact. The last tests read this machine's schedstat."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace

import pytest

from netsim import synthetic
from netsim.clock import WarpClock
from netsim.corewait import CoreFreeLoop, RunDelay
from netsim.shaper import Shaper, ShaperConfig
from tests.netsim.loopkit import VirtualLoop


class WaitingLoop(VirtualLoop):
    """Virtual time: a callback runs at its time unless the loop's thread is off its core or busy
    then; it runs when the thread is back (late). `run_delay()` is the thread's wait so far."""

    def __init__(self) -> None:
        super().__init__()
        self.waited_s = 0.0

    def run_delay(self) -> float:
        return self.waited_s

    def wait_for_core(self, duration_s: float) -> None:
        """The thread is runnable but waits for a core: nothing runs; the kernel counts the wait."""
        self._t += duration_s
        self.waited_s += duration_s

    def busy(self, duration_s: float) -> None:
        """A callback runs this long (the thread's own time: no wait)."""
        self._t += duration_s


def _clocks(loop: WaitingLoop, **options: bool) -> tuple[WarpClock, WarpClock]:
    """The clock leaving the waits out, and the same clock without (today's where the kernel does not say)."""
    return (WarpClock(loop, run_delay=loop.run_delay, **options),  # type: ignore[arg-type]
            WarpClock(loop, **options))  # type: ignore[arg-type]


def test_a_wait_for_a_core_is_no_clock_time_and_the_channel_is_told_of_it() -> None:
    loop = WaitingLoop()
    clock, plain = _clocks(loop)
    loop.run_for(0.1)
    before, plain_before = clock.now(), plain.now()
    loop.wait_for_core(0.3)
    loop.run_for(0.05)
    assert clock.now() - before == pytest.approx(0.05, abs=1e-9)
    assert plain.now() - plain_before == pytest.approx(0.35, abs=1e-9)
    # the lag the player and the shaper stamp for the channel (paused_s x K) includes it
    assert clock.paused_s() == pytest.approx(0.3, abs=1e-9) and clock.core_waited_s == pytest.approx(0.3, abs=1e-9)
    assert plain.paused_s() == pytest.approx(0.0, abs=1e-9) and plain.core_waited_s == 0.0
    # a hold stands still however long; a wait within it is the wait's, not the server's
    clock.hold()
    held_at = clock.now()
    loop.run_for(0.1)
    loop.wait_for_core(0.2)
    loop.run_for(0.1)
    assert clock.now() == held_at
    clock.release()
    assert clock.held_s == pytest.approx(0.2, abs=1e-9) and clock.core_waited_s == pytest.approx(0.5, abs=1e-9)
    assert clock.paused_s() == pytest.approx(0.7, abs=1e-9)


def test_many_short_waits_the_heartbeat_misses_are_all_left_out() -> None:
    # A live link's clock (the heartbeat, loose timers). 100 waits of 0.9 ms, each within the beat's
    # 1 ms slack, as a loaded machine's preemptions come: the heartbeat leaves none of them out.
    loop = WaitingLoop()
    clock, covered = _clocks(loop, cover_stalls=True, exact_timers=False)
    start, covered_start = clock.now(), covered.now()
    for _ in range(100):
        loop.run_for(0.004)
        loop.wait_for_core(0.0009)
    loop.run_for(0.001)
    # (each reading may stand at its horizon, a beat and its slack past the last beat: 6 ms)
    assert 0.491 - 0.006 - 1e-9 <= covered.now() - covered_start <= 0.491 + 1e-9 and covered.stalled_s < 1e-9
    assert 0.401 - 0.006 - 1e-9 <= clock.now() - start <= 0.401 + 1e-9
    assert clock.core_waited_s == pytest.approx(0.09, abs=1e-9) and clock.stalled_s < 1e-9
    clock.close()
    covered.close()


def test_the_heartbeat_leaves_out_the_rest_of_a_stall_and_never_the_wait_again() -> None:
    # A callback runs 50 ms (the process's own time), then the thread waits 200 ms for a core.
    loop = WaitingLoop()
    clock, covered = _clocks(loop, cover_stalls=True, exact_timers=False)
    loop.run_for(0.0201)
    before, stalled = clock.now(), clock.stalled_s
    covered_stalled = covered.stalled_s
    loop.busy(0.05)
    loop.wait_for_core(0.2)
    loop.run_for(0.0001)
    assert clock.core_waited_s == pytest.approx(0.2, abs=1e-9)
    # what the heartbeat found is the 50 ms, less the beat and slack it lets the clock run on
    assert 0.05 - 0.006 - 1e-9 <= clock.stalled_s - stalled <= 0.05
    assert 0.25 - 0.006 - 1e-9 <= covered.stalled_s - covered_stalled  # (without the reader: the whole stall)
    assert 0.0 <= clock.now() - before <= 0.006 + 0.0001 + 1e-9
    assert clock.paused_s() == pytest.approx(clock.core_waited_s + clock.stalled_s, abs=1e-9)
    clock.close()
    covered.close()


def test_a_timer_late_by_a_wait_runs_at_its_time_with_no_lateness_left_out() -> None:
    # A bounded clock (exact timers): a timer due in 10 ms, and the thread off its core from 4 to 54 ms.
    loop = WaitingLoop()
    clock, plain = _clocks(loop, cover_stalls=True)
    created = loop.time()
    runs: dict[str, tuple[float, float]] = {}
    for name, each in (("clock", clock), ("plain", plain)):
        due = each.now() + 0.01
        each.call_at(due, lambda name=name, each=each, due=due: runs.setdefault(name, (each.now() - due, loop.time())))
    loop.run_for(0.004)
    loop.wait_for_core(0.05)
    loop.run_for(0.02)
    # Both read exactly the due time as it runs. This one left out the wait itself, no stall, and ran
    # the timer when its clock reached the time, 50 ms on (the wake-up armed before the wait came
    # early on its time, and was armed again). The plain clock's beat, late by the wait, left out what
    # ran past its horizon (6 ms) as a stall: 48 ms, and its timer ran 4 ms after the thread came back.
    assert runs["clock"] == (0.0, pytest.approx(created + 0.06, abs=1e-9))
    assert clock.core_waited_s == pytest.approx(0.05, abs=1e-9)
    assert clock.stalled_s == pytest.approx(0.0, abs=1e-9) and clock.late_s == pytest.approx(0.0, abs=1e-9)
    assert runs["plain"] == (0.0, pytest.approx(created + 0.058, abs=1e-9))
    assert plain.stalled_s == pytest.approx(0.048, abs=1e-9) and plain.core_waited_s == 0.0
    clock.close()
    plain.close()


def test_a_closed_clock_leaves_out_no_more_waits_and_no_longer_reads_them() -> None:
    loop = WaitingLoop()
    reads = 0

    def run_delay() -> float:
        nonlocal reads
        reads += 1
        return loop.waited_s

    clock = WarpClock(loop, run_delay=run_delay)  # type: ignore[arg-type]
    loop.wait_for_core(0.1)
    clock.close()
    at_close, counted = clock.now(), reads
    loop.wait_for_core(0.2)
    loop.run_for(0.05)
    assert clock.now() - at_close == pytest.approx(0.25, abs=1e-9) and reads == counted
    assert clock.core_waited_s == pytest.approx(0.1, abs=1e-9)


def test_the_reading_never_steps_back() -> None:
    # schedstat counts on the scheduler's clock, the loop on CLOCK_MONOTONIC: a wait may read a hair longer
    # than the loop time that passed
    loop = WaitingLoop()
    free = CoreFreeLoop(loop, loop.run_delay)  # type: ignore[arg-type]
    first = free.time()
    loop.run_for(0.001)
    loop.waited_s += 0.0011
    assert free.time() == first and free.left_out_s == pytest.approx(0.001, abs=1e-12)


HAS_SCHEDSTAT = os.path.exists(f"/proc/self/task/{threading.get_native_id()}/schedstat")


def test_where_the_kernel_does_not_say_nothing_is_read() -> None:
    assert RunDelay.open(thread_id=2**31 - 1) is None  # no such thread: as where there is no /proc
    reader = RunDelay.open()
    assert (reader is not None) == HAS_SCHEDSTAT
    if reader is not None:
        first = reader.seconds()
        assert 0.0 <= first <= reader.seconds()
        reader.close()


@pytest.mark.skipif(not HAS_SCHEDSTAT or not hasattr(os, "sched_setaffinity"), reason="no per-thread schedstat")
async def test_a_shapers_clock_leaves_out_the_wait_for_a_core_it_measured() -> None:
    """The loop's thread and a busy child pinned to one core: a 0.5 s callback shares it, so a good
    part of it is a wait for the core (0.05 s at least), which the link's
    clock (and so the channel's lag) leaves out; without `exclude_core_waits` it leaves none out."""
    cpu = min(os.sched_getaffinity(0))
    before = os.sched_getaffinity(0)
    config = ShaperConfig(upstream_host="127.0.0.1", upstream_port=9, trace=synthetic.constant(5e6, duration_s=60),
                          exclude_core_waits=True)
    os.sched_setaffinity(0, {cpu})  # this thread only
    busy = subprocess.Popen([sys.executable, "-c", f"import os, time\nos.sched_setaffinity(0, {{{cpu}}})\n"
                             "end = time.monotonic() + 1.5\nwhile time.monotonic() < end: pass"])
    try:
        async with Shaper(config) as shaper, Shaper(replace(config, exclude_core_waits=False)) as plain:
            await asyncio.sleep(0.2)  # the child is up and spinning
            start, plain_start, waited_before = shaper.clock.now(), plain.clock.now(), shaper.clock.core_waited_s
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                pass
            took, plain_took = shaper.clock.now() - start, plain.clock.now() - plain_start
            waited = shaper.clock.core_waited_s - waited_before
            assert waited >= 0.05, waited
            # (a preemption between two readings, a few ms, is all that may come between them)
            assert plain_took - took == pytest.approx(waited, abs=0.01) and plain_took >= 0.5
            assert plain.clock.core_waited_s == 0.0
    finally:
        os.sched_setaffinity(0, before)
        busy.kill()
        busy.wait()
