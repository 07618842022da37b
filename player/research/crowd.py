"""Release-night flash crowd: K sessions of a new title start within T seconds, while M sessions of
another title are already playing; the same M sessions are first played alone (the quiet baseline).

Measured: the crowd's start-up (press play -> playback starts, session seconds) p50/p95, the service
latency of each bootstrap step, origin requests per media segment (the edges' request coalescing),
the edges' hit ratio, the gateway's shedding (429/503, seen by the players and counted by the
gateway), and the QoE of the M sessions against their baseline, paired session by session.

Sessions are headless players without decoding on modeled access links (`crowdclient`), run in a
process pool or on a Dask cluster through the experiment runner's `concurrent.futures` path; the
M sessions run in this process. Time is warped `speed` times, as in `abrkit run` and `abrkit chaos`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from netsim import synthetic
from netsim.trace import Trace
from player.errors import CliError
from player.research.crowdclient import PlayerSettings, Row, SessionSpec, ShardResult, ShardSpec, crowd_task, run_shard
from player.research.crowdstack import (
    CrowdStack,
    CrowdStackConfig,
    Samples,
    by_label,
    crowd_stack,
    diff,
    origin_requests,
    prepare_content,
    preposition,
    scrape,
    service_cpu_s,
    sign_in,
    total,
)
from player.research.experiment import open_executor
from server.config import ACCESS_LOG_FLUSH_INTERVAL_S
from server.formats.names import SEGMENTS_NAME
from server.formats.segments import load_segments_json

ARRIVALS = ("uniform", "poisson")
# Wall seconds between planning a phase and its session time 0: every worker gets its shard and
# starts its loop first (arrivals later than planned are reported: `arrival_late_s_max`).
START_MARGIN_S = 3.0
LOGINS = ("device", "each")


@dataclass(frozen=True, kw_only=True, slots=True)
class CrowdConfig:
    """One flash-crowd run. Times are session seconds (wall seconds x `speed`)."""

    sessions: int = 1000  # K: the crowd
    within_s: float = 60.0  # T: the crowd arrives within this
    arrival: str = "uniform"  # evenly spaced, or a Poisson process with K arrivals in T ("poisson")
    speed: float = 10.0
    playing: int = 20  # M: sessions of another title already playing when the crowd arrives
    lead_s: float = 20.0  # the crowd starts this long after the first playing session
    watch_s: float | None = None  # crowd sessions leave after this much media (None: the whole title)
    abr: str = "bba"
    traces: tuple[Trace, ...] = ()  # access links, assigned in turn (empty: a seeded random walk each)
    link_mean_bps: float = 4e6  # the random walks' mean
    rtt_ms: float = 40.0
    buffer_cap_s: float = 30.0
    login: str = "device"  # "device": signed in before the crowd; "each": every session logs in
    sessions_per_account: int = 10  # the crowd's viewers share accounts (households, profiles)
    workers: int = 2  # crowd processes (0: in this process); ignored with `dask_address`
    dask_address: str | None = None
    sessions_per_task: int = 250  # on Dask: crowd sessions per task (one event loop); locally one task per worker
    baseline: bool = True
    seed: int = 0
    start_margin_s: float = START_MARGIN_S  # wall seconds from planning a phase to its session time 0

    def __post_init__(self) -> None:
        if self.sessions < 1 or self.playing < 0:
            raise ValueError("sessions must be >= 1 and playing >= 0")
        for name in ("within_s", "speed", "link_mean_bps", "buffer_cap_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be > 0, got {value}")
        if self.lead_s < 0 or self.rtt_ms < 0:
            raise ValueError("lead_s and rtt_ms must be >= 0")
        if self.watch_s is not None and not self.watch_s > 0:
            raise ValueError("watch_s must be > 0")
        if not (math.isfinite(self.start_margin_s) and self.start_margin_s >= 0):
            raise ValueError(f"start_margin_s must be >= 0, got {self.start_margin_s}")
        if self.arrival not in ARRIVALS:
            raise ValueError(f"arrival must be one of {', '.join(ARRIVALS)}, got {self.arrival!r}")
        if self.login not in LOGINS:
            raise ValueError(f"login must be one of {', '.join(LOGINS)}, got {self.login!r}")
        if self.sessions_per_account < 1 or self.workers < 0 or self.sessions_per_task < 1:
            raise ValueError("sessions_per_account and sessions_per_task must be >= 1, workers >= 0")

    @property
    def accounts(self) -> int:
        return math.ceil(self.sessions / self.sessions_per_account)


# --- the plan ---------------------------------------------------------------------------------------


def arrivals_s(config: CrowdConfig) -> np.ndarray:
    """When each crowd session presses play, session seconds after the crowd starts (sorted)."""
    k, window = config.sessions, config.within_s
    if config.arrival == "uniform":
        return np.arange(k) * (window / k)
    # K arrivals of a Poisson process conditioned on K events in [0, T): sorted uniforms.
    return np.sort(np.random.default_rng(config.seed).uniform(0.0, window, k))


def playing_accounts(config: CrowdConfig) -> list[str]:
    """One account per playing session."""
    return [f"viewer{i:05d}" for i in range(config.playing)]


def crowd_accounts(config: CrowdConfig) -> list[str]:
    """The crowd's accounts, `sessions_per_account` sessions each."""
    return [f"crowd{i:05d}" for i in range(config.accounts)]


