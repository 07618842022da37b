"""Stand-in transports for a `Pipe` on the real event loop (no sockets): the client's records the
clock reading of each write; the upstream's is never paused. Used by the pacing tests."""

from __future__ import annotations

from netsim.clock import WarpClock


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
