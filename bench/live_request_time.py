"""Where an emulated live request's time goes, per hop, at several time-warp factors.

    python bench/live_request_time.py [--speeds 1,4,10] [--duration-s 24] [--rtt-ms 80] [--dump FILE]

One emulated live session per speed K (dynamic over a constant 5 Mbit/s link, the demo channel, the
stack in its own processes: `abrkit run --live --mode emulate --stack-processes`), with the hops of
each media request timed on the loop's clock (wall) and on the link's `WarpClock` (session time =
clock x K): the player building and sending it (to the shaper's read), the request's delay line (the
RTT), the stack (held: no session time), the answer's first packet through the paced link, the hop
back to the player and its headers, the first body piece. The reference, measured in the same run, is
the link model's own time to first byte (the RTT plus the first packet's crossing): the table gives
the emulated TTFB's excess over it in session ms and as a ratio, and the player process's CPU ms in
the client's own hops of a request (building and sending it; its answer's first write to the first
body piece read; the stack runs elsewhere). A hop's wall ms are nearly constant in K,
so its session ms grow with K: that is what the excess at 10x is made of. The hops are timed by
wrapping the shaper's and the live player's methods in this process (instrumentation only: the
session runs as `abrkit run` runs it). Asserts nothing; about 45 s (24 s of channel at 1x).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import netsim.shaper as shaper
import player.client.chunktimer as chunktimer
import player.client.liveplay as liveplay
from player.cli import main as abrkit

_HOPS = (("A", "B", "player builds and sends the request"), ("B", "C", "request delay line (RTT)"),
         ("C", "D", "stack (held: no session time)"), ("D", "E", "answer's first packet through the link"),
         ("E", "F", "hop to the player, its headers"), ("F", "G", "headers -> first body piece"))
_FIRST_PACKET_BYTES = 1448
_RATE_BPS = 5e6


class Recorder:
    """Per media request, the loop time and warp-clock reading at each hop (the first of each)."""

    def __init__(self) -> None:
        self.clock: Any = None
        self.requests: list[dict[str, tuple[float, float, float]]] = []  # hop: (loop s, clock s, CPU s)
        self._open: dict[str, tuple[float, float, float]] | None = None

    def mark(self, hop: str) -> None:
        if self.clock is None:
            return
        stamp = (asyncio.get_running_loop().time(), self.clock.now(), time.process_time())
        if hop == "A":
            self._open = {"A": stamp}
        elif self._open is not None and hop not in self._open:
            self._open[hop] = stamp
            if hop == "G":
                if len(self._open) == 7:  # every hop seen (a request whose write the shaper missed is left out)
                    self.requests.append(self._open)
                self._open = None


def _wrap(owner: Any, name: str, before: Callable[[Any], None]) -> Callable[[], None]:
    original = getattr(owner, name)

    def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        before(self)
        return original(self, *args, **kwargs)

    setattr(owner, name, wrapped)
    return lambda: setattr(owner, name, original)


def instrument(rec: Recorder) -> list[Callable[[], None]]:
    """Wrap the hops' methods; returns the undo callbacks."""
    def connection(conn: Any) -> None:
        rec.clock = conn._shaper.clock

    def answer(conn: Any) -> None:
        if conn._held:
            rec.mark("D")

    def piece(timer: Any) -> None:
        if timer.first_byte_s is None:
            rec.mark("G")

    undo = [_wrap(shaper._Connection, "upstream_made", connection),
            _wrap(shaper._ClientProtocol, "data_received", lambda _: rec.mark("B")),
            _wrap(shaper._Connection, "request_delivered", lambda _: rec.mark("C")),
            _wrap(shaper._Connection, "response_began", answer),
            _wrap(shaper._Connection, "response_written", lambda _: rec.mark("E")),
            _wrap(liveplay.LivePlayer, "channel_headers", lambda _: rec.mark("A")),
            _wrap(chunktimer.ChunkTimer, "feed", piece)]
    read = liveplay.LivePlayer._read

    async def timed_read(self: Any, *args: Any, **kwargs: Any) -> Any:
        rec.mark("F")
        return await read(self, *args, **kwargs)

    liveplay.LivePlayer._read = timed_read  # type: ignore[method-assign]
    undo.append(lambda: setattr(liveplay.LivePlayer, "_read", read))
    return undo


