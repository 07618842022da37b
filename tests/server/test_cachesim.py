"""The cache simulator: it agrees with a real edge request by request, its counts are right on logs
worked out by hand, and the logs it reads and makes are what they say."""

from __future__ import annotations

import json
import random
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from server.cache import ByteLRU
from server.cachesim import (
    Push,
    ReplayConfig,
    RequestLog,
    Window,
    compare,
    content_path,
    plan_pushes,
    read_access_logs,
    replay,
    requests_per_session,
    scaled_to,
    synthesize,
)
from server.edge import RunningEdge
from server.placement import (
    DemandModel,
    EdgeSpec,
    PlacementItem,
    PlacementPlan,
    Region,
    Release,
    Rendition,
    TitleInfo,
    synthetic_catalogue,
)
from tests.server.edgekit import (
    INTERNAL_HEADERS,
    REPS,
    SEGMENT_BYTES,
    SEGMENTS_PER_REP,
    TITLE,
    EdgeFactory,
    get,
    signed,
    title_paths,
)

# The edge tests' fixtures: a real origin (instrumented) and edges in front of it, over real sockets.

YEAR_S = 31_536_000.0


def log_of(keys: list[str], sizes: list[int], sequence: list[int], *, edge: str = "edge-test",
           times: list[float] | None = None, ttl_s: list[float] | None = None) -> RequestLog:
    return RequestLog(time_s=np.array(times if times is not None else [float(i) for i in range(len(sequence))]),
                      edge=np.zeros(len(sequence), np.int32), obj=np.array(sequence, np.int32), keys=keys,
                      sizes=np.array(sizes, np.int64), ttl_s=np.array(ttl_s or [YEAR_S] * len(keys)),
                      title_of=np.zeros(len(keys), np.int32), edges=(edge,), titles=(TITLE,))


# --- against a real edge -----------------------------------------------------------------------------

def title_info(content_root: Path) -> TitleInfo:
    root = content_root / TITLE
    renditions = tuple(Rendition(id=rep, kind=kind, bitrate_bps=1, init_bytes=SEGMENT_BYTES,
                                 segment_count=SEGMENTS_PER_REP, segment_bytes=np.full(SEGMENTS_PER_REP, SEGMENT_BYTES))
                       for kind, reps in REPS.items() for rep in reps)
    return TitleInfo(name=TITLE, segment_s=4.0, renditions=renditions,
                     manifest_bytes=(root / "manifest.mpd").stat().st_size,
                     index_bytes=(root / "segments.json").stat().st_size)


@pytest.mark.parametrize("push", [False, True], ids=["lru", "lru-after-a-push"])
async def test_every_hit_and_miss_and_the_final_lru_order_agree_with_a_real_edge(
        make_edge: EdgeFactory, http: aiohttp.ClientSession, content_root: Path, push: bool) -> None:
    cache_bytes = 4 * SEGMENT_BYTES + 600  # four objects and the small MPD and index: evictions all along
    edge: RunningEdge = await make_edge(cache_bytes=cache_bytes)
    media = [p for p in title_paths() if not p.endswith("manifest.mpd")]
    rng = random.Random(7)
    # A skewed sequence, so some objects come back while cached and some after being evicted.
    sequence = [min(int(rng.expovariate(0.35)), len(media) - 1) for _ in range(150)]
    item = PlacementItem(edge="edge-test", title=TITLE, renditions=("a0", "v1"), segments=2, size_bytes=0,
                         expected_requests=1.0, push_at_s=0.0)
    pushes = plan_pushes(PlacementPlan(items=(item,), plan_at_s=0.0, horizon_s=1.0, budgets={}, used={}),
                         [title_info(content_root)]) if push else []
    if push:
        async with http.post(edge.url + f"/internal/preposition/{TITLE}?renditions=a0,v1&segments=2", headers=INTERNAL_HEADERS) as resp:
            assert resp.status == 200
    seen = []
    for index in sequence:
        status, headers, _ = await get(http, edge.url + signed(media[index]))
        assert status == 200
        seen.append(headers["X-Cache"] == "HIT")
    outcomes: list[bool] = []
    caches: dict[str, ByteLRU[float]] = {}
    result = replay(log_of(media, [SEGMENT_BYTES] * len(media), sequence, times=[1.0 + i for i in range(150)]),
                    ReplayConfig(cache_bytes={"edge-test": cache_bytes}), pushes, outcomes=outcomes, caches=caches)
    assert outcomes == seen
    assert 0 < result.hits < result.requests == 150
    assert list(caches["edge-test"].keys()) == list(edge.edge.cache.keys())
    assert caches["edge-test"].used_bytes == edge.edge.cache.used_bytes


# --- counts worked out by hand ------------------------------------------------------------------------

