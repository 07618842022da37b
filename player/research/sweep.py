"""Simulation sweeps: algorithms x traces (x start offsets) on one video, in parallel processes, with
the offline optimum.

Work is split into (algorithm, chunk of sessions) tasks on a process pool; each task runs the batch
engine where the algorithm allows it. A session is a trace from a start offset (0, or `offsets`
seeded random ones per trace), keyed `trace` or `trace@offset`, the same for every algorithm, so
results pair up for comparisons against a baseline (`player.research.stats.paired_comparison`).
Offline-optimal results are cached on disk by content hash (video sizes, trace arrays, download
model, QoE, grid), since they cost far more than a session; `optimal_cost` estimates that cost first.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from abr.plugins import load_plugins
from abr.qoe import QoeModel
from netsim.faults import FaultWindow
from netsim.trace import Trace
from player.research.optimal import OptimalConfig, offline_optimal
from player.research.sim import SessionResult, SimProfile, simulate
from player.research.stats import Interval, PairedComparison, mean_ci, paired_comparison
from player.video import Video

Progress = Callable[[int], None]
_CACHE_VERSION = 3  # bump when what the optimum computes changes


@dataclass(frozen=True, kw_only=True, slots=True)
class SweepConfig:
    abrs: tuple[str, ...]
    profile: SimProfile
    qoe: str | None = None  # the QoE of the tables (None: the profile's own, `profile.qoe`)
    workers: int = 1
    engine: str = "auto"
    record_events: bool = False
    optimal: bool = True
    optimal_cached_only: bool = False  # with `optimal`: use cached results only, never compute one
    optimal_grid_s: float = 0.1
    cache_dir: Path | None = None  # where offline-optimal results are kept (None: no cache)
    faults: tuple[FaultWindow, ...] = ()  # link faults in every session (and the optimum), from its start
    offsets: int = 0  # random start offsets per trace (0: each trace once, from its start)
    seed: int = 0  # of the offsets, and of the bootstrap intervals
    baseline: str | None = None  # compare every other algorithm with this one, session by session
    plugins: tuple[str, ...] = ()  # files or modules each worker process imports first

    def __post_init__(self) -> None:
        if not self.abrs:
            raise ValueError("give at least one ABR algorithm")
        object.__setattr__(self, "qoe", self.qoe or self.profile.qoe.name)
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.offsets < 0:
            raise ValueError(f"offsets must be >= 0, got {self.offsets}")
        if self.baseline is not None and self.baseline not in self.abrs:
            raise ValueError(f"the baseline {self.baseline!r} is not among the algorithms ({', '.join(self.abrs)})")
        faults = tuple(self.faults)
        if not all(isinstance(f, FaultWindow) for f in faults):
            raise ValueError("faults must be FaultWindow objects")
        object.__setattr__(self, "faults", faults)

    @property
    def table_qoe(self) -> str:
        assert self.qoe is not None
        return self.qoe


@dataclass(frozen=True, kw_only=True, slots=True)
class Start:
    """One session to run on every algorithm: a trace from a start offset, under a unique key."""

    key: str
    trace: Trace
    offset_s: float


def trace_keys(names: Sequence[str]) -> list[str]:
    """Unique report keys: the trace name, with `#2`, `#3`... for repeats."""
    seen: dict[str, int] = {}
    keys = []
    for name in names:
        count = seen.get(name, 0) + 1
        seen[name] = count
        keys.append(name if count == 1 else f"{name}#{count}")
    return keys


def plan_starts(traces: Sequence[Trace], offsets: int = 0, seed: int = 0) -> list[Start]:
    """Each trace from 0, or from `offsets` seeded random points of it (keys `name@offset`)."""
    keys = trace_keys([t.name for t in traces])
    if offsets == 0:
        return [Start(key=k, trace=t, offset_s=0.0) for k, t in zip(keys, traces)]
    rng = np.random.default_rng(seed)
    starts = []
    for key, trace in zip(keys, traces):
        for offset in sorted(round(float(x), 3) for x in rng.uniform(0.0, trace.duration_s, offsets)):
            starts.append(Start(key=f"{key}@{offset:.3f}", trace=trace, offset_s=offset))
    return starts


@dataclass(frozen=True, kw_only=True, slots=True)
class AbrSummary:
    abr: str
    sessions: int
    qoe: Interval  # of the chosen QoE model, per session
    qoe_means: dict[str, float]  # every model
    avg_bitrate_bps: float
    rebuffer_s: float  # mean per session
    rebuffer_ratio: float
    startup_s: float
    switches: float
    pct_of_optimal: float | None  # 100 * mean QoE / mean optimal QoE over the same sessions
    per_trace: dict[str, float]  # by session key
    abandoned: float = 0.0  # mean abandoned downloads per session


@dataclass(frozen=True, kw_only=True, slots=True)
class SweepResult:
    config: SweepConfig
    video: str
    sessions: dict[str, list[SessionResult]]
    optimal: dict[str, float] = field(default_factory=dict)  # per session key
    keys: tuple[str, ...] = ()  # session keys, in the order of every algorithm's sessions
    optimal_note: str = ""  # what happened to the optimum (skipped, cached, computed)

    def summaries(self) -> list[AbrSummary]:
        return [summarize(abr, results, self.config.table_qoe, self.optimal, keys=self.keys or None)
                for abr, results in self.sessions.items()]

    def comparisons(self) -> list[PairedComparison]:
        """Every algorithm against the configured baseline (none without one)."""
        baseline = self.config.baseline
        if baseline is None:
            return []
        values = {abr: dict(zip(self._keys(abr), (r.metrics.qoe[self.config.table_qoe] for r in results)))
                  for abr, results in self.sessions.items()}
        return [paired_comparison(abr, values[abr], baseline, values[baseline], seed=self.config.seed)
                for abr in self.sessions if abr != baseline]

    def _keys(self, abr: str) -> list[str]:
        return list(self.keys) if self.keys else trace_keys([r.trace for r in self.sessions[abr]])


def summarize(abr: str, results: Sequence[SessionResult], qoe: str, optimal: dict[str, float], *,
              keys: Sequence[str] | None = None) -> AbrSummary:
    keys = list(keys) if keys is not None else trace_keys([r.trace for r in results])
    if any(qoe not in r.metrics.qoe for r in results):
        known = ", ".join(results[0].metrics.qoe) if results else "none"
        raise ValueError(f"sessions were not scored with QoE {qoe!r} (they have {known})")
    values = [r.metrics.qoe[qoe] for r in results]
    pct = None
    if optimal and all(k in optimal for k in keys):
        best = float(np.mean([optimal[k] for k in keys]))
        pct = 100.0 * float(np.mean(values)) / best if best > 0 else None
    models = list(results[0].metrics.qoe) if results else []
    return AbrSummary(
        abr=abr, sessions=len(results), qoe=mean_ci(values),
        qoe_means={m: float(np.mean([r.metrics.qoe[m] for r in results])) for m in models},
        avg_bitrate_bps=float(np.mean([r.metrics.avg_bitrate_bps for r in results])),
        rebuffer_s=float(np.mean([r.metrics.rebuffer_s for r in results])),
        rebuffer_ratio=float(np.mean([r.metrics.rebuffer_ratio for r in results])),
        startup_s=float(np.mean([r.metrics.startup_s for r in results])),
        switches=float(np.mean([r.metrics.switches for r in results])),
        pct_of_optimal=pct, per_trace=dict(zip(keys, values)),
        abandoned=float(np.mean([r.abandoned for r in results])) if results else 0.0,
    )


def _simulate_task(abr: str, video: Video, starts: list[Start], config: SweepConfig) -> list[SessionResult]:
    load_plugins(config.plugins)  # a worker process registers the plugins' algorithms first
    return simulate(abr, video, [s.trace for s in starts], config.profile, engine=config.engine,
                    offsets_s=[s.offset_s for s in starts], record_events=config.record_events, faults=config.faults)


def optimal_model(video: Video, config: SweepConfig) -> QoeModel:
    """The QoE the optimum maximises: the table's, on this video."""
    prof = config.profile
    return next(m for m in prof.qoe_models(video) if m.name == config.table_qoe)


