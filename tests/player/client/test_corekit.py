"""The core-wait gate of the time-warped live player tests (tests/player/client/corekit.py): it finds
a thread's wait for a core where the kernel gives it, bunched waits skip a timing claim with the
figures, and thin ones leave the claim to be judged."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from tests.player.client.corekit import CoreWait, core_wait, largest_wait_s, run_queue_wait_s

HAS_SCHEDSTAT = run_queue_wait_s(threading.get_native_id()) is not None


def test_the_largest_wait_is_found_within_the_window() -> None:
    # (wall s, cumulative wait s): 0.05 s waited in the first 0.3 s, 0.2 s between 1.0 and 1.2 s
    samples = [(0.0, 0.0), (0.3, 0.05), (1.0, 0.05), (1.1, 0.15), (1.2, 0.25), (2.0, 0.3)]
    assert largest_wait_s(samples, 0.25) == pytest.approx(0.2)
    assert largest_wait_s(samples, 0.05) == pytest.approx(0.0)  # no two samples that close
    assert largest_wait_s(samples, 0.1) == pytest.approx(0.1)
    assert largest_wait_s(samples, 5.0) == pytest.approx(0.3)
    assert largest_wait_s([], 1.0) == 0.0


def test_bunched_waits_skip_the_claim_and_thin_ones_leave_it() -> None:
    with core_wait() as cores:
        pass
    cores.samples = [(0.0, 0.0), (0.1, 0.1), (0.2, 0.2), (1.0, 0.25)]  # 0.2 s of waiting within 0.25 s
    cores.timing_claims_hold(speed=10.0, slack_s=2.0, window_s=0.25, what="x")  # 2.0 s of session: within
    cores.timing_claims_hold(speed=1.0, slack_s=0.5, window_s=0.25, what="x")
    with pytest.raises(pytest.skip.Exception, match=r"the stalls not judged .* waited 0\.200 s .*\(2\.00 s of session "
                                                    r"at 10x, over the claim's 1\.5 s; 0\.25 s in all"):
        cores.timing_claims_hold(speed=10.0, slack_s=1.5, window_s=0.25, what="the stalls")
    cores.samples = []  # the kernel gave nothing: the claim is judged
    cores.timing_claims_hold(speed=10.0, slack_s=0.0, window_s=0.25, what="x")


@pytest.mark.skipif(not HAS_SCHEDSTAT or not hasattr(os, "sched_setaffinity"), reason="no per-thread schedstat")
def test_a_thread_sharing_its_core_with_a_busy_process_is_found_waiting() -> None:
    """This thread and a busy child pinned to one core share it: about half the thread's time there is
    a wait for the core (more on a loaded machine, never less than a tenth of it)."""
    cpu = min(os.sched_getaffinity(0))
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})  # this thread only
    busy = subprocess.Popen([sys.executable, "-c", f"import os, time\nos.sched_setaffinity(0, {{{cpu}}})\n"
                             "end = time.monotonic() + 1.5\nwhile time.monotonic() < end: pass"])
    try:
        time.sleep(0.2)  # the child is up and spinning
        with core_wait() as cores:
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                pass
    finally:
        os.sched_setaffinity(0, before)
        busy.kill()
        busy.wait()
    waited = cores.waited_s
    assert waited is not None and waited >= 0.05, waited
    assert len(cores.samples) >= 10 and largest_wait_s(cores.samples, 0.5) == pytest.approx(waited, abs=0.06)


def test_the_sampler_reads_the_thread_that_made_it_and_stops() -> None:
    cores = CoreWait()
    assert cores.thread_id == threading.get_native_id()
    time.sleep(0.05)
    cores.stop()
    count = len(cores.samples)
    time.sleep(0.05)
    assert len(cores.samples) == count  # stopped
    if HAS_SCHEDSTAT:
        assert count >= 2 and cores.waited_s is not None and cores.waited_s >= 0.0


def test_what_the_clock_left_out_is_no_wait() -> None:
    left_out = [0.0]
    cores = CoreWait(sample_s=0.005)
    time.sleep(0.02)
    restarted = time.monotonic()
    cores.restart(lambda: left_out[0])
    if HAS_SCHEDSTAT:
        assert cores.samples and all(t >= restarted for t, _ in cores.samples)  # counted from the restart
    # 5 s more than the thread had waited in its life so far (a long suite on a busy machine makes
    # that seconds: 10.4 s in a CI run), so more than it can have waited by the end
    left_out[0] = (run_queue_wait_s(cores.thread_id) or 0.0) + 5.0
    time.sleep(0.03)
    cores.stop()
    if HAS_SCHEDSTAT:
        assert cores.samples[-1][1] < 0 < cores.samples[0][1] + 1e-9  # the wait less 5 s
        assert cores.waited_s is not None and cores.waited_s < -4.0