def one_speed(speed: float, duration_s: float, rtt_ms: float, out: Path) -> Recorder:
    rec = Recorder()
    undo = instrument(rec)
    try:
        code = abrkit(["run", "--live", "--abr", "dynamic", "--traces", f"constant:{_RATE_BPS:g}",
                       "--video-or-title", "demo", "--mode", "emulate", "--speed", f"{speed:g}",
                       "--live-duration-s", f"{duration_s:g}", "--rtt-ms", f"{rtt_ms:g}", "--stack-processes",
                       "--out", str(out)])
    finally:
        for u in undo:
            u()
    if code:
        raise SystemExit(f"abrkit run --live failed at {speed:g}x (exit {code})")
    return rec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speeds", default="1,4,10")
    parser.add_argument("--duration-s", type=float, default=24.0)
    parser.add_argument("--rtt-ms", type=float, default=80.0)
    parser.add_argument("--dump", type=Path, help="write each request's hop stamps here (JSON: speed -> requests)")
    args = parser.parse_args()
    speeds = [float(s) for s in args.speeds.split(",")]
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    model_ttfb_ms = args.rtt_ms + _FIRST_PACKET_BYTES * 8 / _RATE_BPS * 1000
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for speed in speeds:
            rows.append((speed, one_speed(speed, args.duration_s, args.rtt_ms, Path(tmp) / f"x{speed:g}")))
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    if args.dump is not None:
        args.dump.write_text(json.dumps({f"{speed:g}": rec.requests for speed, rec in rows}))
    print(f"\nreference: the link model's time to first byte, {model_ttfb_ms:.2f} ms (RTT + first packet)\n")
    print("| K | media requests | TTFB p50, session ms | excess, session ms | TTFB / model | "
          "excess mean / p90, session ms | client hops' CPU ms |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for speed, rec in rows:
        ttfbs = sorted((r["G"][1] - r["A"][1]) * 1000 * speed for r in rec.requests)
        ttfb = statistics.median(ttfbs)
        p90 = ttfbs[min(int(0.9 * len(ttfbs)), len(ttfbs) - 1)]
        # The player process's CPU (player, shaper, loop; the stack runs elsewhere) in the hops that are
        # the client's own: building and sending the request, and from the answer's first write to the
        # first body piece read.
        cpu_ms = statistics.median((r["B"][2] - r["A"][2] + r["G"][2] - r["E"][2]) * 1000 for r in rec.requests)
        print(f"| {speed:g}x | {len(rec.requests)} | {ttfb:.1f} | {ttfb - model_ttfb_ms:+.1f} | "
              f"{ttfb / model_ttfb_ms:.3f} | {statistics.fmean(ttfbs) - model_ttfb_ms:+.1f} / "
              f"{p90 - model_ttfb_ms:+.1f} | {cpu_ms:.2f} |")
    print("\nper hop, median: wall ms / session ms (mean session ms: the means add up to the TTFB's)")
    print("| hop | " + " | ".join(f"{s:g}x" for s, _ in rows) + " |")
    print("| --- |" + " --- |" * len(rows))
    for a, b, name in _HOPS:
        cells = []
        for speed, rec in rows:
            wall = statistics.median((r[b][0] - r[a][0]) * 1000 for r in rec.requests)
            session = statistics.median((r[b][1] - r[a][1]) * 1000 * speed for r in rec.requests)
            mean = statistics.fmean((r[b][1] - r[a][1]) * 1000 * speed for r in rec.requests)
            cells.append(f"{wall:.2f} / {session:.1f} ({mean:.1f})")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
