"""A cache simulator: replays a request log against the edges' own cache (`server.cache.ByteLRU`)
with the edge's rules, LRU alone or with a placement plan pushed as the edges' pre-position
endpoint would push it.

The edge's rules, mirrored call for call (tests/server/test_cachesim.py replays the same requests
through a real edge and checks every hit and miss agrees): a request `get`s its object (a use); a
fresh one is a hit; else the origin is asked (a body when the edge had none, a 304 when it held a
stale copy) and the object is `put` if it is no bigger than `max_object_bytes`. Lifetimes are the
origin's: immutable segments a year, the MPD and `segments.json` 2 s. A push `get`s each object and
fetches it unless fresh. Origin egress is the bodies the origin sends; pushes are counted apart
(they run off-peak, before the demand).

Logs: `synthesize` draws one from a `server.placement.DemandModel` (sessions from start for an
exponential watch time, one video rendition and the audio each, a buffer's worth at once then one
segment per segment duration); `read_access_logs` reads the edges' JSON access logs.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from server.cache import ByteLRU
from server.formats.names import MANIFEST_NAME, SEGMENTS_NAME
from server.formats.urls import SIGNED_PREFIX
from server.placement import DemandModel, PlacementPlan, TitleInfo, rendezvous_weight

SEGMENT_TTL_S = 31_536_000.0  # the origin's max-age for init and media segments (immutable)
MANIFEST_TTL_S = 2.0  # the origin's (and the edge's mpd_max_age_s) for the MPD and segments.json
MAX_OBJECT_BYTES = 64 * 1024 * 1024  # EdgeConfig.max_object_bytes: bigger ones are streamed uncached


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class RequestLog:
    """Requests in time order: when, at which edge, for which object (indexes into the tables)."""

    time_s: np.ndarray  # float64, non-decreasing
    edge: np.ndarray  # int32 index into `edges`
    obj: np.ndarray  # int32 index into `keys`/`sizes`/`ttl_s`/`title_of`
    keys: Sequence[str]  # content paths, /<title>/<file>
    sizes: np.ndarray  # int64 bytes
    ttl_s: np.ndarray  # float64: how long the edge may keep each object
    title_of: np.ndarray  # int32 index into `titles`
    edges: tuple[str, ...]
    titles: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.time_s.size)


def ttl_for(path: str) -> float:
    return MANIFEST_TTL_S if path.endswith((MANIFEST_NAME, SEGMENTS_NAME)) else SEGMENT_TTL_S


# --- synthetic logs --------------------------------------------------------------------------------


def requests_per_session(model: DemandModel, *, duration_s: float = 86_400.0) -> float:
    """Expected requests of one session starting within [0, duration_s) (MPD, segments.json, two
    inits, video and audio of each segment watched)."""
    times = (np.arange(max(1, math.ceil(duration_s / 900.0))) + 0.5) * 900.0
    weights = np.zeros(len(model.catalogue))
    for r in range(len(model.regions)):
        weights += (model.weights(r, times) * model.session_rate(r, times)[:, None]).sum(axis=0)
    weights /= weights.sum()
    segments = np.array([model.survival(t).sum() for t in model.catalogue])
    return float(4 + 2 * np.dot(weights, segments))


def synthesize(model: DemandModel, *, duration_s: float, seed: int = 0, buffer_s: float = 30.0,
               step_s: float = 300.0) -> RequestLog:
    """A request log of `model`'s sessions starting within [0, duration_s) (a Poisson process)."""
    if not duration_s > 0:
        raise ValueError("duration_s must be > 0")
    rng = np.random.default_rng(seed)
    catalogue = model.catalogue
    bins = max(1, math.ceil(duration_s / step_s))
    lows = np.arange(bins) * step_s
    highs = np.minimum(lows + step_s, duration_s)
    starts, regions, titles = [], [], []
    for r in range(len(model.regions)):
        counts = rng.poisson(model.session_rate(r, (lows + highs) / 2) * (highs - lows))
        probabilities = model.weights(r, (lows + highs) / 2)
        for b in np.flatnonzero(counts):
            starts.append(rng.uniform(lows[b], highs[b], counts[b]))
            regions.append(np.full(counts[b], r))
            titles.append(rng.choice(len(catalogue), size=counts[b], p=probabilities[b]))
    if not starts:
        raise ValueError("the model gives no session in this duration")
    order = np.argsort(np.concatenate(starts), kind="stable")
    start = np.concatenate(starts)[order]
    region = np.concatenate(regions)[order]
    title = np.concatenate(titles)[order]
    count = start.size
    home = np.array([[max(range(len(reg.edges)), key=lambda k: (rendezvous_weight(t.name, reg.edges[k].id),
                                                                  reg.edges[k].id)) for t in catalogue]
                     for reg in model.regions])
    edge_base = np.cumsum([0] + [len(r.edges) for r in model.regions])[:-1]
    edge = edge_base[region] + home[region, title]
    # One video rendition per session, by the title's shares; titles with one ladder draw together.
    video = np.empty(count, dtype=np.int64)
    ladders: dict[tuple[str, ...], list[int]] = {}
    for i, t in enumerate(catalogue):
        ladders.setdefault(tuple(r.id for r in t.video), []).append(i)
    for members in ladders.values():
        shares = model.rendition_shares(catalogue[members[0]])
        p = np.array([shares[r.id] for r in catalogue[members[0]].video])
        pick = np.flatnonzero(np.isin(title, members))
        video[pick] = rng.choice(p.size, size=pick.size, p=p / p.sum())
    seg_s = np.array([t.segment_s for t in catalogue])[title]
    available = np.array([t.segment_count for t in catalogue])[title]
    watched = np.minimum(available, 1 + (rng.exponential(model.mean_watch_s, count) // seg_s).astype(np.int64))
    return _expand(model, start, edge, title, video, watched, seg_s, buffer_s)


def _expand(model: DemandModel, start: np.ndarray, edge: np.ndarray, title: np.ndarray, video: np.ndarray,
            watched: np.ndarray, seg_s: np.ndarray, buffer_s: float) -> RequestLog:
    """Sessions to requests: 4 at the start, then segment n's video and audio at
    start + max(0, n - 1 - buffer / segment) x segment duration."""
    catalogue = model.catalogue
    per_session = 4 + 2 * watched
    total = int(per_session.sum())
    session = np.repeat(np.arange(start.size), per_session)
    offset = np.arange(total) - np.repeat(np.cumsum(per_session) - per_session, per_session)
    number = np.maximum(0, (offset - 4) // 2 + 1)  # media segment number (1-based) or 0
    is_audio = (offset >= 4) & ((offset - 4) % 2 == 1)
    ahead = np.floor(buffer_s / seg_s[session])
    times = start[session] + np.maximum(0.0, number - 1 - ahead) * seg_s[session]
    # Object codes: (title, slot, number), slot 0 = MPD/segments.json, 1 + k = rendition k.
    audio_slot = np.array([1 + next((k for k, r in enumerate(t.renditions) if r.kind == "audio"), 0)
                           for t in catalogue])
    rungs = max(len(t.video) for t in catalogue)
    video_slot = np.array([[1 + k for k, r in enumerate(t.renditions) if r.kind == "video"]
                           + [0] * (rungs - len(t.video)) for t in catalogue])
    slot = np.where(is_audio, audio_slot[title[session]], video_slot[title[session], video[session]])
    slot = np.where(offset < 2, 0, np.where(offset == 3, audio_slot[title[session]], slot))
    number = np.where(offset < 2, offset, number)
    width = max(t.segment_count for t in catalogue) + 2
    slots = max(len(t.renditions) for t in catalogue) + 1
    codes = (title[session] * slots + slot) * width + number
    order = np.argsort(times, kind="stable")
    unique, inverse = np.unique(codes[order], return_inverse=True)
    keys, sizes, ttls, titles = [], np.empty(unique.size, np.int64), np.empty(unique.size), np.empty(unique.size, np.int32)
    for i, code in enumerate(unique.tolist()):
        t_index, rest = divmod(code, slots * width)
        s, n = divmod(rest, width)
        t = catalogue[t_index]
        if s == 0:
            path, size = (f"/{t.name}/{MANIFEST_NAME}", t.manifest_bytes) if n == 0 else \
                (f"/{t.name}/{SEGMENTS_NAME}", t.index_bytes)
        else:
            rendition = t.renditions[s - 1]
            path = rendition.path(t.name, n)
            size = rendition.init_bytes if n == 0 else int(rendition.segment_bytes[n - 1])
        keys.append(path)
        sizes[i], ttls[i], titles[i] = size, ttl_for(path), t_index
    return RequestLog(time_s=times[order], edge=edge[session][order].astype(np.int32), obj=inverse.astype(np.int32),
                      keys=keys, sizes=sizes, ttl_s=ttls, title_of=titles,
                      edges=tuple(e.id for e in model.edges), titles=tuple(t.name for t in catalogue))


# --- recorded logs ---------------------------------------------------------------------------------


def content_path(path: str) -> str | None:
    """`/<title>/<file>` of a logged edge request path (signed `/s/<token>/...` or not)."""
    if path.startswith(SIGNED_PREFIX):
        path = "/" + path[len(SIGNED_PREFIX):].partition("/")[2]
    title, _, rest = path[1:].partition("/")
    return path if title and rest and not path.startswith(("/internal/", "/metrics", "/healthz")) else None


@dataclass(frozen=True, kw_only=True, slots=True)
class LogReadStats:
    lines: int
    requests: int
    skipped_no_size: int  # requests for objects no 200 answer gave a size for


def read_access_logs(paths: Iterable[Path]) -> tuple[RequestLog, LogReadStats]:
    """The edges' JSON access logs (one object per line, `abrkit serve`/`abrkit edge`) as a request
    log: GET/HEAD content requests answered 200, 206 or 304; an object's size is the largest body a
    200 answer for it sent; the edge is the line's `edge_id`. Other lines are passed over."""
    rows: list[tuple[float, str, str]] = []
    sizes: dict[str, int] = {}
    lines = 0
    for path in paths:
        with Path(path).open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                lines += 1
                if not line.startswith("{"):
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(entry, dict) or entry.get("method") not in ("GET", "HEAD"):
                    continue
                status, logged = entry.get("status"), entry.get("path")
                if status not in (200, 206, 304) or not isinstance(logged, str):
                    continue
                key = content_path(logged)
                if key is None:
                    continue
                if status == 200 and isinstance(entry.get("bytes"), int):
                    sizes[key] = max(sizes.get(key, 0), entry["bytes"])
                try:
                    rows.append((float(entry["ts"]), str(entry.get("edge_id") or Path(path).stem), key))
                except (KeyError, TypeError, ValueError):
                    continue
    kept = [r for r in rows if r[2] in sizes]
    kept.sort(key=lambda r: r[0])
    t0 = kept[0][0] if kept else 0.0
    keys = sorted({r[2] for r in kept})
    edges = tuple(sorted({r[1] for r in kept}))
    titles = tuple(sorted({k.split("/", 2)[1] for k in keys}))
    key_index = {k: i for i, k in enumerate(keys)}
    edge_index = {e: i for i, e in enumerate(edges)}
    title_index = {t: i for i, t in enumerate(titles)}
    log = RequestLog(time_s=np.array([r[0] - t0 for r in kept]), edge=np.array([edge_index[r[1]] for r in kept], np.int32),
                     obj=np.array([key_index[r[2]] for r in kept], np.int32), keys=keys,
                     sizes=np.array([sizes[k] for k in keys], np.int64), ttl_s=np.array([ttl_for(k) for k in keys]),
                     title_of=np.array([title_index[k.split("/", 2)[1]] for k in keys], np.int32),
                     edges=edges, titles=titles)
    return log, LogReadStats(lines=lines, requests=len(kept), skipped_no_size=len(rows) - len(kept))


# --- replay ----------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Push:
    """Objects pushed to one edge at `time_s` (an executed `PlacementItem`)."""

    time_s: float
    edge: str
    keys: tuple[str, ...]
    sizes: tuple[int, ...]
    ttl_s: tuple[float, ...]


def plan_pushes(plan: PlacementPlan, catalogue: Sequence[TitleInfo]) -> list[Push]:
    """What each plan item makes its edge fetch, in the order the edge's pre-position endpoint does."""
    by_name = {t.name: t for t in catalogue}
    pushes = []
    for item in plan.items:
        title = by_name.get(item.title)
        if title is None:
            raise ValueError(f"the plan pushes {item.title!r}, which is not in the catalogue")
        keys = [f"/{title.name}/{SEGMENTS_NAME}", f"/{title.name}/{MANIFEST_NAME}"]
        sizes = [title.index_bytes, title.manifest_bytes]
        for rendition in title.renditions:
            if rendition.id in item.renditions:
                count = min(item.segments, rendition.segment_count)
                keys += [rendition.path(title.name, n) for n in range(count + 1)]
                sizes += [rendition.init_bytes, *rendition.segment_bytes[:count].tolist()]
        pushes.append(Push(time_s=item.push_at_s, edge=item.edge, keys=tuple(keys), sizes=tuple(sizes),
                           ttl_s=tuple(ttl_for(k) for k in keys)))
    return sorted(pushes, key=lambda p: p.time_s)


@dataclass(frozen=True, kw_only=True, slots=True)
class ReplayResult:
    """Counts from `measure_from_s` on (pushes are counted whenever they happen)."""

    requests: int
    hits: int
    bytes_requested: int
    bytes_hit: int
    origin_requests: int
    origin_bytes: int
    fill_objects: int
    fill_bytes: int
    peak_origin_bps: float  # the busiest `bin_s` of origin egress
    window_requests: int  # requests in the watched windows (e.g. a release's first hours)
    window_hits: int
    window_origin_bytes: int
    edge_hit_ratio: Mapping[str, float]
    wall_s: float
    replayed: int  # every request replayed, warm-up included
    evictions: int

    @property
    def hit_ratio(self) -> float:
        return self.hits / self.requests if self.requests else 0.0

    @property
    def byte_hit_ratio(self) -> float:
        return self.bytes_hit / self.bytes_requested if self.bytes_requested else 0.0

    @property
    def window_hit_ratio(self) -> float:
        return self.window_hits / self.window_requests if self.window_requests else 0.0

    @property
    def requests_per_s(self) -> float:
        return self.replayed / self.wall_s if self.wall_s > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out.update(hit_ratio=round(self.hit_ratio, 5), byte_hit_ratio=round(self.byte_hit_ratio, 5),
                   window_hit_ratio=round(self.window_hit_ratio, 5), requests_per_s=round(self.requests_per_s))
        out["edge_hit_ratio"] = dict(self.edge_hit_ratio)
        return out


@dataclass(frozen=True, kw_only=True, slots=True)
class Window:
    """Requests for `title` within [start_s, end_s): counted apart (a release's opening hours)."""

    title: str
    start_s: float
    end_s: float


@dataclass(frozen=True, kw_only=True, slots=True)
class ReplayConfig:
    cache_bytes: Mapping[str, int]  # per edge
    measure_from_s: float = 0.0
    max_object_bytes: int = MAX_OBJECT_BYTES
    bin_s: float = 300.0
    windows: tuple[Window, ...] = field(default_factory=tuple)


def replay(log: RequestLog, config: ReplayConfig, pushes: Sequence[Push] = (), *,
           outcomes: list[bool] | None = None, caches: dict[str, ByteLRU[float]] | None = None) -> ReplayResult:
    """Replay `log` through one `ByteLRU` per edge with the edge's rules (module docstring). For
    inspection: `outcomes` gets every request's hit (True) or miss, `caches` the edges' caches."""
    missing = [e for e in log.edges if e not in config.cache_bytes]
    missing += [p.edge for p in pushes if p.edge not in config.cache_bytes]
    if missing:
        raise ValueError(f"no cache size for edge {sorted(set(missing))[0]!r}")
    names = list(config.cache_bytes)
    if caches is None:
        caches = {}
    caches.update({name: ByteLRU(int(config.cache_bytes[name])) for name in names})
    by_index = [caches[e] for e in log.edges]
    keys, sizes, ttls = log.keys, log.sizes.tolist(), log.ttl_s.tolist()
    window_of: dict[int, list[tuple[float, float]]] = {}
    title_index = {t: i for i, t in enumerate(log.titles)}
    for w in config.windows:
        if w.title in title_index:
            window_of.setdefault(title_index[w.title], []).append((w.start_s, w.end_s))
    in_window = [tuple(window_of.get(t, ())) for t in log.title_of.tolist()]
    max_object, measure_from, bin_s = config.max_object_bytes, config.measure_from_s, config.bin_s
    requests = hits = bytes_requested = bytes_hit = origin_requests = origin_bytes = 0
    window_requests = window_hits = window_origin = fill_objects = fill_bytes = 0
    edge_requests = [0] * len(log.edges)
    edge_hits = [0] * len(log.edges)
    egress_bins: dict[int, int] = {}
    queue = list(pushes)
    next_push = 0
    started = time.perf_counter()
    for t, e, o in zip(log.time_s.tolist(), log.edge.tolist(), log.obj.tolist()):
        while next_push < len(queue) and queue[next_push].time_s <= t:
            objects, nbytes = _push(caches[queue[next_push].edge], queue[next_push], max_object)
            fill_objects += objects
            fill_bytes += nbytes
            next_push += 1
        cache = by_index[e]
        key = keys[o]
        size = sizes[o]
        expires = cache.get(key)
        hit = expires is not None and expires > t
        if not hit:
            body = 0 if expires is not None else size  # a stale copy is revalidated: 304, no body
            if size <= max_object:
                cache.put(key, t + ttls[o], size)
            else:
                body = size  # streamed through, uncached, every time
        if outcomes is not None:
            outcomes.append(hit)
        if t < measure_from:
            continue
        requests += 1
        bytes_requested += size
        edge_requests[e] += 1
        windows = in_window[o]
        watched = bool(windows) and any(a <= t < b for a, b in windows)
        window_requests += watched
        if hit:
            hits += 1
            bytes_hit += size
            edge_hits[e] += 1
            window_hits += watched
        else:
            origin_requests += 1
            origin_bytes += body
            window_origin += body if watched else 0
            slot = int(t // bin_s)
            egress_bins[slot] = egress_bins.get(slot, 0) + body
    while next_push < len(queue):  # pushes after the last request still cost their fill
        objects, nbytes = _push(caches[queue[next_push].edge], queue[next_push], max_object)
        fill_objects += objects
        fill_bytes += nbytes
        next_push += 1
    wall_s = time.perf_counter() - started
    return ReplayResult(
        requests=requests, hits=hits, bytes_requested=bytes_requested, bytes_hit=bytes_hit,
        origin_requests=origin_requests, origin_bytes=origin_bytes, fill_objects=fill_objects, fill_bytes=fill_bytes,
        peak_origin_bps=max(egress_bins.values(), default=0) * 8 / bin_s, window_requests=window_requests,
        window_hits=window_hits, window_origin_bytes=window_origin,
        edge_hit_ratio={name: round(edge_hits[i] / edge_requests[i], 5) if edge_requests[i] else 0.0
                        for i, name in enumerate(log.edges)},
        wall_s=wall_s, replayed=len(log), evictions=sum(c.evictions for c in caches.values()))


def _push(cache: ByteLRU[float], push: Push, max_object: int) -> tuple[int, int]:
    """The edge's pre-position handler: `segments.json` fetched whole and stored; then a `get` of
    every listed object (a use), and a fetch of each that was not fresh. (objects fetched, bytes)."""
    t = push.time_s
    index_key, index_size, index_ttl = push.keys[0], push.sizes[0], push.ttl_s[0]
    cache.put(index_key, t + index_ttl, index_size)
    objects, nbytes = 1, index_size
    held = [cache.get(key) for key in push.keys[1:]]
    for key, size, ttl, expires in zip(push.keys[1:], push.sizes[1:], push.ttl_s[1:], held):
        if expires is not None and expires > t:
            continue
        if size <= max_object:
            cache.put(key, t + ttl, size)
        objects += 1
        nbytes += 0 if expires is not None else size
    return objects, nbytes


# --- LRU alone vs LRU with a plan ---------------------------------------------------------------------


def scaled_to(model: DemandModel, *, requests: int, duration_s: float) -> DemandModel:
    """`model` with the session rate that gives about `requests` requests in `duration_s`."""
    if requests < 1 or not duration_s > 0:
        raise ValueError("need requests >= 1 and duration_s > 0")
    return replace(model, sessions_per_s=requests / (duration_s * requests_per_session(model, duration_s=duration_s)))


def release_windows(model: DemandModel, *, half_lives: float = 2.0) -> tuple[Window, ...]:
    """Each release's opening: `half_lives` half-lives from its opening."""
    return tuple(Window(title=r.title, start_s=r.at_s, end_s=r.at_s + half_lives * r.half_life_s)
                 for r in model.releases)


@dataclass(frozen=True, kw_only=True, slots=True)
class Comparison:
    lru: ReplayResult
    placed: ReplayResult
    plan: PlacementPlan

    def as_dict(self) -> dict[str, object]:
        return {"lru": self.lru.as_dict(), "lru_with_placement": self.placed.as_dict(),
                "plan": {"items": len(self.plan.items), "used_bytes": dict(self.plan.used),
                         "budget_bytes": dict(self.plan.budgets)}}


def compare(log: RequestLog, model: DemandModel, plan: PlacementPlan, *, measure_from_s: float) -> Comparison:
    """Replay `log` on the model's edges (their cache sizes) without and with `plan`."""
    config = ReplayConfig(cache_bytes={e.id: e.cache_bytes for e in model.edges}, measure_from_s=measure_from_s,
                          windows=release_windows(model))
    return Comparison(lru=replay(log, config), placed=replay(log, config, plan_pushes(plan, model.catalogue)),
                      plan=plan)
