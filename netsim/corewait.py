"""The event loop's time less its thread's wait for a core, for an emulation clock (netsim.clock).

On a loaded machine the emulation's process waits for a core: its thread is runnable, not running,
and nothing in its loop moves (the shaper, the player, an in-process server). At a time-warp of K
each wall second of that is K seconds of trace and channel time that the emulated world should not
have lived. Linux measures the wait per thread: `/proc/self/task/<tid>/schedstat`, second field,
the run delay (nanoseconds runnable but not running), credited as each wait ends, when the thread
gets its core again. Read by the thread itself it is therefore exact up to the read: every wait so
far has ended. `RunDelay` keeps the file open and reads it again with one `pread`; `CoreFreeLoop`
is an event loop's time with that wait left out, as a `WarpClock` reads its loop (`run_delay=`).
Where the kernel does not give it (not Linux, no /proc), `RunDelay.open` is None: nothing is left out.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from typing import Any, Protocol


class LoopTime(Protocol):
    """What a `WarpClock` uses of its event loop."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> asyncio.TimerHandle: ...

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> asyncio.TimerHandle: ...

    def create_future(self) -> asyncio.Future[Any]: ...


class RunDelay:
    """One thread's wait for a core so far (seconds since it started; `seconds()`), from its schedstat."""

    __slots__ = ("_fd", "thread_id")

    def __init__(self, fd: int, thread_id: int) -> None:
        self._fd = fd
        self.thread_id = thread_id

    @classmethod
    def open(cls, thread_id: int | None = None) -> RunDelay | None:
        """The reader of thread `thread_id` of this process (default: the calling thread, which should be
        the one that reads it: see the module's docstring); None where the kernel does not say."""
        tid = threading.get_native_id() if thread_id is None else thread_id
        try:
            fd = os.open(f"/proc/self/task/{tid}/schedstat", os.O_RDONLY)
        except OSError:
            return None
        reader = cls(fd, tid)
        try:
            reader.seconds()
        except (OSError, IndexError, ValueError):
            reader.close()
            return None
        return reader

    def seconds(self) -> float:
        """The run delay so far, in seconds (the file read again from its start: the kernel writes it anew)."""
        return int(os.pread(self._fd, 128, 0).split(None, 2)[1]) / 1e9

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class CoreFreeLoop:
    """An event loop's time (`time()`) less the wait for a core that `run_delay()` (cumulative seconds of
    the loop's thread, `RunDelay.seconds`) has counted since this was made; `call_at` takes that time.

    A wait found at a read lies wholly between that read and the one before (the thread ran at both), so
    the time never steps back (it is also held at its last reading against the two clocks' noise). A
    timer armed before a wait then wakes early on this time; `WarpClock` re-arms it (`call_at` maps
    with what was left out by the last read)."""

    __slots__ = ("_loop", "_run_delay", "_delay0_s", "_last_s", "left_out_s")

    def __init__(self, loop: LoopTime, run_delay: Callable[[], float]) -> None:
        self._loop = loop
        self._run_delay: Callable[[], float] | None = run_delay
        self._delay0_s = run_delay()
        self._last_s = -float("inf")
        self.left_out_s = 0.0  # loop seconds waited for a core since this was made, as of the last read

    def time(self) -> float:
        t = self._loop.time()
        run_delay = self._run_delay
        reading = t - (self.left_out_s if run_delay is None else run_delay() - self._delay0_s)
        if reading < self._last_s:
            reading = self._last_s
        self._last_s = reading
        self.left_out_s = t - reading
        return reading

    def stop(self) -> None:
        """Leave out no more waits from now on (those left out stay out); `run_delay` is not read again."""
        self.time()
        self._run_delay = None

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> asyncio.TimerHandle:
        return self._loop.call_at(when + self.left_out_s, callback, *args)

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> asyncio.TimerHandle:
        return self._loop.call_later(delay, callback, *args)

    def create_future(self) -> asyncio.Future[Any]:
        return self._loop.create_future()
