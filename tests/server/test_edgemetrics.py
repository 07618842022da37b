"""The edge's counters summed over workers and rendered as Prometheus text (server/edgemetrics.py)."""

from __future__ import annotations

import re

from server.cache import ByteLRU, Coalescer
from server.edgemetrics import EdgeStats, add_siblings, render_metrics, snapshot


def value(text: str, name: str) -> float:
    match = re.search(rf"^abrkit_{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match is not None, name
    return float(match.group(1))


def test_worker_snapshots_add_up_to_the_whole_edge() -> None:
    stats = EdgeStats(cache_hits=3, cache_misses=1, bytes_served=400)
    stats.by_status[200] += 4
    cache: ByteLRU[bytes] = ByteLRU(1000)
    cache.put("/t/a", b"x" * 100, 100)
    own = snapshot(stats, cache, Coalescer(), active=2)
    sibling = {**own, "cache_hits": 5.0, "status:404": 1.0, "active_requests": 7.0}
    add_siblings(own, [sibling, {"unreachable": "worker answered nothing useful"}], workers=3, total_active=4)
    text = render_metrics(own)
    assert value(text, "edge_cache_hits_total") == 8
    assert value(text, "edge_cache_misses_total") == 2
    assert value(text, "edge_cache_hit_ratio") == 0.8
    assert value(text, 'edge_requests_total{status="200"}') == 8
    assert value(text, 'edge_requests_total{status="404"}') == 1
    assert value(text, "edge_cache_bytes") == 200
    assert value(text, "edge_cache_capacity_bytes") == 3000  # one worker's bound times the workers
    assert value(text, "edge_active_requests") == 4  # the shared gauge, not a sum of stale answers