def test_lru_by_bytes_revalidation_and_oversized_objects() -> None:
    keys = ["/t/video/v/1.m4s", "/t/video/v/2.m4s", "/t/video/v/3.m4s", "/t/manifest.mpd", "/t/video/v/4.m4s"]
    sizes = [100, 100, 100, 10, 1000]
    # a b a c (evicts b) b (miss, evicts a) ; mpd at 10 then at 13 (stale: a 304) ; the big one twice
    sequence = [0, 1, 0, 2, 1, 3, 3, 4, 4]
    times = [0, 1, 2, 3, 4, 10, 13, 14, 15]
    log = log_of(keys, sizes, sequence, times=[float(t) for t in times], ttl_s=[YEAR_S] * 3 + [2.0, YEAR_S])
    outcomes: list[bool] = []
    result = replay(log, ReplayConfig(cache_bytes={"edge-test": 210}, max_object_bytes=500), outcomes=outcomes)
    assert outcomes == [False, False, True, False, False, False, False, False, False]
    assert result.origin_requests == 8
    assert result.origin_bytes == 100 * 4 + 10 + 0 + 1000 * 2  # the stale MPD came back as a 304
    assert (result.hits, result.bytes_hit) == (1, 100)


def test_counting_starts_at_measure_from_and_windows_count_apart() -> None:
    keys = ["/t/video/v/1.m4s", "/u/video/v/1.m4s"]
    log = RequestLog(time_s=np.array([0.0, 1.0, 2.0, 3.0]), edge=np.zeros(4, np.int32),
                     obj=np.array([0, 0, 1, 1], np.int32), keys=keys, sizes=np.array([5, 7]),
                     ttl_s=np.array([YEAR_S, YEAR_S]), title_of=np.array([0, 1], np.int32), edges=("e",),
                     titles=("t", "u"))
    result = replay(log, ReplayConfig(cache_bytes={"e": 100}, measure_from_s=1.0,
                                      windows=(Window(title="u", start_s=2.5, end_s=9.0),)))
    assert (result.requests, result.hits, result.origin_requests) == (3, 2, 1)
    assert (result.window_requests, result.window_hits) == (1, 1)


def test_a_push_turns_first_requests_into_hits_and_is_counted_as_fill() -> None:
    keys = ["/t/video/v/1.m4s"]
    push = Push(time_s=0.5, edge="e", keys=("/t/segments.json", "/t/video/v/1.m4s"), sizes=(3, 50),
                ttl_s=(2.0, YEAR_S))
    log = log_of(keys, [50], [0, 0], edge="e", times=[1.0, 2.0])
    alone = replay(log, ReplayConfig(cache_bytes={"e": 100}))
    pushed = replay(log, ReplayConfig(cache_bytes={"e": 100}), [push])
    assert (alone.hits, alone.origin_bytes, alone.fill_bytes) == (1, 50, 0)
    assert (pushed.hits, pushed.origin_bytes, pushed.fill_bytes, pushed.fill_objects) == (2, 0, 53, 2)


def test_a_cache_size_is_needed_for_every_edge() -> None:
    with pytest.raises(ValueError, match="no cache size for edge 'e'"):
        replay(log_of(["/t/a/v/1.m4s"], [1], [0], edge="e"), ReplayConfig(cache_bytes={}))


# --- logs -----------------------------------------------------------------------------------------------

def small_model(**overrides: object) -> DemandModel:
    catalogue = synthetic_catalogue(30, seed=2, median_duration_s=900.0)
    regions = (Region(name="a", share=0.7, edges=(EdgeSpec(id="a-1", cache_bytes=10**9, budget_bytes=10**8),
                                                  EdgeSpec(id="a-2", cache_bytes=10**9, budget_bytes=10**8))),
               Region(name="b", share=0.3, peak_hour_utc=8.0,
                      edges=(EdgeSpec(id="b-1", cache_bytes=10**9, budget_bytes=10**8),)))
    settings: dict[str, object] = {"catalogue": catalogue, "regions": regions,
                                   "releases": (Release(title="t00020", at_s=3600.0),), "mean_watch_s": 300.0,
                                   "diurnal_amplitude": 0.5}
    settings.update(overrides)
    return DemandModel(**settings)  # type: ignore[arg-type]


