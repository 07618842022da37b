"""Throughput estimators against the true link: which one predicts the next download best?

Every estimator of `abr/estimators.py` is fed a session's downloads in order; before each download
(from the second on) its estimate is compared with what the link really offered during that
download: the trace's capacity averaged over the transfer (first byte to last, the link model's
bytes in that window over its length). Sessions come from the simulator (the `default` profile,
which times downloads exactly as the shaper paces them) and from emulation (real headless players
through the shaper against an embedded stack, via the experiment runner), so the table shows both
what an estimator does by design and what real TCP timing adds.

Per estimator: predictions scored, bias (mean of (estimate - true) / true), the share of
over-estimates (the ones that cause stalls), and percentiles of |estimate - true| / true.
Prints, never asserts.

    python bench/estimators.py [--quick] [--abr bba] [--skip-emulation] [--speed 4] [--emulated-traces 12]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from abr.estimators import (
    DashEwma,
    HarmonicMean,
    SabreEwma,
    SabreSlidingWindow,
    Safe,
    SlidingWindowMean,
    ThroughputEstimator,
)
from abr.types import Download
from netsim.formats import load_traces
from netsim.link import LinkModel
from netsim.trace import Trace
from player.research.sim import PROFILES, simulate
from player.video import Video, load_video

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
PENSIEVE_TRACES = SHARED / "traces" / "pensieve" / "test-public"
PENSIEVE_VIDEO = SHARED / "video" / "pensieve-envivio"
SABRE_TRACES = SHARED / "traces" / "sabre" / "3Glogs"
SABRE_VIDEO = SHARED / "video" / "sabre" / "bbb.json"


def estimators(segment_duration_s: float) -> dict[str, Callable[[], ThroughputEstimator]]:
    """Every estimator worth asking, by the name the table prints (fresh instance per session)."""
    return {
        "last sample": lambda: HarmonicMean(window=1),
        "harmonic 5 (Pensieve, MPC)": lambda: HarmonicMean(window=5),
        "harmonic 5, no TTFB": lambda: HarmonicMean(window=5, exclude_ttfb=True),
        "window mean 4 (dash.js)": lambda: SlidingWindowMean(window=4),
        "dash.js EWMA 3/8 s": lambda: DashEwma(),
        "dash.js EWMA, no TTFB": lambda: DashEwma(exclude_ttfb=True),
        "dash.js EWMA, no TTFB x 0.9": lambda: Safe(DashEwma(exclude_ttfb=True), factor=0.9),
        "Sabre EWMA 3/8 s": lambda: SabreEwma(segment_duration_s=segment_duration_s),
        "Sabre window 3": lambda: SabreSlidingWindow(window_sizes=(3,)),
    }


@dataclass(frozen=True, kw_only=True, slots=True)
class Sample:
    """One download of a session as the player measured it, and the link's true rate during it."""

    download: Download
    true_bps: float


def true_rate_bps(link: LinkModel, start_s: float, ttfb_s: float, duration_s: float) -> float | None:
    """Capacity averaged over the transfer [start + ttfb, start + duration] in trace time."""
    first, last = start_s + ttfb_s, start_s + duration_s
    if not last > first:
        return None
    return (link.bytes_until(last) - link.bytes_until(first)) * 8.0 / (last - first)


def session_samples(trace: Trace, offset_s: float, request_s: Sequence[float], download_s: Sequence[float],
                    ttfb_s: Sequence[float], size_bytes: Sequence[int]) -> list[Sample]:
    link = LinkModel(trace)
    out = []
    for i, (t, d, f, b) in enumerate(zip(request_s, download_s, ttfb_s, size_bytes)):
        truth = true_rate_bps(link, offset_s + t, f, d)
        if truth is not None and truth > 0:
            out.append(Sample(download=Download(segment_index=i, quality=0, size_bytes=int(b), duration_s=float(d),
                                                ttfb_s=float(f), start_time_s=float(t)), true_bps=truth))
    return out


@dataclass(frozen=True, kw_only=True, slots=True)
class Score:
    name: str
    count: int
    bias_pct: float
    median_pct: float
    over_pct: float
    abs_p50_pct: float
    abs_p90_pct: float
    abs_p95_pct: float


def score(name: str, build: Callable[[], ThroughputEstimator], sessions: Iterable[list[Sample]]) -> Score:
    """Relative errors of the estimate made before each download (the first has none)."""
    errors = []
    for samples in sessions:
        estimator = build()
        for sample in samples:
            estimate = estimator.estimate_bps()
            if estimate is not None:
                errors.append((estimate - sample.true_bps) / sample.true_bps)
            estimator.feed(sample.download)
    e = np.asarray(errors)
    if e.size == 0:
        return Score(name=name, count=0, bias_pct=np.nan, median_pct=np.nan, over_pct=np.nan, abs_p50_pct=np.nan,
                     abs_p90_pct=np.nan, abs_p95_pct=np.nan)
    a = np.abs(e)
    return Score(name=name, count=int(e.size), bias_pct=100 * float(e.mean()), median_pct=100 * float(np.median(e)),
                 over_pct=100 * float((e > 0).mean()), abs_p50_pct=100 * float(np.percentile(a, 50)),
                 abs_p90_pct=100 * float(np.percentile(a, 90)), abs_p95_pct=100 * float(np.percentile(a, 95)))