def _link(config: CrowdConfig, index: int, rng: np.random.Generator) -> tuple[Trace, float]:
    """Session `index`'s access link and where on it the session starts."""
    if config.traces:
        trace = config.traces[index % len(config.traces)]
        return trace, float(rng.uniform(0.0, trace.duration_s))
    trace = synthetic.random_walk(mean_bps=config.link_mean_bps, volatility=0.25, duration_s=600.0,
                                  seed=config.seed * 100_003 + index)
    return trace, 0.0


@dataclass(frozen=True, kw_only=True, slots=True)
class CrowdPlan:
    """Every session of a run, before tokens are attached."""

    playing: tuple[SessionSpec, ...]
    crowd: tuple[SessionSpec, ...]


def plan_sessions(config: CrowdConfig, *, release: str, catalogue: str, segment_s: float,
                  password: str) -> CrowdPlan:
    """Playing sessions arrive during the first half of the lead; the crowd after the lead. Links
    are seeded per session index, so the baseline and the crowd run give the playing sessions the
    same links."""
    rng = np.random.default_rng(config.seed)
    viewers = playing_accounts(config)
    playing = []
    for j in range(config.playing):
        trace, offset = _link(config, j, rng)
        playing.append(SessionSpec(index=j, group="playing", title=catalogue,
                                   arrival_s=round(j * config.lead_s / 2 / max(1, config.playing), 4),
                                   trace=trace, offset_s=offset, username=viewers[j], password=password))
    max_segments = None if config.watch_s is None else max(1, math.ceil(config.watch_s / segment_s))
    names = crowd_accounts(config)
    crowd = []
    for i, at in enumerate(arrivals_s(config)):
        trace, offset = _link(config, config.playing + i, rng)
        crowd.append(SessionSpec(index=i, group="crowd", title=release, arrival_s=round(config.lead_s + at, 4),
                                 trace=trace, offset_s=offset, username=names[i % len(names)], password=password,
                                 max_segments=max_segments))
    return CrowdPlan(playing=tuple(playing), crowd=tuple(crowd))


def with_tokens(specs: Sequence[SessionSpec], tokens: dict[str, str]) -> tuple[SessionSpec, ...]:
    return tuple(replace(s, access_token=tokens.get(s.username)) for s in specs)


def shards(specs: Sequence[SessionSpec], count: int) -> list[tuple[SessionSpec, ...]]:
    """`count` interleaved shards (session i in shard i % count): each spans the whole arrival window."""
    return [tuple(specs[i::count]) for i in range(count) if specs[i::count]]


# --- running ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class PhaseResult:
    """One run of the schedule: the playing sessions, and the crowd's when it came."""

    playing: tuple[Row, ...]
    crowd: tuple[Row, ...]
    crowd_objects: frozenset[str]
    counters: dict[str, Samples]  # /metrics differences over the phase: "edges", "gateway"
    origin: dict[str, int] | None
    loop_lag_p99_ms: dict[str, float | None]
    generator_cpu_s: float
    service_cpu_s: dict[str, float]  # CPU seconds each service process used during the phase
    wall_s: float


def shard_count(config: CrowdConfig, sessions: int) -> int:
    """Tasks the crowd is cut into. They all run at once: one per local worker process (more would
    wait for a free one and press play late); on Dask, `sessions_per_task` each, and the cluster
    needs that many worker slots (late arrivals are reported as `arrival_late_s_max`)."""
    if sessions == 0:
        return 0
    if config.dask_address is not None:
        return math.ceil(sessions / config.sessions_per_task)
    return max(1, config.workers)


