"""Chaos runs: N headless sessions against a stack in processes mode while a real fault plays out.

A scenario kills or stops a service process, turns on an edge's fault hook (`server/faults.py`:
latency before the first byte, a burst of 5xx) or cuts the sessions' shaped links; the runner
measures what that did to each session's QoE, how long recovery took, and accounts for every failed
request (by request ID in the services' logs, or client-side when no server answered). Times are
"chaos seconds": wall seconds since the run started times `speed`, the unit of session time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from netsim import synthetic
from netsim.shaper import Shaper
from netsim.trace import Trace
from player.client.bootstrap import BootstrapError, bootstrap_stack
from player.client.eventlog import EventLog
from player.client.fetch import ABANDONED, Attempt, FetchConfig, Fetcher, host_of
from player.client.harness import LinkConfig, TitleTarget, play_headless
from player.client.headless import PlayerConfig
from player.events import SessionEvent
from player.research.chaos_accounting import account_failures, read_service_logs
from player.research.chaos_region import region_outage, session_region
from player.session import SessionConfig
from server.config import ACCESS_LOG_FLUSH_INTERVAL_S, RateLimitPolicy, StackConfig
from server.stack import RunningStack, start_stack_with_demo_user


@dataclass(frozen=True, kw_only=True, slots=True)
class ChaosConfig:
    """One chaos run. Durations are session (media) seconds; wall seconds are these / `speed`."""

    scenario: str
    sessions: int = 4
    abr: str = "bba"
    trace: Trace | None = None  # None: a constant 3 Mbit/s link
    rtt_ms: float = 40.0
    speed: float = 1.0
    fault_at_s: float = 14.0  # after every session has started playing
    fault_s: float | None = None  # how long the fault lasts (None: the scenario's default)
    buffer_cap_s: float = 16.0
    slow_delay_s: float = 2.0  # slow-edge: added before the first byte of each response
    error_status: int = 503  # edge-5xx
    probe_interval_s: float = 1.0  # service faults: a new session tries to start at most this far apart
    recovery_wait_s: float = 20.0  # wall seconds to wait for service recovery after the fault ends
    session_timeout_s: float = 600.0  # wall seconds: a session still running then counts as hung
    stagger_s: float = 0.3  # wall seconds between session starts
    client_regions: tuple[str, ...] = ()  # each session's client region, cycled (a stack with regions)

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.scenario!r}; choose from {', '.join(SCENARIOS)}")
        if self.sessions < 1:
            raise ValueError("sessions must be >= 1")
        if not self.speed > 0:
            raise ValueError("speed must be > 0")
        if self.fault_at_s < 0 or (self.fault_s is not None and not self.fault_s > 0):
            raise ValueError("fault_at_s must be >= 0 and fault_s > 0")
        if not self.buffer_cap_s > 0 or not self.probe_interval_s > 0 or self.slow_delay_s < 0:
            raise ValueError("buffer_cap_s and probe_interval_s must be > 0, slow_delay_s >= 0")
        if not 500 <= self.error_status <= 599:
            raise ValueError("error_status must be a 5xx status")
        if not self.session_timeout_s > 0 or self.recovery_wait_s < 0 or self.stagger_s < 0:
            raise ValueError("session_timeout_s must be > 0, recovery_wait_s and stagger_s >= 0")

    @property
    def fault_duration_s(self) -> float:
        return self.fault_s if self.fault_s is not None else SCENARIOS[self.scenario].default_fault_s


@dataclass(frozen=True, kw_only=True, slots=True)
class Scenario:
    name: str
    description: str
    default_fault_s: float
    inject: Callable[[ChaosRun], Awaitable[None]]


@dataclass(frozen=True, kw_only=True, slots=True)
class Probe:
    """One attempt to start a new session (or to fetch an object) while a service fault plays out."""

    at_s: float  # chaos seconds when it started
    wall_s: float  # how long it took
    ok: bool
    error: str | None
    statuses: tuple[int | None, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionOutcome:
    index: int
    report: dict[str, Any] | None
    error: str | None  # bootstrap or playback error
    crashed: str | None  # an unexpected exception (a bug), with its traceback
    hung: bool
    started_at_s: float | None
    buffer_at_fault_s: float | None
    fault_rebuffer_s: float  # stall time within [fault start, fault end + buffer cap]
    rebuffer_s: float
    failed_requests: int
    failover_s: float | None  # first failed request in the fault window -> next successful one
    recovery_s: float | None  # fault end -> first success (from when it was asked for, if later)
    finished: bool  # played every segment
    done_before_fault_end: bool  # finished with no request at or after the fault's end: nothing to recover

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True, kw_only=True, slots=True)
class ChaosReport:
    scenario: str
    config: dict[str, Any]
    fault_start_s: float | None
    fault_end_s: float | None
    victim: str | None
    sessions: tuple[SessionOutcome, ...]
    service: dict[str, Any]  # what the scenario measured on the service side (steering, breaker, probes)
    accounting: dict[str, Any]  # failed requests: matched in service logs / client-side / unaccounted
    log_problems: tuple[str, ...]  # tracebacks or unhandled errors found in service logs
    wall_s: float
    cpu_s: float

    def as_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["sessions"] = [s.as_dict() for s in self.sessions]
        out["log_problems"] = list(self.log_problems)
        return out


class _ChaosLog(EventLog):
    """An event log that stamps each event with chaos time (`chaos_t`): session time + session start."""

    def __init__(self, clock: Callable[[], float], path: Path | None) -> None:
        super().__init__(path)
        self._clock = clock
        self.started_at_s: float | None = None

    def emit(self, event: SessionEvent) -> None:
        if event.kind == "start" and self.started_at_s is None:
            self.started_at_s = self._clock() - event.time_s
        base = self.started_at_s if self.started_at_s is not None else self._clock() - event.time_s
        self._write(event, {"chaos_t": round(base + event.time_s, 4)})


@dataclass(kw_only=True)
class ChaosRun:
    """The state a scenario works on (mutable: the scenario records what it did)."""

    config: ChaosConfig
    stack: RunningStack
    title: str
    password: str
    http: aiohttp.ClientSession
    t0: float
    logs: list[_ChaosLog] = field(default_factory=list)
    shapers: list[Shaper] = field(default_factory=list)
    fault_start_s: float | None = None
    fault_end_s: float | None = None
    victim: str | None = None
    service: dict[str, Any] = field(default_factory=dict)
    probe_attempts: list[Attempt] = field(default_factory=list)
    _token: str | None = None

    def now(self) -> float:
        """Chaos seconds."""
        return (time.monotonic() - self.t0) * self.config.speed

    async def sleep(self, session_s: float) -> None:
        await asyncio.sleep(max(0.0, session_s) / self.config.speed)

    @property
    def fault_s(self) -> float:
        return self.config.fault_duration_s

    def start_fault(self) -> None:
        self.fault_start_s = self.now()

    def end_fault(self) -> None:
        self.fault_end_s = self.now()

    # -- helpers the scenarios share --

    def edge_in_use(self) -> str:
        """The edge (service name) most sessions fetched their latest segment from."""
        votes: dict[str, int] = {}
        for log in self.logs:
            requests = [e for e in log.events if e["type"] == "request" and "/s/" in e.get("url", "")]
            if requests:
                host = host_of(requests[-1]["url"])
                votes[host] = votes.get(host, 0) + 1
        urls = self.stack.edge_urls
        best = max(votes, key=lambda h: votes[h]) if votes else urls[0]
        return f"edge-{urls.index(best)}" if best in urls else "edge-0"

    def signed_url(self, edge: str, relative: str) -> str:
        """A URL for `/<title>/<relative>` on `edge`, signed like the playback API's."""
        return self.stack.signed_url(edge, self.title, relative, session_id="chaos")

    async def get(self, url: str, *, timeout_s: float = 10.0) -> tuple[int | None, float, str | None]:
        """(status or None, wall seconds, error) of one GET."""
        started = time.monotonic()
        try:
            async with self.http.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
                await resp.read()
                return resp.status, time.monotonic() - started, None
        except (aiohttp.ClientError, TimeoutError) as exc:
            return None, time.monotonic() - started, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

    async def new_session(self) -> Probe:
        """Start (bootstrap only) a new session through the gateway, as a player would."""
        attempts: list[Attempt] = []
        fetcher = Fetcher(self.http, FetchConfig(), observer=attempts.append)
        at_s, started = self.now(), time.monotonic()
        try:
            await bootstrap_stack(fetcher, self.stack.gateway_url, self.title, username="demo", password=self.password)
            ok, error = True, None
        except BootstrapError as exc:
            ok, error = False, str(exc)
        self.probe_attempts.extend(attempts)
        return Probe(at_s=round(at_s, 3), wall_s=round(time.monotonic() - started, 4), ok=ok, error=error,
                     statuses=tuple(a.status for a in attempts if a.error is not None))

    async def steering_urls(self) -> list[str]:
        """The edges the playback API hands a new session now (through the gateway, with a token)."""
        if self._token is None:
            async with self.http.post(f"{self.stack.gateway_url}/auth/token",
                                      json={"username": "demo", "password": self.password}) as resp:
                self._token = (await resp.json())["access_token"]
        async with self.http.post(f"{self.stack.gateway_url}/playback/{quote(self.title, safe='')}",
                                  headers={"Authorization": f"Bearer {self._token}"}) as resp:
            body = await resp.json()
        return [host_of(u) for u in body.get("manifest_urls", [])]

    async def wait_live(self, edge_url: str, live: bool, *, timeout_s: float) -> float | None:
        """Wall seconds until steering does (live) or does not (not live) rank `edge_url`; None on timeout."""
        started = time.monotonic()
        step_s = min(0.05, self.stack.config.heartbeat_s / 10)
        while time.monotonic() - started < timeout_s:
            if (edge_url in await self.stack.live_edges()) == live:
                return round(time.monotonic() - started, 4)
            await asyncio.sleep(step_s)
        return None


