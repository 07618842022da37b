"""A chunk's early and late tails in live emulation: the live player's chunked bodies on a constant
link, each body's sample over the link's rate (median, p10, p90) as played, and its very piece
arrivals replayed through the chunk timer with the tail lead (as the live player has it) and
without it (late tails corrected only), and with and without the back-to-back gap (pieces a late
loop read together left out of the link's rate): the paired replays are the figures load does not move
(docs/LIVE-EMULATION.md, "Early and late tails").

    python bench/chunk_tails.py [--rate-bps 5e6] [--abr bola] [--speed 10] [--duration-s 60] [--runs 2]

The demo title as the stack's low-latency live channel (0.5 s chunks), video only, 80 ms RTT, the
emulated half of `bench/live_run.py` on a constant trace; about 70 s wall per run. Prints the load
average beside. Asserts nothing."""

from __future__ import annotations

import argparse
import os
import statistics
from typing import Any

import player.client.liveplay as liveplay
from netsim.sources import open_trace
from player.client.chunktimer import ChunkTimer
from player.research.experiment_live import LiveRunConfig, channel_content, run_live_comparison
from server.config import default_cache_dir
from server.stack import ensure_demo_title


class _Recorded(ChunkTimer):
    """The live player's chunk timer, keeping each piece as it came and how it was made."""

    bodies: list[_Recorded] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kwargs = kwargs
        self.pieces: list[tuple[float, bytes]] = []
        _Recorded.bodies.append(self)

    def feed(self, t: float, piece: bytes) -> list[Any]:
        self.pieces.append((t, bytes(piece)))
        return super().feed(t, piece)


def _replayed(body: _Recorded, *, lead: bool, gap: bool = True) -> float:
    """The body's sample (bytes/s) through a fresh timer given the same rate hint, request time and
    slack, with or without the lead, with or without the back-to-back gap (readiness, used only
    before a rate is known, left out of all)."""
    kwargs = {k: body.kwargs[k] for k in ("rate_hint_Bps", "requested_s", "tail_slack_s")}
    timer = ChunkTimer(**kwargs, tail_lead_s=body.kwargs["tail_lead_s"] if lead else 0.0,
                       back_to_back_s=body.kwargs.get("back_to_back_s", 0.0) if gap else 0.0)
    for t, piece in body.pieces:
        timer.feed(t, piece)
    active = timer.active_s()
    assert active is not None
    return len(timer.body) / active


def _summary(ratios: list[float]) -> str:
    ordered = sorted(ratios)
    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
    return f"median {statistics.median(ordered):.4f} (p10 {at(0.1):.4f}, p90 {at(0.9):.4f}), {len(ordered)} bodies"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate-bps", type=float, default=5e6)
    parser.add_argument("--abr", default="bola")
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    liveplay.ChunkTimer = _Recorded  # type: ignore[misc]
    config = LiveRunConfig(abrs=(args.abr,), modes=("emulate",), duration_s=args.duration_s, speed=args.speed,
                           concurrency=1, stack_processes=True)
    content = channel_content(ensure_demo_title(default_cache_dir() / "content"), chunk_s=config.chunk_s)
    rate_Bps = args.rate_bps / 8
    load_before = os.getloadavg()[0]
    for _ in range(args.runs):
        rows = run_live_comparison(config, content, [open_trace(f"constant:{args.rate_bps:g}")])
        if any(r.get("error") for r in rows):
            raise SystemExit(f"an emulated session failed: {[r['error'] for r in rows if r.get('error')]}")
    # The first body has no rate hint (its first chunk starts at its first piece); a body of one chunk
    # (the init segment, whole segments) has no tails.
    bodies = [b for b in _Recorded.bodies if b.kwargs.get("rate_hint_Bps") and len(b.arrivals) > 1]
    played = [len(b.body) / b.active_s() / rate_Bps for b in bodies]  # type: ignore[operator]
    late_only = [_replayed(b, lead=False) / rate_Bps for b in bodies]
    with_lead = [_replayed(b, lead=True) / rate_Bps for b in bodies]
    no_gap = [_replayed(b, lead=True, gap=False) / rate_Bps for b in bodies]
    print(f"{args.abr} on a constant {args.rate_bps / 1e6:g} Mbit/s link at {args.speed:g}x, {args.runs} runs of "
          f"{args.duration_s:g} s; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(f"sample / link rate, as played:              {_summary(played)}")
    print(f"replayed, late tails only (before wave 10): {_summary(late_only)}")
    print(f"replayed, early and late tails (the timer): {_summary(with_lead)}")
    print(f"paired, with / without the lead:            {_summary([a / b for a, b in zip(with_lead, late_only)])}")
    print(f"replayed, back-to-back pairs counted:       {_summary(no_gap)}")
    print(f"paired, with / without the back-to-back gap: {_summary([a / b for a, b in zip(with_lead, no_gap)])}")


if __name__ == "__main__":
    main()