def warm_up() -> bool:
    """A no-op task that makes a fresh worker import the client before the clock starts."""
    return True


@contextlib.contextmanager
def crowd_executor(config: CrowdConfig) -> Iterator[Executor | None]:
    if config.workers == 0 and config.dask_address is None:
        yield None
        return
    with open_executor(config) as executor:
        yield executor


async def run_phase(config: CrowdConfig, target: CrowdStack, plan: CrowdPlan, executor: Executor | None, *,
                    crowd: bool, release: str) -> PhaseResult:
    """Sign the viewers in, then play the schedule (with the crowd or without) and collect."""
    stack = target.stack
    settings = PlayerSettings(gateway_url=stack.gateway_url, speed=config.speed, abr=config.abr,
                              buffer_cap_s=config.buffer_cap_s, rtt_ms=config.rtt_ms, seed=config.seed)
    async with aiohttp.ClientSession(trust_env=False) as http:
        users = [s.username for s in plan.playing]
        if crowd and config.login == "device":
            users += [s.username for s in plan.crowd]
        tokens = await sign_in(http, stack.gateway_url, users, target.password)
        playing = with_tokens(plan.playing, tokens)
        crowd_specs = (with_tokens(plan.crowd, tokens) if config.login == "device" else plan.crowd) if crowd else ()
        before = await scrape(http, stack)
        cpu_before = service_cpu_s(stack)
        started, cpu0 = time.monotonic(), time.process_time()
        epoch = time.time() + config.start_margin_s
        parts = [ShardSpec(settings=settings, sessions=part, epoch=epoch)
                 for part in shards(crowd_specs, shard_count(config, len(crowd_specs)))]
        if executor is None:
            waiting = [asyncio.ensure_future(run_shard(part)) for part in parts]
        else:
            waiting = [asyncio.wrap_future(executor.submit(crowd_task, part)) for part in parts]
        try:
            mine = await run_shard(ShardSpec(settings=settings, sessions=playing, epoch=epoch))
            results: list[ShardResult] = list(await asyncio.gather(*waiting))
        finally:
            for future in waiting:
                future.cancel()
        ended = time.time()
        cpu_after = service_cpu_s(stack)
        after = await scrape(http, stack)
        if crowd:  # the services write their access logs in batches, at least every second
            await asyncio.sleep(ACCESS_LOG_FLUSH_INTERVAL_S + 0.5)
    crowd_start = epoch + config.lead_s / config.speed
    objects: set[str] = set()
    for result in results:
        objects |= result.objects
    lags: dict[str, float | None] = {"playing": mine.loop_lag_p99_ms}
    lags.update({f"crowd-{i}": r.loop_lag_p99_ms for i, r in enumerate(results)})
    return PhaseResult(
        playing=mine.rows, crowd=tuple(row for r in results for row in r.rows), crowd_objects=frozenset(objects),
        counters={name: diff(after[name], before[name]) for name in after},
        origin=origin_requests(stack.log_path("origin"), release, crowd_start, ended) if crowd else None,
        loop_lag_p99_ms=lags, generator_cpu_s=round(time.process_time() - cpu0 + sum(r.cpu_s for r in results), 2),
        service_cpu_s={name: round(cpu_after[name] - cpu_before[name], 2) for name in cpu_after if name in cpu_before},
        wall_s=round(time.monotonic() - started, 2))


@dataclass(frozen=True, kw_only=True, slots=True)
class CrowdReport:
    config: dict[str, Any]
    figures: dict[str, Any]
    crowd: PhaseResult
    baseline: PhaseResult | None
    preposition: list[dict[str, object]] = field(default_factory=list)

    def as_dict(self, *, sessions: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"config": self.config, "figures": self.figures, "preposition": self.preposition}
        if sessions:
            out["sessions"] = {"crowd": list(self.crowd.crowd), "playing": list(self.crowd.playing),
                               "baseline": list(self.baseline.playing) if self.baseline else []}
        return out


