"""Stand-in transports for a `Pipe` on the real event loop (no sockets): the client's records the
clock reading of each write; the upstream's is never paused. Used by the pacing tests, with
`paced_pipe` (a paced link and one pipe on it, as the shaper wires them)."""

from __future__ import annotations

from typing import Any

from netsim.clock import WarpClock
from netsim.faults import FaultedLink
from netsim.link import LinkModel
from netsim.pacing import PacedLink, Pipe, RateChanges
from netsim.trace import Trace


class Sink:
    """The client's transport: remembers the clock reading of every write."""

    def __init__(self, clock: WarpClock) -> None:
        self._clock = clock
        self.writes: list[tuple[float, int]] = []

    def write(self, data: bytes) -> None:
        self.writes.append((self._clock.now(), len(data)))

    def is_closing(self) -> bool:
        return False

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass


class Source:
    """The upstream's transport (never paused here: the chunks are smaller than the read-ahead)."""

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


class Owner:
    def pipe_finished(self) -> None:
        pass


def paced_pipe(loop: Any, clock: WarpClock, trace: Trace, quantum_s: float, *,
               limit_bytes: int = 256 * 1024) -> tuple[PacedLink, Pipe, Sink]:
    """A paced link of `trace` (the shaper's pacing, `quantum_s`, 1 s stats bins) on `loop` and `clock`,
    and one pipe on it whose client is a `Sink` (`feed` it the upstream's bytes)."""
    link = PacedLink(loop, FaultedLink(LinkModel(trace, payload_factor=1.0), ()), RateChanges(trace, quantum_s),
                     quantum_s=quantum_s, bin_s=1.0, owed_limit_bytes=256 * 1024, warp=clock)
    pipe = Pipe(loop, Owner(), link=link, delay=lambda: 0.0, limit_bytes=limit_bytes, warp=clock)
    pipe.source = Source()  # type: ignore[assignment]
    sink = Sink(clock)
    pipe.start_sink(sink)  # type: ignore[arg-type]
    return link, pipe, sink