# --- scenarios -------------------------------------------------------------------------------------

async def _kill_edge(run: ChaosRun) -> None:
    victim = run.victim = run.edge_in_use()
    url = run.stack.url(victim)
    heartbeat_s = run.stack.config.heartbeat_s
    run.start_fault()
    await run.stack.kill_service(victim)
    drop_s = await run.wait_live(url, False, timeout_s=10 * heartbeat_s + 10)
    steering = await run.steering_urls()
    run.service.update(steering_drop_wall_s=drop_s, steering_drop_heartbeats=None if drop_s is None else round(
        drop_s / heartbeat_s, 2), heartbeat_s=heartbeat_s, new_sessions_steered_to_victim=url in steering,
        victim_url=url)
    await run.sleep(run.fault_s - (run.now() - run.fault_start_s))  # type: ignore[operator]
    run.end_fault()
    started = time.monotonic()
    await run.stack.start_service(victim)
    ranked_after_s = await run.wait_live(url, True, timeout_s=10 * heartbeat_s + 10)
    # Recovery: the restarted edge is ranked by steering again (restart included).
    run.service["rejoin_wall_s"] = None if ranked_after_s is None else round(time.monotonic() - started, 4)


async def _edge_fault(run: ChaosRun, fault: dict[str, Any]) -> None:
    victim = run.victim = run.edge_in_use()
    wall_s = run.fault_s / run.config.speed
    run.start_fault()
    async with run.http.post(run.stack.fault_url(victim), json={**fault, "duration_s": wall_s},
                             headers=run.stack.internal_headers()) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{victim} refused the fault: HTTP {resp.status} {await resp.text()}")
    # Probe the victim on the side: how its service looks during and after the fault.
    probes: list[Probe] = []
    manifest = run.signed_url(victim, "manifest.mpd")
    deadline = time.monotonic() + wall_s
    while time.monotonic() < deadline:
        at = run.now()
        status, took, error = await run.get(manifest)
        probes.append(Probe(at_s=round(at, 3), wall_s=round(took, 4), ok=status == 200, error=error,
                            statuses=(status,)))
        await asyncio.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
    run.end_fault()
    async with run.http.get(run.stack.fault_url(victim), headers=run.stack.internal_headers()) as resp:
        state = await resp.json()
    # Normal service: the first probe after the fault answered 200 without the added delay.
    normal_within_s = fault.get("delay_s", 0.0) / 2 + 0.25
    recovery_s = None
    started = time.monotonic()
    while time.monotonic() - started < run.config.recovery_wait_s:
        status, took, _ = await run.get(manifest)
        if status == 200 and took < normal_within_s:
            recovery_s = round(time.monotonic() - started, 4)
            break
        await asyncio.sleep(0.05)
    run.service.update(during=[_probe_dict(p) for p in probes],
                       injected_errors=state.get("injected_errors"), matched_requests=state.get("matched"),
                       service_recovery_wall_s=recovery_s)


