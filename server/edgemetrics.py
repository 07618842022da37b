"""The edge's counters: plain numbers bumped on the hot path (`EdgeStats`), turned into a flat
snapshot per worker (summable across workers) and into Prometheus text only when `/metrics` is
scraped. Names and meanings: docs/EDGE.md, "Metrics"."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from server.cache import ByteLRU, Coalescer
from server.observability import Metrics

_COUNTERS = (
    ("cache_hits", "edge_cache_hits_total", "Requests served from the cache."),
    ("fast_hits", "edge_cache_fast_hits_total", "Cache hits answered as their request was parsed (server/edgefast.py)."),
    ("cache_misses", "edge_cache_misses_total", "Requests that needed the origin (fetch, revalidation or wait)."),
    ("bytes_served", "edge_bytes_served_total", "Response body bytes sent for content requests."),
    ("coalesced_waiters", "edge_coalesced_waiters_total", "Misses that waited on another request's origin fetch."),
    ("evictions", "edge_cache_evictions_total", "Objects evicted from the LRU to make room."),
    ("stale_served", "edge_stale_served_total", "Stale objects served because the origin failed (stale-if-error)."),
    ("passthrough", "edge_passthrough_total", "Requests for objects over max_object_bytes, streamed uncached."),
    ("cmcd_requests", "edge_cmcd_requests_total", "Requests that carried CMCD."),
    ("cmcd_errors", "edge_cmcd_errors_total", "Requests whose CMCD was malformed (logged, not fatal)."),
    ("origin_fetch_seconds", "edge_origin_fetch_seconds_total", "Time spent in origin fetches."),
    ("heartbeat_failures", "edge_heartbeat_failures_total", "Heartbeats the steering API did not accept."),
)


@dataclass(slots=True)
class EdgeStats:
    """Plain counters on the hot path; turned into Prometheus text only when `/metrics` is scraped."""

    cache_hits: int = 0
    fast_hits: int = 0  # of cache_hits
    cache_misses: int = 0
    bytes_served: int = 0
    coalesced_waiters: int = 0
    evictions: int = 0
    stale_served: int = 0
    passthrough: int = 0
    cmcd_requests: int = 0
    cmcd_errors: int = 0
    origin_fetch_seconds: float = 0.0
    heartbeat_failures: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    origin_fetches: Counter[str] = field(default_factory=Counter)  # by outcome


def snapshot(stats: EdgeStats, cache: ByteLRU[Any], coalescer: Coalescer[Any], active: int) -> dict[str, float]:
    """Flat counters and gauges of one worker, summable across workers."""
    snap: dict[str, float] = {attr: float(getattr(stats, attr)) for attr, _, _ in _COUNTERS}
    snap["evictions"] = float(cache.evictions)
    snap["coalesced_waiters"] = float(coalescer.coalesced)
    snap.update({f"status:{code}": float(n) for code, n in stats.by_status.items()})
    snap.update({f"origin:{outcome}": float(n) for outcome, n in stats.origin_fetches.items()})
    snap["cache_bytes"] = float(cache.used_bytes)
    snap["cache_objects"] = float(len(cache))
    snap["cache_capacity_bytes"] = float(cache.max_bytes)
    snap["active_requests"] = float(active)
    return snap


def add_siblings(snap: dict[str, float], siblings: Iterable[Mapping[str, Any]], *, workers: int,
                 total_active: int) -> None:
    """Sum the snapshots of sibling workers (as their `/internal/stats` JSON) into `snap`: the whole
    edge, whose capacity is one worker's times `workers` (every worker has a cache of the same bound)."""
    for sibling in siblings:
        for key, value in sibling.items():
            if isinstance(value, (int, float)) and key != "cache_capacity_bytes":
                snap[key] = snap.get(key, 0.0) + value
    snap["cache_capacity_bytes"] *= workers
    snap["active_requests"] = float(total_active)


def render_metrics(snap: Mapping[str, float]) -> str:
    metrics = Metrics()
    for attr, name, help_text in _COUNTERS:
        metrics.inc(name, snap.get(attr, 0.0), help=help_text)
    for key, value in snap.items():
        kind, _, label = key.partition(":")
        if kind == "status":
            metrics.inc("edge_requests_total", value, help="Content requests by response status.",
                        labels={"status": label})
        elif kind == "origin":
            metrics.inc("edge_origin_fetches_total", value, help="Origin fetches by outcome.",
                        labels={"outcome": label})
    hits, misses = snap.get("cache_hits", 0.0), snap.get("cache_misses", 0.0)
    metrics.set("edge_cache_hit_ratio", hits / (hits + misses) if hits + misses else 0.0,
                help="cache_hits / (cache_hits + cache_misses) since start.")
    metrics.set("edge_cache_bytes", snap.get("cache_bytes", 0.0), help="Bytes of bodies held in the cache.")
    metrics.set("edge_cache_capacity_bytes", snap.get("cache_capacity_bytes", 0.0), help="The cache's bound.")
    metrics.set("edge_cache_objects", snap.get("cache_objects", 0.0), help="Objects held in the cache.")
    metrics.set("edge_active_requests", snap.get("active_requests", 0.0), help="Content requests in progress.")
    return metrics.render()