async def run_crowd(config: CrowdConfig, target: CrowdStack, *, release: str, catalogue: str,
                    segment_s: float) -> CrowdReport:
    """The quiet baseline (unless `config.baseline` is off), then the crowd, on one stack: the
    catalogue title is pre-positioned on every edge first, the release is cold until the crowd."""
    span_s = (config.lead_s + config.within_s) / config.speed + config.start_margin_s
    if config.login == "device" and span_s > 0.8 * target.stack.config.access_ttl_s:
        raise CliError(f"the crowd arrives over {span_s:.0f} s of wall time, longer than its devices' access tokens "
                       f"live ({target.stack.config.access_ttl_s} s): use --login each, or a higher --speed")
    plan = plan_sessions(config, release=release, catalogue=catalogue, segment_s=segment_s,
                         password=target.password)
    async with aiohttp.ClientSession(trust_env=False) as http:
        pushed = await preposition(http, target.stack, catalogue) if config.playing else []
    with crowd_executor(config) as executor:
        if executor is not None:
            tasks = shard_count(config, len(plan.crowd))
            await asyncio.wait_for(asyncio.gather(*(asyncio.wrap_future(executor.submit(warm_up))
                                                    for _ in range(tasks))), timeout=120)
        baseline = None
        if config.baseline and config.playing:
            baseline = await run_phase(config, target, plan, executor, crowd=False, release=release)
        phase = await run_phase(config, target, plan, executor, crowd=True, release=release)
    return CrowdReport(config=config_dict(config), figures=figures(config, phase, baseline, release=release),
                       crowd=phase, baseline=baseline, preposition=pushed)


@dataclass(frozen=True, kw_only=True, slots=True)
class CrowdSetup:
    """What the crowd plays and the stack it plays against. The release and the catalogue title are
    linked into a private content root under `work_dir` (a catalogue of the same title is renamed
    `<release>-playing`)."""

    release_dir: Path  # a packaged title: what the crowd plays, cold at the edges until then
    catalogue_dir: Path | None = None  # what the playing sessions play (None: a copy of the release)
    work_dir: Path
    edges: int = 2
    edge_cache_bytes: int = 256 * 1024 * 1024
    host: str = "127.0.0.1"  # where the stack listens (an address the crowd's Dask workers reach)


async def run_crowd_stack(config: CrowdConfig, setup: CrowdSetup) -> CrowdReport:
    """Prepare the content, start the stack (service logs in `work_dir/logs`), run the crowd."""
    release = setup.release_dir.name
    source = setup.catalogue_dir or setup.release_dir
    catalogue = source.name if source.name != release else f"{release}-playing"
    content = prepare_content(setup.work_dir / "content", {release: setup.release_dir, catalogue: source})
    segment_s = load_segments_json(content / release / SEGMENTS_NAME).segment_duration_s
    stack_config = CrowdStackConfig(content_root=content, work_dir=setup.work_dir, log_dir=setup.work_dir / "logs",
                                    edges=setup.edges, edge_cache_bytes=setup.edge_cache_bytes, host=setup.host,
                                    accounts=(*playing_accounts(config), *crowd_accounts(config)))
    async with crowd_stack(stack_config) as target:
        return await run_crowd(config, target, release=release, catalogue=catalogue, segment_s=segment_s)


def config_dict(config: CrowdConfig) -> dict[str, Any]:
    out: dict[str, Any] = {name: getattr(config, name) for name in config.__dataclass_fields__}
    out["traces"] = [t.name for t in config.traces] or f"random walks around {config.link_mean_bps:g} bit/s"
    out["accounts"] = config.accounts
    return out


# --- the figures ----------------------------------------------------------------------------------


