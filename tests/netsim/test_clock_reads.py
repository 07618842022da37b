"""What the warp clock leaves out is its holds, however far apart the lines that read its loop: a
reading that read the loop twice would count the span between the two reads both as clock time and
as held time (`paused_s` short of `held_s`: tests/netsim/test_clock_waits.py failed so under load). On
virtual time that moves on at every read (loopkit `SteppingLoop`), so the figures are exact and load
plays no part."""

from __future__ import annotations

import pytest

from netsim.clock import WarpClock
from tests.netsim.loopkit import SteppingLoop

STEP_S = 0.001  # between any two reads of the loop; a quiet machine's is about 0.5 us


@pytest.mark.parametrize("waited_s", [0.0, 0.06])
def test_the_clock_and_its_holds_add_up_to_the_loops_time_at_every_reading(waited_s: float) -> None:
    loop = SteppingLoop(STEP_S)
    clock = WarpClock(loop)  # type: ignore[arg-type]
    created = loop.reads[-1]
    for _ in range(3):
        clock.hold()
        loop.run_for(0.1)
        clock.release(waited_s=waited_s)  # the last `waited_s` of the hold counted, the rest left out
        loop.run_for(0.05)
    assert clock.held_s == pytest.approx(3 * (0.1 - waited_s), abs=10 * STEP_S)
    reading = clock.now()
    # clock time + held time == loop time, at the loop time the reading itself read
    assert reading - created == pytest.approx(loop.reads[-1] - created - clock.held_s, abs=1e-9)
    paused_s = clock.paused_s()  # reads the loop, then the clock (which reads it again)
    before, after = loop.reads[-2:]
    assert paused_s == pytest.approx(clock.held_s - (after - before), abs=1e-9)