async def _slow_edge(run: ChaosRun) -> None:
    await _edge_fault(run, {"delay_s": run.config.slow_delay_s / run.config.speed})


async def _edge_5xx(run: ChaosRun) -> None:
    await _edge_fault(run, {"error_status": run.config.error_status, "error_ratio": 1.0})


async def _origin_outage(run: ChaosRun) -> None:
    # The title was pre-positioned on every edge before the sessions started (see `run_chaos`).
    run.victim = "origin"
    miss_path = "video/chaosmiss/1.m4s"  # a layout path no edge holds: a miss goes to the origin
    run.start_fault()
    await run.stack.kill_service("origin")
    edge = run.edge_in_use()
    misses: list[Probe] = []
    while run.now() - run.fault_start_s < run.fault_s:  # type: ignore[operator]
        at = run.now()
        status, took, error = await run.get(run.signed_url(edge, miss_path))
        misses.append(Probe(at_s=round(at, 3), wall_s=round(took, 4), ok=False, error=error, statuses=(status,)))
        await run.sleep(run.config.probe_interval_s)
    run.end_fault()
    started = time.monotonic()  # recovery includes the restart
    await run.stack.start_service("origin")
    # Recovery: a miss reaches the origin again (it answers 404 for this path, not 502).
    recovery_s = None
    while time.monotonic() - started < run.config.recovery_wait_s:
        status, _, _ = await run.get(run.signed_url(edge, miss_path))
        if status == 404:
            recovery_s = round(time.monotonic() - started, 4)
            break
        await asyncio.sleep(0.05)
    run.service.update(miss_probes=[_probe_dict(p) for p in misses], service_recovery_wall_s=recovery_s,
                       miss_statuses=sorted({p.statuses[0] for p in misses if p.statuses[0] is not None}),
                       miss_wall_s_max=max((p.wall_s for p in misses), default=None))


