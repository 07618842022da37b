"""Simulation sweeps: algorithms x traces on one video, in parallel processes, with offline optimum.

Work is split into (algorithm, chunk of traces) tasks on a process pool; each task runs the batch
engine where the algorithm allows it. Offline-optimal results are cached on disk by content hash
(video sizes, trace arrays, profile, QoE model, grid), since they cost far more than a session.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from abr.qoe import QOE_MODELS
from netsim.faults import FaultWindow
from netsim.trace import Trace
from player.research.optimal import OptimalConfig, offline_optimal
from player.research.sim import SessionResult, SimProfile, simulate
from player.research.stats import Interval, mean_ci
from player.video import Video

Progress = Callable[[int], None]


@dataclass(frozen=True, kw_only=True, slots=True)
class SweepConfig:
    abrs: tuple[str, ...]
    profile: SimProfile
    qoe: str = "lin"
    workers: int = 1
    engine: str = "auto"
    record_events: bool = False
    optimal: bool = True
    optimal_grid_s: float = 0.1
    cache_dir: Path | None = None  # where offline-optimal results are kept (None: no cache)
    faults: tuple[FaultWindow, ...] = ()  # link faults in every session (and the optimum), from its start

    def __post_init__(self) -> None:
        if not self.abrs:
            raise ValueError("give at least one ABR algorithm")
        if self.qoe not in QOE_MODELS:
            raise ValueError(f"unknown QoE model {self.qoe!r}; choose from {', '.join(QOE_MODELS)}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        faults = tuple(self.faults)
        if not all(isinstance(f, FaultWindow) for f in faults):
            raise ValueError("faults must be FaultWindow objects")
        object.__setattr__(self, "faults", faults)


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
    pct_of_optimal: float | None  # 100 * mean QoE / mean optimal QoE over the same traces
    per_trace: dict[str, float]


@dataclass(frozen=True, kw_only=True, slots=True)
class SweepResult:
    config: SweepConfig
    video: str
    sessions: dict[str, list[SessionResult]]
    optimal: dict[str, float] = field(default_factory=dict)  # per trace key

    def summaries(self) -> list[AbrSummary]:
        return [summarize(abr, results, self.config.qoe, self.optimal) for abr, results in self.sessions.items()]


def trace_keys(names: Sequence[str]) -> list[str]:
    """Unique report keys: the trace name, with `#2`, `#3`... for repeats."""
    seen: dict[str, int] = {}
    keys = []
    for name in names:
        count = seen.get(name, 0) + 1
        seen[name] = count
        keys.append(name if count == 1 else f"{name}#{count}")
    return keys


def summarize(abr: str, results: Sequence[SessionResult], qoe: str, optimal: dict[str, float]) -> AbrSummary:
    keys = trace_keys([r.trace for r in results])
    values = [r.metrics.qoe[qoe] for r in results]
    pct = None
    if optimal and all(k in optimal for k in keys):
        best = float(np.mean([optimal[k] for k in keys]))
        pct = 100.0 * float(np.mean(values)) / best if best > 0 else None
    return AbrSummary(
        abr=abr, sessions=len(results), qoe=mean_ci(values),
        qoe_means={m: float(np.mean([r.metrics.qoe[m] for r in results])) for m in QOE_MODELS},
        avg_bitrate_bps=float(np.mean([r.metrics.avg_bitrate_bps for r in results])),
        rebuffer_s=float(np.mean([r.metrics.rebuffer_s for r in results])),
        rebuffer_ratio=float(np.mean([r.metrics.rebuffer_ratio for r in results])),
        startup_s=float(np.mean([r.metrics.startup_s for r in results])),
        switches=float(np.mean([r.metrics.switches for r in results])),
        pct_of_optimal=pct, per_trace=dict(zip(keys, values)),
    )


def _simulate_task(abr: str, video: Video, traces: list[Trace], config: SweepConfig) -> list[SessionResult]:
    return simulate(abr, video, traces, config.profile, engine=config.engine, record_events=config.record_events,
                    faults=config.faults)


def _optimal_task(video: Video, trace: Trace, config: SweepConfig) -> float:
    cache = _optimal_cache_path(video, trace, config)
    if cache is not None and cache.is_file():
        try:
            return float(json.loads(cache.read_text())["qoe"])
        except (ValueError, KeyError):
            pass  # a damaged cache entry is recomputed
    value = offline_optimal(video, trace, config.profile, qoe=config.qoe,
                            config=OptimalConfig(grid_s=config.optimal_grid_s), faults=config.faults).qoe
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"qoe": value, "trace": trace.name}))
        os.replace(tmp, cache)
    return value


def _optimal_cache_path(video: Video, trace: Trace, config: SweepConfig) -> Path | None:
    if config.cache_dir is None:
        return None
    digest = hashlib.sha256()
    solved = video.folded()  # what the optimum solves (itself for a video without audio)
    digest.update(np.ascontiguousarray(solved.sizes_bytes[: video.segment_count + 8]).tobytes())
    digest.update(repr((video.ladder, video.segment_count)).encode())
    digest.update(trace.durations_s.tobytes() + trace.bandwidth_bps.tobytes())
    if trace.latency_s is not None:
        digest.update(trace.latency_s.tobytes())
    digest.update(repr((config.profile, config.qoe, config.optimal_grid_s, 2)).encode())
    if config.faults:  # only then, so the results cached without faults keep their keys
        digest.update(repr(config.faults).encode())
    return config.cache_dir / "optimal" / f"{digest.hexdigest()[:32]}.json"


def _chunks(items: list[Trace], count: int) -> list[list[Trace]]:
    size = max(1, -(-len(items) // count))
    return [items[i: i + size] for i in range(0, len(items), size)]


def run_sweep(video: Video, traces: Sequence[Trace], config: SweepConfig, *,
              progress: Progress | None = None, executor: Executor | None = None) -> SweepResult:
    """Every algorithm on every trace (and the optimum per trace); `progress(n)` counts finished sessions."""
    trace_list = list(traces)
    keys = trace_keys([t.name for t in trace_list])
    tick = progress or (lambda n: None)
    own_pool = executor is None and config.workers > 1
    pool = ProcessPoolExecutor(max_workers=config.workers) if own_pool else executor
    try:
        sessions: dict[str, list[SessionResult]] = {}
        optimal: dict[str, float] = {}
        if pool is None:
            for abr in config.abrs:
                sessions[abr] = []
                for chunk in _chunks(trace_list, max(1, len(trace_list) // 20)):
                    sessions[abr].extend(_simulate_task(abr, video, chunk, config))
                    tick(len(chunk))
            if config.optimal:
                for key, trace in zip(keys, trace_list):
                    optimal[key] = _optimal_task(video, trace, config)
                    tick(1)
        else:
            chunks = _chunks(trace_list, config.workers * 4)
            futures = {abr: [pool.submit(_simulate_task, abr, video, c, config) for c in chunks] for abr in config.abrs}
            opt_futures = [pool.submit(_optimal_task, video, t, config) for t in trace_list] if config.optimal else []
            for abr, parts in futures.items():
                sessions[abr] = []
                for part, chunk in zip(parts, chunks):
                    sessions[abr].extend(part.result())
                    tick(len(chunk))
            for key, future in zip(keys, opt_futures):
                optimal[key] = future.result()
                tick(1)
        return SweepResult(config=config, video=video.name, sessions=sessions, optimal=optimal)
    finally:
        if own_pool and pool is not None:
            pool.shutdown(cancel_futures=True)