def test_a_synthetic_log_is_sessions_of_the_model_in_time_order() -> None:
    model = scaled_to(small_model(), requests=100_000, duration_s=4 * 3600.0)
    log = synthesize(model, duration_s=4 * 3600.0, seed=3)
    again = synthesize(model, duration_s=4 * 3600.0, seed=3)
    assert np.array_equal(log.obj, again.obj) and np.array_equal(log.time_s, again.time_s)
    assert 0.85 * 100_000 < len(log) < 1.15 * 100_000
    assert np.all(np.diff(log.time_s) >= 0)
    assert set(log.edges) == {"a-1", "a-2", "b-1"}
    keys = [log.keys[o] for o in log.obj.tolist()]
    assert sum(k.endswith("/manifest.mpd") for k in keys) == sum(k.endswith("/segments.json") for k in keys)
    # the release has no request before it opens
    release = [t for t, k in zip(log.time_s.tolist(), keys) if k.startswith("/t00020/")]
    assert release and min(release) >= 3600.0
    # one title's sessions in a region all go to its home edge there
    home = {}
    for e, k in zip(log.edge.tolist(), keys):
        if log.edges[e].startswith("a-"):
            assert home.setdefault(k.split("/")[1], e) == e


def test_requests_per_session_matches_what_the_synthesizer_makes() -> None:
    model = scaled_to(small_model(diurnal_amplitude=0.0, releases=()), requests=200_000, duration_s=86_400.0)
    log = synthesize(model, duration_s=86_400.0, seed=5)
    sessions = sum(1 for o in log.obj.tolist() if log.keys[o].endswith("/manifest.mpd"))
    assert len(log) / sessions == pytest.approx(requests_per_session(model), rel=0.08)


def test_edge_access_logs_are_read_as_a_request_log(tmp_path: Path) -> None:
    lines = [
        {"ts": 100.0, "method": "GET", "path": "/s/<token>/demo/video/v1/1.m4s", "status": 200, "bytes": 500,
         "edge_id": "edge-0"},
        {"ts": 101.0, "method": "GET", "path": "/s/<token>/demo/video/v1/1.m4s", "status": 304, "bytes": 0,
         "edge_id": "edge-1"},
        {"ts": 99.0, "method": "GET", "path": "/demo/manifest.mpd", "status": 200, "bytes": 40, "edge_id": "edge-0"},
        {"ts": 102.0, "method": "GET", "path": "/s/<token>/demo/video/v1/2.m4s", "status": 206, "bytes": 10,
         "edge_id": "edge-0"},  # no full answer: its size is unknown
        {"ts": 103.0, "method": "GET", "path": "/s/<token>/demo/video/v1/3.m4s", "status": 403, "bytes": 9},
        {"ts": 104.0, "method": "GET", "path": "/metrics", "status": 200, "bytes": 9},
        {"ts": 105.0, "method": "POST", "path": "/internal/preposition/demo", "status": 200, "bytes": 9},
    ]
    path = tmp_path / "edge.log"
    path.write_text("not json\n" + "\n".join(json.dumps(line) for line in lines) + "\n{broken\n")
    log, stats = read_access_logs([path])
    assert (stats.lines, stats.requests, stats.skipped_no_size) == (9, 3, 1)
    assert [log.keys[o] for o in log.obj.tolist()] == ["/demo/manifest.mpd", "/demo/video/v1/1.m4s",
                                                       "/demo/video/v1/1.m4s"]
    assert log.time_s.tolist() == [0.0, 1.0, 2.0] and log.edges == ("edge-0", "edge-1")
    assert log.ttl_s.tolist() == [2.0, YEAR_S]


@pytest.mark.parametrize(("logged", "expected"), [
    ("/s/<token>/demo/video/v1/1.m4s", "/demo/video/v1/1.m4s"), ("/demo/manifest.mpd", "/demo/manifest.mpd"),
    ("/healthz", None), ("/internal/stats", None), ("/s/<token>", None)])
def test_content_paths_of_logged_requests(logged: str, expected: str | None) -> None:
    assert content_path(logged) == expected


def test_placement_beats_lru_alone_on_a_release_and_never_loses_hits() -> None:
    model = scaled_to(small_model(), requests=40_000, duration_s=6 * 3600.0)
    model = DemandModel(**{**{f: getattr(model, f) for f in ("catalogue", "releases", "zipf_s", "regional_tilt",
                                                              "sessions_per_s", "diurnal_amplitude", "mean_watch_s",
                                                              "video_shares", "seed")},
                           "regions": tuple(Region(name=r.name, share=r.share, peak_hour_utc=r.peak_hour_utc, edges=tuple(
                               EdgeSpec(id=e.id, cache_bytes=2 * 10**9, budget_bytes=10**9) for e in r.edges))
                               for r in model.regions)})
    from server.placement import plan_placement

    log = synthesize(model, duration_s=6 * 3600.0, seed=1)
    plan = plan_placement(model, plan_at_s=1800.0, horizon_s=6 * 3600.0 - 1800.0)
    result = compare(log, model, plan, measure_from_s=1800.0)
    assert result.placed.hits >= result.lru.hits
    assert result.placed.window_hit_ratio > result.lru.window_hit_ratio
    assert result.placed.fill_bytes > 0 == result.lru.fill_bytes