def probe_interval_s(configured_s: float, fault_s: float, failure_threshold: int) -> float:
    """New sessions' spacing in a service outage: more than `failure_threshold` fail in it (the breaker opens)."""
    return min(configured_s, fault_s / (failure_threshold + 2))


async def _service_outage(run: ChaosRun, name: str) -> None:
    run.victim = name
    baseline = await run.new_session()
    run.start_fault()
    await run.stack.kill_service(name)
    during: list[Probe] = []
    interval_s = probe_interval_s(run.config.probe_interval_s, run.fault_s,
                                  run.stack.config.policy_for(name).failure_threshold)
    while run.now() - run.fault_start_s < run.fault_s:  # type: ignore[operator]
        during.append(await run.new_session())
        await run.sleep(interval_s)
    async with run.http.get(run.stack.gateway_url + "/healthz") as resp:
        breaker = (await resp.json())["backends"].get(name)
    run.end_fault()
    started = time.monotonic()  # recovery includes the restart
    await run.stack.start_service(name)
    # Recovery: the first new session that starts after the service is back (the breaker lets a
    # probe through after its reset timeout and closes on success).
    after: list[Probe] = []
    recovery_s = None
    while time.monotonic() - started < run.config.recovery_wait_s + run.stack.config.policy_for(name).reset_timeout_s:
        probe = await run.new_session()
        after.append(probe)
        if probe.ok:
            recovery_s = round(time.monotonic() - started, 4)
            break
        await asyncio.sleep(0.25)
    run.service.update(baseline=_probe_dict(baseline), new_sessions_during=[_probe_dict(p) for p in during],
                       breaker_at_fault_end=breaker, after=[_probe_dict(p) for p in after], service_recovery_wall_s=recovery_s,
                       new_session_fail_wall_s_max=max((p.wall_s for p in during), default=None))


async def _license_outage(run: ChaosRun) -> None:
    await _service_outage(run, "license")


async def _auth_outage(run: ChaosRun) -> None:
    await _service_outage(run, "auth")


async def _link_outage(run: ChaosRun) -> None:
    run.victim = "link"
    run.start_fault()
    for shaper in run.shapers:
        shaper.outage(run.fault_s)
    run.service["links_cut"] = len(run.shapers)
    await run.sleep(run.fault_s)
    run.end_fault()