def table(title: str, scores: Sequence[Score]) -> str:
    header = ("estimator", "n", "bias %", "median err %", "over-estimates %", "|err| p50 %", "p90 %", "p95 %")
    rows = [(s.name, str(s.count), f"{s.bias_pct:+.1f}", f"{s.median_pct:+.1f}", f"{s.over_pct:.1f}",
             f"{s.abs_p50_pct:.1f}", f"{s.abs_p90_pct:.1f}", f"{s.abs_p95_pct:.1f}") for s in scores]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def simulated(abr: str, video: Video, traces: Sequence[Trace], offsets_s: Sequence[float] | None = None
              ) -> list[list[Sample]]:
    """Sessions of `abr` in the simulator's `default` profile (downloads timed as the shaper paces them)."""
    results = simulate(abr, video, traces, PROFILES["default"], engine="session", offsets_s=offsets_s)
    sessions = []
    for trace, r in zip(traces, results):
        ttfb = [trace.latency_at(r.trace_offset_s + t) if trace.latency_s is not None else PROFILES["default"].rtt_s
                for t in r.request_time_s]
        sessions.append(session_samples(trace, r.trace_offset_s, r.request_time_s, r.download_s, ttfb, r.size_bytes))
    return sessions


def emulated(abr: str, traces: Sequence[Trace], speed: float, workers: int
             ) -> tuple[list[list[Sample]], list[float], Video, str]:
    """Sessions of real headless players through the shaper: the cached demo title, `abrkit run`'s
    runner, seeded start offsets. Returns the sessions, the offsets, the title's video and a note."""
    from player.research.experiment import ExperimentConfig, open_content, run_experiment, trace_offsets_s
    from player.research.experiment_report import ok_rows
    from server.config import default_cache_dir

    content = open_content("demo", cache_dir=default_cache_dir())
    config = ExperimentConfig(abrs=(abr,), modes=("emulate",), profile=PROFILES["default"], speed=speed,
                              workers=workers, sessions_per_worker=max(1, len(traces) // workers + 1), seed=1)
    with tempfile.TemporaryDirectory(prefix="abrkit-bench-est-") as out:
        summary = run_experiment(config, content, traces, Path(out), progress=False)
    by_key = dict(zip((t.name for t in traces), traces))
    rows = ok_rows(summary.rows)
    sessions = []
    for row in rows:
        t = row["timeline"]
        sessions.append(session_samples(by_key[row["trace"]], row["trace_offset_s"], t["request_time_s"],
                                        t["download_s"], t["ttfb_s"], t["size_bytes"]))
    note = (f"{len(rows)} of {len(summary.rows)} sessions played through ({content.name}, speed {speed:g}, "
            f"{summary.wall_s:.0f} s wall)")
    return sessions, trace_offsets_s(traces, config.seed), content.video, note


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--abr", default="bba", help="the algorithm whose downloads are scored (default bba: "
                        "buffer-based, so the download pattern does not follow any estimator)")
    parser.add_argument("--quick", action="store_true", help="a few traces of each set")
    parser.add_argument("--skip-emulation", action="store_true")
    parser.add_argument("--speed", type=float, default=4.0, help="emulation clock speed-up (default 4)")
    parser.add_argument("--emulated-traces", type=int, default=12, help="Pensieve test traces emulated (default 12)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    if not PENSIEVE_TRACES.is_dir():
        print(f"shared data not found at {SHARED}", file=sys.stderr)
        return 2
    limit = 6 if args.quick else None
    sets = [("Pensieve test-public, Envivio video", load_traces([PENSIEVE_TRACES])[:limit], load_video(PENSIEVE_VIDEO)),
            ("Sabre 3G logs, Big Buck Bunny", load_traces([SABRE_TRACES])[:limit], load_video(SABRE_VIDEO))]
    for title, traces, video in sets:
        started = time.monotonic()
        report(f"simulated: {title}, {len(traces)} sessions of {args.abr} ({{:.0f}} s)", started,
               simulated(args.abr, video, traces), video)
    if not args.skip_emulation:
        traces = load_traces([PENSIEVE_TRACES])[: 3 if args.quick else args.emulated_traces]
        started = time.monotonic()
        sessions, offsets, video, note = emulated(args.abr, traces, args.speed, args.workers)
        report(f"emulated: Pensieve test-public through the shaper, {note}", None, sessions, video)
        report("simulated: the same title, traces and start offsets (to pair with the emulated table)", None,
               simulated(args.abr, video, traces, offsets), video)
    return 0


def report(title: str, started: float | None, sessions: list[list[Sample]], video: Video) -> None:
    scores = [score(name, build, sessions) for name, build in estimators(video.ladder.segment_duration_s).items()]
    heading = title.format(time.monotonic() - started) if started is not None else title
    print(table("\n" + heading, scores), flush=True)


if __name__ == "__main__":
    sys.exit(main())