def _optimal_task(video: Video, start: Start, config: SweepConfig) -> float:
    cached = cached_optimal(video, start, config)
    if cached is not None:
        return cached
    trace = start.trace.rotated(start.offset_s) if start.offset_s else start.trace
    value = offline_optimal(video, trace, config.profile, qoe=optimal_model(video, config),
                            config=OptimalConfig(grid_s=config.optimal_grid_s), faults=config.faults).qoe
    cache = _optimal_cache_path(video, start, config)
    if cache is not None:
        _store(cache, json.dumps({"qoe": value, "trace": start.trace.name, "offset_s": start.offset_s}))
    return value


def _store(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically: a temp file of this writer alone (process and thread: a
    sweep's executor may run threads), renamed over it, so readers see the old entry or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def cached_optimal(video: Video, start: Start, config: SweepConfig) -> float | None:
    """The cached optimum of one session, if there is one (a damaged entry counts as none)."""
    cache = _optimal_cache_path(video, start, config)
    if cache is None or not cache.is_file():
        return None
    try:
        return float(json.loads(cache.read_text())["qoe"])
    except (ValueError, KeyError, TypeError):
        return None


def _optimal_cache_path(video: Video, start: Start, config: SweepConfig) -> Path | None:
    if config.cache_dir is None:
        return None
    trace = start.trace
    prof = config.profile
    model = optimal_model(video, config)
    digest = hashlib.sha256()
    solved = video.folded()  # what the optimum solves (itself for a video without audio)
    digest.update(np.ascontiguousarray(solved.sizes_bytes[: video.segment_count + 8]).tobytes())
    digest.update(repr((video.ladder, video.segment_count)).encode())
    if model.quality_metric is not None and video.quality is not None:
        digest.update(np.ascontiguousarray(video.quality).tobytes())
    digest.update(trace.durations_s.tobytes() + trace.bandwidth_bps.tobytes())
    if trace.latency_s is not None:
        digest.update(trace.latency_s.tobytes())
    # What the optimum depends on: the download model, the player policy and the QoE (not names).
    download_model = (prof.session, prof.payload_factor, prof.rtt_s, prof.latency_on_trace_clock,
                      *((prof.response_header_bytes,) if prof.response_header_bytes else ()))  # 0: keys as before
    objective = (model.name, model.rebuffer_penalty, model.switch_penalty, model.startup_penalty,
                 model.quality_metric, model.first_counted_segment, getattr(model.utility, "__name__", ""))
    digest.update(repr((download_model, objective, config.optimal_grid_s, start.offset_s, _CACHE_VERSION)).encode())
    if config.faults:
        digest.update(repr(config.faults).encode())
    return config.cache_dir / "optimal" / f"{digest.hexdigest()[:32]}.json"


@dataclass(frozen=True, kw_only=True, slots=True)
class OptimalCost:
    """What computing the missing optima would cost: sessions not cached and seconds of CPU for them."""

    missing: int
    cached: int
    cpu_s: float  # estimated, for all the missing ones together
    measured: str  # how the estimate was made

    def wall_s(self, workers: int) -> float:
        return self.cpu_s / max(1, min(workers, self.missing or 1))


def optimal_cost(video: Video, starts: Sequence[Start], config: SweepConfig, *, budget_s: float = 2.0) -> OptimalCost:
    """Counts the sessions whose optimum is not cached and estimates their cost by timing the optimum
    on growing prefixes of the video (2, 4, 8, ... segments of the longest trace) until one takes
    `budget_s`, then extrapolating the per-segment cost of the last doubling to the whole video."""
    missing = [s for s in starts if cached_optimal(video, s, config) is None]
    if not missing:
        return OptimalCost(missing=0, cached=len(starts), cpu_s=0.0, measured="all cached")
    probe = max(missing, key=lambda s: s.trace.duration_s)
    model = optimal_model(video, config)
    grid = OptimalConfig(grid_s=config.optimal_grid_s)
    n = video.segment_count
    count, took, previous = 1, 0.0, (0, 0.0)
    while True:
        count = min(n, count * 2)
        started = time.process_time()
        offline_optimal(video.truncated(count), probe.trace, config.profile, qoe=model, config=grid, faults=config.faults)
        took = time.process_time() - started
        if count == n or took >= budget_s:
            break
        previous = (count, took)
    per_segment = (took - previous[1]) / max(1, count - previous[0])
    per_session = took + max(0.0, per_segment) * (n - count)
    return OptimalCost(missing=len(missing), cached=len(starts) - len(missing), cpu_s=per_session * len(missing),
                       measured=f"{count} of {n} segments of {probe.trace.name} took {took:.2f} s")


def _chunks(items: list[Start], count: int) -> list[list[Start]]:
    size = max(1, -(-len(items) // count))
    return [items[i: i + size] for i in range(0, len(items), size)]


def run_sweep(video: Video, traces: Sequence[Trace], config: SweepConfig, *,
              progress: Progress | None = None, executor: Executor | None = None) -> SweepResult:
    """Every algorithm on every session (and the optimum per session, computed or, with
    `optimal_cached_only`, as cached); `progress(n)` counts finished sessions."""
    load_plugins(config.plugins)
    starts = plan_starts(traces, config.offsets, config.seed)
    keys = [s.key for s in starts]
    tick = progress or (lambda n: None)
    wanted = starts if config.optimal else []
    if config.optimal and config.optimal_cached_only:
        wanted = []
        cached = {s.key: cached_optimal(video, s, config) for s in starts}
        optimal = {k: v for k, v in cached.items() if v is not None}
        if len(optimal) < len(starts):
            optimal = {}  # a partial optimum would compare algorithms on different sessions
    else:
        optimal = {}
    own_pool = executor is None and config.workers > 1
    pool = ProcessPoolExecutor(max_workers=config.workers) if own_pool else executor
    try:
        sessions: dict[str, list[SessionResult]] = {}
        if pool is None:
            for abr in config.abrs:
                sessions[abr] = []
                for chunk in _chunks(starts, max(1, len(starts) // 20)):
                    sessions[abr].extend(_simulate_task(abr, video, chunk, config))
                    tick(len(chunk))
            for start in wanted:
                optimal[start.key] = _optimal_task(video, start, config)
                tick(1)
        else:
            chunks = _chunks(starts, config.workers * 4)
            futures = {abr: [pool.submit(_simulate_task, abr, video, c, config) for c in chunks] for abr in config.abrs}
            opt_futures = [pool.submit(_optimal_task, video, s, config) for s in wanted]
            for abr, parts in futures.items():
                sessions[abr] = []
                for part, chunk in zip(parts, chunks):
                    sessions[abr].extend(part.result())
                    tick(len(chunk))
            for start, future in zip(wanted, opt_futures):
                optimal[start.key] = future.result()
                tick(1)
        return SweepResult(config=config, video=video.name, sessions=sessions, optimal=optimal, keys=tuple(keys))
    finally:
        if own_pool and pool is not None:
            pool.shutdown(cancel_futures=True)