def _probe_dict(probe: Probe) -> dict[str, Any]:
    return {"at_s": probe.at_s, "wall_s": probe.wall_s, "ok": probe.ok, "error": probe.error,
            "statuses": list(probe.statuses)}


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario(name="kill-edge", default_fault_s=8.0, inject=_kill_edge,
             description="SIGKILL the edge the sessions use; restart it after the fault"),
    Scenario(name="slow-edge", default_fault_s=8.0, inject=_slow_edge,
             description="the edge in use waits before every response's first byte (server-side hook)"),
    Scenario(name="edge-5xx", default_fault_s=6.0, inject=_edge_5xx,
             description="the edge in use answers every content request with a 5xx (server-side hook)"),
    Scenario(name="origin-outage", default_fault_s=8.0, inject=_origin_outage,
             description="SIGKILL the origin (title pre-positioned): edges serve what they hold, misses fail fast"),
    Scenario(name="license-outage", default_fault_s=6.0, inject=_license_outage,
             description="SIGKILL the license service: running sessions play on, new ones fail fast"),
    Scenario(name="auth-outage", default_fault_s=6.0, inject=_auth_outage,
             description="SIGKILL the auth service: running sessions play on, new ones fail fast"),
    Scenario(name="link-outage", default_fault_s=8.0, inject=_link_outage,
             description="every session's shaped link delivers nothing for the fault's duration"),
    Scenario(name="region-outage", default_fault_s=8.0, inject=region_outage,  # type: ignore[arg-type]
             description="SIGKILL every edge of the first client region: its clients move to the next region"),
)}


# --- running ---------------------------------------------------------------------------------------

async def _play(run: ChaosRun, index: int, out_dir: Path | None) -> SessionOutcome:
    cfg = run.config
    log = _ChaosLog(run.now, out_dir / f"session-{index}.jsonl" if out_dir is not None else None)
    run.logs.append(log)
    player = PlayerConfig(abr=cfg.abr, speed=cfg.speed, decode="none", audio=True,
                          session=SessionConfig(buffer_cap_s=cfg.buffer_cap_s))
    target = TitleTarget(title=run.title, gateway_url=run.stack.gateway_url, username="demo", password=run.password,
                         region=session_region(cfg.client_regions, index))
    link = LinkConfig(trace=cfg.trace or synthetic.constant(3e6, duration_s=3600.0), rtt_ms=cfg.rtt_ms)
    report = None
    error = crashed = None
    hung = False
    try:
        report = await asyncio.wait_for(play_headless(target, player, link=link, events=log, decoder_factory=None,
                                                      on_link=run.shapers.append), cfg.session_timeout_s)
        error = report.error
    except BootstrapError as exc:
        error = f"bootstrap: {exc}"
    except TimeoutError:
        hung = True
    except Exception:  # the boundary of a chaos run: a player bug is a finding, reported with its traceback
        crashed = traceback.format_exc()
    finally:
        log.close()
    return _outcome(run, index, log, report.as_dict() if report is not None else None, error, crashed, hung)


def _failed(event: dict[str, Any]) -> bool:
    """A request event that failed (an abandoned download is the player's choice, not a failure)."""
    return bool(event.get("error")) and event.get("error") != ABANDONED


def _outcome(run: ChaosRun, index: int, log: _ChaosLog, report: dict[str, Any] | None, error: str | None,
             crashed: str | None, hung: bool) -> SessionOutcome:
    start, end = run.fault_start_s, run.fault_end_s
    events = log.events
    buffer_at = None
    if start is not None:
        before = [e for e in events if e["type"] == "buffer" and e["chaos_t"] <= start]
        buffer_at = before[-1]["buffer_s"] if before else None
    stalls = _stalls(events)
    fault_rebuffer = 0.0
    if start is not None and end is not None:
        window_end = end + run.config.buffer_cap_s
        fault_rebuffer = sum(max(0.0, min(b, window_end) - max(a, start)) for a, b in stalls)
    requests = [e for e in events if e["type"] == "request"]
    failed = [e for e in requests if _failed(e)]
    failover = recovery = None
    if start is not None:
        first_fail = next((e for e in failed if e["chaos_t"] >= start), None)
        if first_fail is not None:
            nxt = next((e for e in requests if not e.get("error") and e["chaos_t"] > first_fail["chaos_t"]), None)
            failover = None if nxt is None else round(nxt["chaos_t"] - first_fail["chaos_t"], 4)
    if end is not None:
        first_ok = next((e for e in requests if not e.get("error") and e["chaos_t"] >= end), None)
        if first_ok is not None:
            asked_at = first_ok["chaos_t"] - (first_ok.get("duration_s") or 0.0)
            recovery = round(first_ok["chaos_t"] - max(end, asked_at), 4)
    segments = report["segments"] if report else 0
    total = next((e.get("segments") for e in events if e["type"] == "start"), None)
    finished = bool(report) and error is None and total is not None and segments == total
    return SessionOutcome(
        index=index, report=report, error=error, crashed=crashed, hung=hung, started_at_s=log.started_at_s,
        buffer_at_fault_s=buffer_at, fault_rebuffer_s=round(fault_rebuffer, 4),
        rebuffer_s=round(sum(b - a for a, b in stalls), 4), failed_requests=len(failed), failover_s=failover,
        recovery_s=recovery, finished=finished,
        done_before_fault_end=finished and end is not None and all(e["chaos_t"] < end for e in requests))