def _pct(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def _mean(values: Sequence[float]) -> float | None:
    return round(float(np.mean(values)), 3) if values else None


def _statuses(rows: Sequence[Row], endpoint: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in rows:
        for status, n in row.get("statuses", {}).get(endpoint, {}).items():
            out[status] = out.get(status, 0) + n
    return out


def _qoe(rows: Sequence[Row]) -> dict[str, Any]:
    ok = [r for r in rows if r.get("qoe_lin") is not None]
    return {"sessions": len(rows), "played": len(ok), "failed": sum(1 for r in rows if r.get("error")),
            "qoe_lin_mean": _mean([r["qoe_lin"] for r in ok]),
            "rebuffer_s_total": round(sum(r["rebuffer_s"] for r in ok), 3),
            "stalls": sum(r["rebuffer_count"] for r in ok),
            "avg_bitrate_bps_mean": _mean([r["avg_bitrate_bps"] for r in ok])}


def figures(config: CrowdConfig, phase: PhaseResult, baseline: PhaseResult | None, *, release: str) -> dict[str, Any]:
    crowd = phase.crowd
    started = [r["startup_s"] for r in crowd if r.get("startup_s") is not None]
    steps = {}
    for step in ("token_s", "playback_s", "manifest_s", "license_s"):
        values = [r["bootstrap_ms"][step] for r in crowd if step in r.get("bootstrap_ms", {})]
        if values:
            steps[step.removesuffix("_s")] = {"p50_ms": _pct(values, 50), "p95_ms": _pct(values, 95)}
    edges = phase.counters["edges"]
    gateway = phase.counters["gateway"]
    hits, misses = total(edges, "edge_cache_hits_total"), total(edges, "edge_cache_misses_total")
    seen = {"HIT": 0, "MISS": 0}
    for row in crowd:
        for key, n in row.get("x_cache", {}).items():
            seen[key] = seen.get(key, 0) + n
    release_objects = [o for o in phase.crowd_objects if f"/{release}/" in o]
    edge_segments = [o for o in release_objects if o.endswith(".m4s")]
    origin_fetches = total(edges, "edge_origin_fetches_total")
    statuses = {endpoint: _statuses(crowd + phase.playing, endpoint) for endpoint in ("auth", "playback", "license", "edge")}
    shed_client = {endpoint: {s: n for s, n in counts.items() if s in ("429", "503")} for endpoint, counts in statuses.items()}
    # Failures that are not shedding: timeouts (504) and unreachable backends (502) behind the gateway.
    other_5xx = {endpoint: sum(n for s, n in counts.items() if s.startswith("5") and s != "503")
                 for endpoint, counts in statuses.items()}
    out: dict[str, Any] = {
        "crowd": {
            **_qoe(crowd),
            "started": len(started),
            "startup_s": {"p50": _pct(started, 50), "p95": _pct(started, 95), "max": _pct(started, 100)},
            "bootstrap_wall": steps,
            "errors": _error_kinds(crowd),
            "arrival_late_s_max": max((r["late_s"] for r in crowd), default=None),
        },
        "origin": {
            "fetches": int(origin_fetches),
            "by_outcome": {k: int(v) for k, v in by_label(edges, "edge_origin_fetches_total", "outcome").items() if v},
            "objects_at_edges": len(release_objects),
            "per_object": round(origin_fetches / len(release_objects), 3) if release_objects else None,
            "media_segment_requests": phase.origin,
            "edge_segment_pairs": len(edge_segments),
            # 1.0: each edge asked the origin once per segment it served, however many players missed at once.
            "per_media_segment": (round(phase.origin["requests"] / len(edge_segments), 3)
                                  if phase.origin and edge_segments else None),
            "coalesced_waiters": int(total(edges, "edge_coalesced_waiters_total")),
        },
        "edges": {
            "hit_ratio": round(hits / (hits + misses), 4) if hits + misses else None,
            "crowd_hit_ratio": round(seen["HIT"] / (seen["HIT"] + seen["MISS"]), 4) if seen["HIT"] + seen["MISS"] else None,
            "requests_by_status": {k: int(v) for k, v in by_label(edges, "edge_requests_total", "status").items() if v},
        },
        "shedding": {
            "client": {k: v for k, v in shed_client.items() if v},
            "shed_requests": sum(sum(v.values()) for v in shed_client.values()),
            "other_5xx": {k: v for k, v in other_5xx.items() if v},
            "gateway_rate_limited": {k: int(v) for k, v in by_label(gateway, "gateway_rate_limited_total", "backend").items() if v},
            "gateway_rejected": {k: int(v) for k, v in by_label(gateway, "gateway_rejected_total", "reason").items() if v},
        },
        "playing": {"with_crowd": _qoe(phase.playing)},
        "fidelity": {"loop_lag_p99_ms": phase.loop_lag_p99_ms, "generator_cpu_s": phase.generator_cpu_s,
                     "wall_s": phase.wall_s},
        "service_cpu_s": phase.service_cpu_s,
    }
    if baseline is not None:
        out["playing"]["baseline"] = _qoe(baseline.playing)
        out["playing"]["paired"] = _paired(baseline.playing, phase.playing)
        out["fidelity"]["baseline_loop_lag_p99_ms"] = baseline.loop_lag_p99_ms.get("playing")
    return out


def _paired(baseline: Sequence[Row], crowd: Sequence[Row]) -> dict[str, Any]:
    """Per playing session: QoE with the crowd minus QoE alone (same link, same schedule)."""
    alone = {r["index"]: r for r in baseline if r.get("qoe_lin") is not None}
    deltas = [r["qoe_lin"] - alone[r["index"]]["qoe_lin"] for r in crowd
              if r.get("qoe_lin") is not None and r["index"] in alone]
    stalls = [r["rebuffer_s"] - alone[r["index"]]["rebuffer_s"] for r in crowd
              if r.get("qoe_lin") is not None and r["index"] in alone]
    return {"pairs": len(deltas), "qoe_lin_delta_mean": _mean(deltas),
            "qoe_lin_delta_min": round(min(deltas), 3) if deltas else None,
            "rebuffer_s_delta_max": round(max(stalls), 3) if stalls else None,
            "worse_sessions": sum(1 for d in deltas if d < -0.5)}


def _error_kinds(rows: Sequence[Row]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for row in rows:
        error = row.get("error")
        if error:
            kind = str(error).split(" (", 1)[0][:120]
            kinds[kind] = kinds.get(kind, 0) + 1
    return dict(sorted(kinds.items(), key=lambda kv: -kv[1])[:8])


def summary_lines(report: CrowdReport) -> list[str]:
    """The figures for a reader."""
    f, c = report.figures, report.config
    crowd, origin, edges, shed = f["crowd"], f["origin"], f["edges"], f["shedding"]
    startup = crowd["startup_s"]
    lines = [
        f"flash crowd: {c['sessions']} sessions of the new title within {c['within_s']:g} s at {c['speed']:g}x "
        f"({c['arrival']} arrivals, {c['abr']}, login {c['login']}), {c['playing']} sessions already playing",
        f"  crowd: {crowd['started']} of {crowd['sessions']} started playing, {crowd['failed']} failed; start-up p50 "
        f"{_fmt(startup['p50'])} s, p95 {_fmt(startup['p95'])} s, max {_fmt(startup['max'])} s (session seconds)",
    ]
    if crowd["bootstrap_wall"]:
        lines.append("  service latency (wall): " + ", ".join(
            f"{step} p50 {v['p50_ms']} ms / p95 {v['p95_ms']} ms" for step, v in crowd["bootstrap_wall"].items()))
    segment = origin["media_segment_requests"]
    lines.append(f"  origin: {origin['fetches']} fetches for {origin['objects_at_edges']} (edge, object) pairs "
                 f"= {_fmt(origin['per_object'])} per object; media segments: "
                 + (f"{segment['requests']} origin requests for {segment['segments']} segments, served as "
                    f"{origin['edge_segment_pairs']} (edge, segment) pairs = {_fmt(origin['per_media_segment'])} "
                    "per segment and edge" if segment else "no origin log")
                 + f"; {origin['coalesced_waiters']} coalesced waiters")
    lines.append(f"  edges: hit ratio {_fmt(edges['hit_ratio'])} (all requests in the phase), "
                 f"{_fmt(edges['crowd_hit_ratio'])} (the crowd's)")
    lines.append(f"  shedding: {shed['shed_requests']} requests answered 429/503 {shed['client'] or ''}; gateway "
                 f"rate-limited {shed['gateway_rate_limited'] or 0}, rejected {shed['gateway_rejected'] or 0}; "
                 f"other 5xx {shed['other_5xx'] or 0}")
    playing = f["playing"]
    now = playing["with_crowd"]
    line = (f"  playing sessions with the crowd: QoE lin mean {_fmt(now['qoe_lin_mean'])}, rebuffering "
            f"{now['rebuffer_s_total']} s in {now['stalls']} stalls, {now['failed']} failed")
    if "baseline" in playing:
        base, paired = playing["baseline"], playing["paired"]
        line += (f"; alone: {_fmt(base['qoe_lin_mean'])}, {base['rebuffer_s_total']} s in {base['stalls']} stalls; "
                 f"paired delta mean {_fmt(paired['qoe_lin_delta_mean'])}, worst {_fmt(paired['qoe_lin_delta_min'])}, "
                 f"{paired['worse_sessions']} sessions worse by > 0.5")
    lines.append(line)
    fid = f["fidelity"]
    if f.get("service_cpu_s"):
        lines.append("  service CPU during the crowd: " + ", ".join(f"{k} {v:.1f} s" for k, v in f["service_cpu_s"].items()))
    lines.append(f"  fidelity: loop lag p99 {fid['loop_lag_p99_ms']} ms, arrivals up to "
                 f"{_fmt(crowd['arrival_late_s_max'])} session s late, generator CPU {fid['generator_cpu_s']} s, "
                 f"wall {fid['wall_s']} s")
    if crowd["errors"]:
        lines.append(f"  errors: {crowd['errors']}")
    return lines


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
