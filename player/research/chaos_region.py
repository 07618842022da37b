"""The `region-outage` chaos scenario: every edge of one region dies mid-session; its clients move to
the next region in their steering ranking (docs/STEERING.md). Measured per session: recovery (fault
start -> the first segment from another region's edge) and QoE, by client region.

The run object is the chaos runner's `ChaosRun` (player/research/chaos.py registers this scenario);
this module reads only the attributes named in `RegionRun`, so it needs nothing of the runner.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from server.stack import RunningStack

# Two regions, two edges each; 70 ms between them (a transatlantic path), 10-15 ms within one.
DEFAULT_REGIONS: dict[str, Any] = {
    "regions": ["eu", "us"],
    "default_region": "eu",
    "edges": [
        {"id": "eu-1", "region": "eu", "capacity": 64, "rtt_ms": {"eu": 10, "us": 70}},
        {"id": "eu-2", "region": "eu", "capacity": 64, "rtt_ms": {"eu": 15, "us": 75}},
        {"id": "us-1", "region": "us", "capacity": 64, "rtt_ms": {"eu": 70, "us": 10}},
        {"id": "us-2", "region": "us", "capacity": 64, "rtt_ms": {"eu": 75, "us": 15}},
    ],
}
DEFAULT_CLIENT_REGIONS = ("eu", "us")


def write_default_regions(path: Path) -> Path:
    path.write_text(json.dumps(DEFAULT_REGIONS, indent=2) + "\n", encoding="utf-8")
    return path


class _Log(Protocol):
    events: list[dict[str, Any]]


class RegionRun(Protocol):
    """What the scenario uses of the chaos runner's `ChaosRun`."""

    stack: RunningStack
    logs: list[Any]
    service: dict[str, Any]
    victim: str | None
    fault_start_s: float | None

    @property
    def fault_s(self) -> float: ...
    @property
    def config(self) -> Any: ...
    def now(self) -> float: ...
    async def sleep(self, session_s: float) -> None: ...
    def start_fault(self) -> None: ...
    def end_fault(self) -> None: ...
    async def wait_live(self, edge_url: str, live: bool, *, timeout_s: float) -> float | None: ...


def session_region(client_regions: Sequence[str], index: int) -> str | None:
    """The client region of session `index` (the list is cycled; None: no regions)."""
    return client_regions[index % len(client_regions)] if client_regions else None


def first_segment_from(events: Sequence[dict[str, Any]], hosts: set[str], since_s: float) -> float | None:
    """Chaos time of the first successful segment request to one of `hosts` at or after `since_s`."""
    for event in events:
        url = str(event.get("url", ""))
        if (event.get("type") == "request" and not event.get("error") and event["chaos_t"] >= since_s
                and "/s/" in url and _host(url) in hosts):
            return float(event["chaos_t"])
    return None


def segment_ttfb_by_region(logs: Sequence[_Log], client_regions: Sequence[str],
                           split_s: float) -> dict[str, dict[str, float | None]]:
    """Median time to first byte (session seconds) of the successful segment requests of each client
    region's sessions, before `split_s` and from then on: locality, as the players measured it."""
    out: dict[str, dict[str, float | None]] = {}
    for region in dict.fromkeys(client_regions):
        before: list[float] = []
        after: list[float] = []
        for index, log in enumerate(logs):
            if session_region(client_regions, index) != region:
                continue
            for event in log.events:
                if (event.get("type") == "request" and not event.get("error") and "/s/" in str(event.get("url"))
                        and event.get("ttfb_s") is not None):
                    (before if event["chaos_t"] < split_s else after).append(float(event["ttfb_s"]))
        out[region] = {"before": round(statistics.median(before), 4) if before else None,
                       "after": round(statistics.median(after), 4) if after else None}
    return out


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def region_outage(run: RegionRun) -> None:
    """SIGKILL every edge of the first client region; restart them when the fault ends."""
    stack, heartbeat_s = run.stack, run.stack.config.heartbeat_s
    client_regions = tuple(run.config.client_regions) or DEFAULT_CLIENT_REGIONS
    region = client_regions[0]
    victims = stack.edge_services(region)
    if not victims:
        raise RuntimeError(f"the stack has no edges in region {region!r} (start it with a regions file)")
    survivors = {stack.url(name) for name in stack.edge_services()} - {stack.url(name) for name in victims}
    run.victim = f"region {region} ({', '.join(victims.values())})"
    run.start_fault()
    await asyncio.gather(*(stack.kill_service(name) for name in victims))
    drops = [await run.wait_live(stack.url(name), False, timeout_s=10 * heartbeat_s + 10) for name in victims]
    await run.sleep(run.fault_s - (run.now() - run.fault_start_s))  # type: ignore[operator]
    run.end_fault()
    started = time.monotonic()
    await asyncio.gather(*(stack.start_service(name) for name in victims))
    rejoin = [await run.wait_live(stack.url(name), True, timeout_s=10 * heartbeat_s + 10) for name in victims]
    # A session with a full buffer asks for its next segment only when it needs one: measured once the
    # region is back (the failed-over sessions stay on the next region while the dead edges are excluded).
    start = run.fault_start_s
    assert start is not None
    recovery: dict[str, float | None] = {}
    for index, log in enumerate(run.logs):
        if session_region(client_regions, index) == region:
            moved = first_segment_from(log.events, survivors, start)
            recovery[str(index)] = None if moved is None else round(moved - start, 4)
    run.service.update(
        outage_region=region, client_regions=list(client_regions), heartbeat_s=heartbeat_s,
        ttfb_median_s=segment_ttfb_by_region(run.logs, client_regions, start),
        steering_drop_wall_s=None if None in drops else max(d for d in drops if d is not None),
        region_recovery_s=recovery,
        rejoin_wall_s=None if None in rejoin else round(time.monotonic() - started, 4))


def region_summary_lines(report: Any) -> list[str]:
    """Recovery and QoE by client region, from a chaos report of a `region-outage` run."""
    service = report.service
    regions = service.get("client_regions") or []
    recovery = service.get("region_recovery_s") or {}
    lines = []
    for region in dict.fromkeys(regions):
        sessions = [s for s in report.sessions if session_region(regions, s.index) == region]
        qoe = [s.report["qoe_lin"] for s in sessions if s.report and s.report.get("qoe_lin") is not None]
        line = (f"  clients in {region}: {len(sessions)} sessions, mean QoE lin "
                f"{statistics.fmean(qoe) if qoe else float('nan'):.2f}, rebuffer in fault window "
                f"{sum(s.fault_rebuffer_s for s in sessions):.2f} s")
        ttfb = (service.get("ttfb_median_s") or {}).get(region) or {}
        line += f"; median segment TTFB {_s(ttfb.get('before'))} before the outage, {_s(ttfb.get('after'))} after"
        if region == service.get("outage_region"):
            times = [recovery.get(str(s.index)) for s in sessions]
            known = [t for t in times if t is not None]
            line += ("; recovery (outage -> first segment from another region) "
                     + ", ".join("-" if t is None else f"{t:.2f} s" for t in times)
                     + (f" (max {max(known):.2f} s)" if known else ""))
        lines.append(line)
    return lines


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"