def _stalls(events: Sequence[dict[str, Any]]) -> list[tuple[float, float]]:
    """(start, end) chaos seconds of each stall after playback started (startup is not a stall)."""
    out: list[tuple[float, float]] = []
    opened: float | None = None
    last_t = 0.0
    for event in events:
        last_t = max(last_t, event["chaos_t"])
        if event["type"] == "stall" and opened is None:
            opened = event["chaos_t"]
        elif event["type"] == "resume" and opened is not None:
            out.append((opened, event["chaos_t"]))
            opened = None
    if opened is not None:
        out.append((opened, last_t))
    return out


@dataclass(frozen=True, kw_only=True, slots=True)
class ChaosStackConfig:
    """The stack a chaos run starts (processes mode; service logs kept in `log_dir`)."""

    content_root: Path
    work_dir: Path  # the stack file and its secrets
    log_dir: Path  # each service's log, `<service>.log`
    edges: int = 2
    heartbeat_s: float = 0.5
    regions_path: Path | None = None  # regions and their edges (server/regions.py): replaces `edges`

    def __post_init__(self) -> None:
        if self.edges < 2 and self.regions_path is None:
            raise ValueError("a chaos run needs at least 2 edges (one to fail, one to fail over to)")


@contextlib.asynccontextmanager
async def chaos_stack(config: ChaosStackConfig) -> AsyncIterator[tuple[RunningStack, str]]:
    """A processes-mode stack on `config.content_root` with the demo user: (stack, demo password)."""
    # Every session and probe logs in as the demo user from this one address, probes retrying fast
    # during an outage: the per-address limits (meant for one misbehaving client) would answer 429, and
    # the run would measure them instead of the fault.
    unlimited = RateLimitPolicy(rate_per_s=1000.0, burst=1000)
    stack_config = StackConfig(config_path=config.work_dir / "stack" / "stack.json",
                               content_root=config.content_root, port=0, edges=config.edges, processes=True,
                               heartbeat_s=config.heartbeat_s, access_log=True, rate_limit=unlimited,
                               login_rate_limit=unlimited, regions_path=config.regions_path)
    async with start_stack_with_demo_user(stack_config, log_dir=config.log_dir) as (stack, credentials):
        yield stack, credentials.password


