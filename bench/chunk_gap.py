"""Pieces a late loop read back to back, in live emulation: one session of `bench/live_segments.py`
(its own figures printed first), the live player's chunked bodies kept as their pieces came, and
replayed in order through the chunk timer with the live player's back-to-back gap and without it
(every pair of pieces counted toward the link's rate, as before wave 10), each body hinted with the
rate the previous replay ended on, as the player does. The paired replay is the figure load does not
move; how many pairs a loop reads back to back is what load moves (docs/LIVE-EMULATION.md,
"Pieces read back to back").

    python bench/chunk_gap.py --protocol hls --abr bola --trace norway_bus_15 --speed 4

Takes `bench/live_segments.py`'s arguments; about 20 s wall (60 s of session at 4x). Prints the
load average beside. Asserts nothing."""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import live_segments  # noqa: E402

import player.client.liveplay as liveplay  # noqa: E402
from player.client.chunktimer import ChunkTimer  # noqa: E402


class _Recorded(ChunkTimer):
    """The live player's chunk timer, keeping each piece as it came and how it was made."""

    bodies: list[_Recorded] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.args, self.kwargs = args, kwargs
        self.pieces: list[tuple[float, bytes]] = []
        _Recorded.bodies.append(self)

    def feed(self, t: float, piece: bytes) -> list[Any]:
        self.pieces.append((t, bytes(piece)))
        return super().feed(t, piece)


def _chain(bodies: list[_Recorded], *, gap: bool) -> tuple[list[float], list[float]]:
    """Each body's sample (bit/s; NaN for none) and the rate (bytes/s) it ended on, replayed in order."""
    rate: float | None = None
    samples, rates = [], []
    for i, body in enumerate(bodies):
        kwargs = dict(body.kwargs)
        kwargs.pop("left_out_s", None)  # the player's clock as it stood then: not replayable
        if not gap:
            kwargs["back_to_back_s"] = 0.0
        if i:
            kwargs["rate_hint_Bps"] = rate
        timer = ChunkTimer(*body.args, **kwargs)
        for t, piece in body.pieces:
            timer.feed(t, piece)
        rate = timer.rate_Bps
        rates.append(rate or 0.0)
        active = timer.active_s()
        samples.append(len(timer.body) * 8 / active if active else float("nan"))
    return samples, rates


def main() -> None:
    liveplay.ChunkTimer = _Recorded  # type: ignore[misc]
    load_before = os.getloadavg()[0]
    live_segments.main()  # parses sys.argv: bench/live_segments.py's arguments
    bodies = _Recorded.bodies
    with_gap, rates_with = _chain(bodies, gap=True)
    without, rates_without = _chain(bodies, gap=False)
    pairs = [(a, b) for a, b in zip(with_gap, without, strict=True) if a == a and b == b]
    if not pairs:
        raise SystemExit("no chunked body to replay")
    ratios = sorted(a / b for a, b in pairs)
    print(f"\nback-to-back gap, {len(bodies)} bodies replayed; load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after")
    print(f"highest link rate (Mbit/s): with the gap {max(rates_with) * 8e-6:.2f}, "
          f"every pair counted {max(rates_without) * 8e-6:.2f}")
    print(f"sample with / without the gap: median {statistics.median(ratios):.4f}, min {ratios[0]:.4f}, "
          f"max {ratios[-1]:.4f}; {sum(r < 0.99 for r in ratios)} lower by >1%, {sum(r > 1.01 for r in ratios)} higher")
    speed = float(bodies[0].kwargs.get("back_to_back_s", 0.0)) / liveplay._BACK_TO_BACK_WALL_S
    gaps = sorted((b.pieces[i][0] - b.pieces[i - 1][0]) / speed * 1e3 for b in bodies for i in range(1, len(b.pieces)))
    if gaps:
        def at(q: float) -> float:
            return gaps[min(len(gaps) - 1, int(q * len(gaps)))]
        print(f"gaps between a body's pieces (wall ms): {len(gaps)}, {sum(g < liveplay._BACK_TO_BACK_WALL_S * 1e3 for g in gaps)} "
              f"under the gap ({liveplay._BACK_TO_BACK_WALL_S * 1e3:g} ms); min {gaps[0]:.3f}, p1 {at(0.01):.3f}, "
              f"p5 {at(0.05):.3f}, p10 {at(0.1):.3f}, median {at(0.5):.3f}")
    print(f"mean sample (Mbit/s): with {statistics.mean(a for a, _ in pairs) * 1e-6:.3f}, "
          f"without {statistics.mean(b for _, b in pairs) * 1e-6:.3f}")


if __name__ == "__main__":
    main()
