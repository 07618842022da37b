"""How long a test's event loop waited for a core, for the time-warped live player tests' timing claims.

A player at `--speed K` on the wall clock (the origin's channel runs on it too) loses K seconds of
session for every second its process waits for a core: nothing in the loop runs meanwhile, while
the channel and the player's clock move on, so the buffer drains K times as fast as the wait. Spread
thin, as many short preemptions, it does no harm (the player refills between them); bunched, it
drains the buffer, and the player stalls and then plays further behind the live edge, which no
player could avoid. The player's clock cannot simply leave that time out
(`LinkConfig.exclude_loop_stalls`): its heartbeat finds only stalls longer than its beat, and the
channel's media is made on the wall clock (docs/LIVE-SERVER.md, "Under load").

So these tests measure the wait itself: Linux's per-thread run-queue delay
(`/proc/self/task/<tid>/schedstat`, its second field: nanoseconds the thread was runnable but not
running), read every `SAMPLE_S` by a thread beside the loop's. The tests check what must hold at
any load (no early request, every segment a 200, the session played to its end) always, and their
timing claims (no stalls, the latency near its target) unless the loop's thread waited, within
some `window_s` of wall time, more than the claim's slack in session seconds over K; a run over it
skips with the figures, so the suite says why the claim was not judged. Where the kernel does not
give the delay, the claims are always checked.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SAMPLE_S = 0.01


def run_queue_wait_s(thread_id: int) -> float | None:
    """Seconds the thread (`threading.get_native_id()`) of this process has waited for a core since
    it started (schedstat's run delay); None where the kernel does not say."""
    try:
        fields = Path(f"/proc/self/task/{thread_id}/schedstat").read_text(encoding="ascii").split()
        return int(fields[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def largest_wait_s(samples: list[tuple[float, float]], window_s: float) -> float:
    """The most wait in any span of `window_s` between samples ((wall s, cumulative wait s), in time order).
    The kernel credits a wait as it ends (the thread gets its core), so one long wait shows whole in
    the span it ended in, and may be longer than the span."""
    best, first = 0.0, 0
    for wall_s, wait_s in samples:
        while wall_s - samples[first][0] > window_s:
            first += 1
        best = max(best, wait_s - samples[first][1])
    return best


class CoreWait:
    """The run-queue wait of the thread that made it (the test's event loop), sampled until `stop()`.
    `left_out_s`, once set, reads the seconds of it the player's clock left out so far (a clock
    leaving out the loop's stalls: `WarpClock.stalled_s`); the samples are then the wait less that."""

    def __init__(self, *, sample_s: float = SAMPLE_S) -> None:
        self.thread_id = threading.get_native_id()
        self.samples: list[tuple[float, float]] = []
        self.left_out_s: Callable[[], float] | None = None
        self._sample_s = sample_s
        self._stop = threading.Event()
        self._sample()
        self._sampler = threading.Thread(target=self._run, name="core-wait", daemon=True)
        if self.samples:
            self._sampler.start()

    def _sample(self) -> None:
        wait_s = run_queue_wait_s(self.thread_id)
        if wait_s is not None:
            left_out = self.left_out_s
            self.samples.append((time.monotonic(), wait_s - (left_out() if left_out is not None else 0.0)))

    def _run(self) -> None:
        while not self._stop.wait(self._sample_s):
            self._sample()

    def restart(self, left_out_s: Callable[[], float] | None = None) -> None:
        """Counts from now on (the wait before, a stack starting, was no session time), less what
        `left_out_s` reads (see the class)."""
        self.left_out_s = left_out_s
        self.samples = []
        self._sample()

    def stop(self) -> None:
        if self._sampler.is_alive():
            self._stop.set()
            self._sampler.join()
            self._sample()

    @property
    def waited_s(self) -> float | None:
        """Seconds waited in all, less what the clock left out (None where it cannot be read)."""
        return self.samples[-1][1] - self.samples[0][1] if self.samples else None

    def timing_claims_hold(self, *, speed: float, slack_s: float, window_s: float, what: str) -> None:
        """Skips the rest of the test (the timing claims `what`) when within some `window_s` of wall
        time the loop's thread waited for a core more than `slack_s` session seconds at `speed`
        (`slack_s / speed` wall seconds: what the claim leaves to chance); returns otherwise."""
        if not self.samples:
            return
        bunched_s = largest_wait_s(self.samples, window_s)
        if bunched_s * speed <= slack_s:
            return
        net = " that its clock did not leave out" if self.left_out_s is not None else ""
        pytest.skip(f"{what} not judged on a loaded machine: the test's event loop waited {bunched_s:.3f} s for "
                    f"a core{net} in waits that ended within {window_s:g} s ({bunched_s * speed:.2f} s of session at {speed:g}x, over the "
                    f"claim's {slack_s:g} s; {self.waited_s:.2f} s in all); the load-free checks passed "
                    "(tests/player/client/corekit.py)")


@contextlib.contextmanager
def core_wait() -> Iterator[CoreWait]:
    """Samples the calling thread's wait for a core over the block."""
    wait = CoreWait()
    try:
        yield wait
    finally:
        wait.stop()