async def run_chaos(config: ChaosConfig, stack: RunningStack, *, title: str, password: str,
                    out_dir: Path | None = None) -> ChaosReport:
    """Play `config.sessions` sessions of `title` on `stack` while the scenario's fault plays out."""
    scenario = SCENARIOS[config.scenario]
    cpu0, wall0 = time.process_time(), time.monotonic()
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    async with aiohttp.ClientSession(trust_env=False) as http:
        run = ChaosRun(config=config, stack=stack, title=title, password=password, http=http, t0=time.monotonic())
        if config.scenario == "origin-outage":
            run.service["preposition"] = await _preposition(run)
        tasks = []
        for index in range(config.sessions):
            tasks.append(asyncio.create_task(_play(run, index, out_dir)))
            await asyncio.sleep(config.stagger_s)
        # The fault's clock starts once every session plays (or has failed to start).
        def all_started() -> bool:
            return all(t.done() or (i < len(run.logs) and run.logs[i].started_at_s is not None)
                       for i, t in enumerate(tasks))

        deadline = time.monotonic() + config.session_timeout_s
        while not all_started() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await run.sleep(config.fault_at_s)
        fault_error = None
        try:
            await asyncio.wait_for(scenario.inject(run), timeout=config.session_timeout_s)
        except Exception:  # the report says the fault itself failed; sessions are still collected
            fault_error = traceback.format_exc()
        outcomes = [await t for t in tasks]
    if fault_error is not None:
        run.service["fault_error"] = fault_error
    gateway_log = stack.log_path("gateway")
    log_dir = gateway_log.parent if gateway_log is not None else None
    if log_dir is not None:
        await asyncio.sleep(ACCESS_LOG_FLUSH_INTERVAL_S + 0.5)  # the services write their access logs in batches
    by_id, problems = read_service_logs(log_dir) if log_dir is not None else ({}, [])
    failed = [e for log in run.logs for e in log.events if e["type"] == "request" and _failed(e)]
    failed += [{"url": a.url, "status": a.status, "error": a.error, "request_id": a.request_id}
               for a in run.probe_attempts if a.error is not None]
    accounting = account_failures(failed, by_id) if log_dir is not None else {"failed": len(failed)}
    report = ChaosReport(
        scenario=config.scenario, config=_config_dict(config), fault_start_s=_r(run.fault_start_s),
        fault_end_s=_r(run.fault_end_s), victim=run.victim, sessions=tuple(outcomes), service=run.service,
        accounting=accounting, log_problems=tuple(problems), wall_s=round(time.monotonic() - wall0, 3),
        cpu_s=round(time.process_time() - cpu0, 3))
    if out_dir is not None:
        (out_dir / "chaos.json").write_text(json.dumps(report.as_dict(), indent=2, default=str) + "\n")
    return report


async def _preposition(run: ChaosRun) -> list[dict[str, Any]]:
    results = []
    for url in run.stack.edge_urls:
        async with run.http.post(f"{url}/internal/preposition/{quote(run.title, safe='')}",
                                 headers=run.stack.internal_headers(), timeout=aiohttp.ClientTimeout(total=120)) as resp:
            body = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"pre-positioning {run.title} on {url} failed: {body}")
            results.append({k: body.get(k) for k in ("objects", "fetched", "already_cached", "failed")})
    return results


def _config_dict(config: ChaosConfig) -> dict[str, Any]:
    out: dict[str, Any] = {name: getattr(config, name) for name in config.__dataclass_fields__}
    out["trace"] = config.trace.name if config.trace is not None else "constant 3 Mbit/s"
    out["fault_s"] = config.fault_duration_s
    return out


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def summary_lines(report: ChaosReport) -> list[str]:
    """A short human summary of a chaos report."""
    lines = [f"{report.scenario}: fault on {report.victim or '-'} from {report.fault_start_s} s to "
             f"{report.fault_end_s} s (chaos time); {report.wall_s:.1f} s wall, {report.cpu_s:.1f} s CPU"]
    for s in report.sessions:
        metrics = s.report or {}
        state = "finished" if s.finished else ("HUNG" if s.hung else ("CRASHED" if s.crashed else f"error: {s.error}"))
        lines.append(f"  session {s.index}: {state}; buffer at fault {_fmt(s.buffer_at_fault_s)} s, rebuffer in fault "
                     f"window {s.fault_rebuffer_s:.2f} s (total {s.rebuffer_s:.2f} s), failed requests {s.failed_requests}, "
                     f"failover {_fmt(s.failover_s)} s, recovery {_fmt(s.recovery_s)} s, "
                     f"bitrate {metrics.get('avg_bitrate_bps', 0) / 1e6:.2f} Mbit/s, QoE lin {_qoe(metrics)}")
    service = {k: v for k, v in report.service.items() if not isinstance(v, (list, dict))}
    if service:
        lines.append("  service: " + ", ".join(f"{k}={v}" for k, v in service.items()))
    acc = report.accounting
    lines.append(f"  failed requests: {acc.get('failed')} ({acc.get('matched_in_logs', '-')} in service logs by "
                 f"request ID, {acc.get('client_side', '-')} client-side, "
                 f"{len(acc.get('unaccounted', []))} unaccounted)")
    lines.append(f"  service log problems: {len(report.log_problems)}")
    return lines


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _qoe(metrics: dict[str, Any]) -> str:
    qoe = metrics.get("qoe_lin")
    return "-" if qoe is None else f"{qoe:.2f}"
