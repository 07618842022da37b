"""Predictive pre-positioning: a demand model and a planner that pushes content to edges before the
demand comes.

The demand model (`DemandModel`): titles ranked by popularity (Zipf, exponent `zipf_s`), each
region's taste a seeded log-normal tilt of that ranking, regions' shares of the sessions, and a
release calendar (a new title has no demand before its release, then a spike that halves every
`half_life_s` on top of its catalogue rank). Viewers watch an exponential time (mean `mean_watch_s`)
from the start, one video rendition each (by `video_shares`, lowest rung first) plus the audio.

The planner (`plan_placement`): steering sends a title's sessions in a region to its rendezvous home
edge there (server/playback.py's `rendezvous_weight`), so each edge's candidates are the titles
homed on it; their renditions, cut into chunks of segments, are ranked by expected requests per
object over the horizon and taken greedily within the edge's budget (the fractional-knapsack rule:
expected byte hits per stored byte). A release is pushed `release_lead_s` before it opens.

The plan is executed through each edge's `POST /internal/preposition/{title}?renditions=..&segments=N`
(`apply_plan`); `server.cachesim` replays requests against the edges' cache to say what it is worth.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import numpy as np

from server.content import list_titles
from server.formats.names import MANIFEST_NAME, SEGMENTS_NAME, is_valid_title
from server.formats.segments import load_segments_json
from server.playback import rendezvous_weight

# Shares of sessions per video rung, lowest first, spread over any ladder by position (a mix skewed
# to the top rungs, as on fixed broadband).
DEFAULT_VIDEO_SHARES = (0.04, 0.08, 0.14, 0.22, 0.30, 0.22)
DEFAULT_LADDER_BPS = (235_000, 560_000, 1_050_000, 1_750_000, 3_000_000, 5_800_000)
MANIFEST_BYTES = 4_096  # a synthetic title's MPD and segments.json, for titles we have no files of
INDEX_BYTES = 16_384


# --- the catalogue ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class Rendition:
    """One rendition's objects: `init.mp4` and `segment_count` media segments."""

    id: str
    kind: str  # "video" or "audio"
    bitrate_bps: int
    init_bytes: int
    segment_count: int
    segment_bytes: np.ndarray  # per segment (int64), read-only

    def __post_init__(self) -> None:
        if self.kind not in ("video", "audio"):
            raise ValueError(f"rendition kind must be video or audio, got {self.kind!r}")
        sizes = np.ascontiguousarray(self.segment_bytes, dtype=np.int64)
        if sizes.shape != (self.segment_count,) or (sizes < 0).any():
            raise ValueError(f"rendition {self.id}: need {self.segment_count} segment sizes >= 0")
        sizes.setflags(write=False)
        object.__setattr__(self, "segment_bytes", sizes)

    def path(self, title: str, number: int) -> str:
        """The content path of media segment `number` (1-based) or, for 0, of the init segment."""
        name = "init.mp4" if number == 0 else f"{number}.m4s"
        return f"/{title}/{self.kind}/{self.id}/{name}"


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class TitleInfo:
    name: str
    segment_s: float
    renditions: tuple[Rendition, ...]
    manifest_bytes: int = MANIFEST_BYTES
    index_bytes: int = INDEX_BYTES

    def __post_init__(self) -> None:
        if not is_valid_title(self.name):
            raise ValueError(f"invalid title name {self.name!r}")
        if not self.video:
            raise ValueError(f"title {self.name} has no video rendition")

    @property
    def video(self) -> tuple[Rendition, ...]:
        return tuple(r for r in self.renditions if r.kind == "video")

    @property
    def audio(self) -> tuple[Rendition, ...]:
        return tuple(r for r in self.renditions if r.kind == "audio")

    @property
    def segment_count(self) -> int:
        return min(r.segment_count for r in self.renditions)


def title_from_dir(title_dir: Path) -> TitleInfo:
    """A packaged title as the origin serves it: sizes from `segments.json`, the rest from the files."""
    index = load_segments_json(title_dir / SEGMENTS_NAME)
    renditions = []
    for kind, infos in (("video", index.video), ("audio", index.audio)):
        for info in infos:
            init = title_dir / kind / info.id / "init.mp4"
            renditions.append(Rendition(id=info.id, kind=kind, bitrate_bps=info.bitrate_bps,
                                        init_bytes=init.stat().st_size if init.is_file() else 0,
                                        segment_count=len(info.segment_sizes_bytes),
                                        segment_bytes=np.array(info.segment_sizes_bytes)))
    manifest = title_dir / MANIFEST_NAME
    return TitleInfo(name=title_dir.name, segment_s=index.segment_duration_s, renditions=tuple(renditions),
                     manifest_bytes=manifest.stat().st_size if manifest.is_file() else MANIFEST_BYTES,
                     index_bytes=(title_dir / SEGMENTS_NAME).stat().st_size)


def catalogue_from_root(content_root: Path) -> tuple[TitleInfo, ...]:
    titles = tuple(title_from_dir(content_root / name) for name in list_titles(content_root))
    if not titles:
        raise ValueError(f"{content_root}: no packaged titles")
    return titles


def synthetic_catalogue(count: int, *, seed: int = 0, ladder_bps: Sequence[int] = DEFAULT_LADDER_BPS,
                        audio_bps: int = 128_000, segment_s: float = 4.0, median_duration_s: float = 2700.0,
                        duration_sigma: float = 0.5) -> tuple[TitleInfo, ...]:
    """`count` titles named `t00000`..., log-normal durations (10 min to 3 h), constant-bitrate segments
    scaled by a per-title complexity factor (log-normal, sigma 0.2)."""
    if count < 1:
        raise ValueError("a catalogue needs at least one title")
    rng = np.random.default_rng(seed)
    durations = np.clip(rng.lognormal(math.log(median_duration_s), duration_sigma, count), 600.0, 10_800.0)
    complexity = rng.lognormal(0.0, 0.2, count)
    titles = []
    for i in range(count):
        segments = max(1, int(durations[i] // segment_s))
        renditions = [Rendition(id=f"v{k}", kind="video", bitrate_bps=int(b), init_bytes=900, segment_count=segments,
                                segment_bytes=np.full(segments, int(b * complexity[i] * segment_s / 8)))
                      for k, b in enumerate(ladder_bps)]
        renditions.append(Rendition(id="a0", kind="audio", bitrate_bps=audio_bps, init_bytes=700,
                                    segment_count=segments, segment_bytes=np.full(segments, int(audio_bps * segment_s / 8))))
        titles.append(TitleInfo(name=f"t{i:05d}", segment_s=segment_s, renditions=tuple(renditions)))
    return tuple(titles)


# --- the demand model ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class EdgeSpec:
    """An edge as the planner sees it: its cache, the part of it the plan may fill, where it listens."""

    id: str
    cache_bytes: int
    budget_bytes: int
    url: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.budget_bytes <= self.cache_bytes:
            raise ValueError(f"edge {self.id}: need 0 <= budget_bytes <= cache_bytes")
        if self.url is not None and not (isinstance(self.url, str) and self.url.startswith(("http://", "https://"))):
            raise ValueError(f"edge {self.id}: url must be http(s)://host:port, got {self.url!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class Region:
    name: str
    share: float  # of all sessions (averaged over a day)
    edges: tuple[EdgeSpec, ...]
    peak_hour_utc: float = 20.0  # when its evening peak is, in hours after 00:00 UTC (time 0)

    def __post_init__(self) -> None:
        if not self.share > 0 or not self.edges:
            raise ValueError(f"region {self.name}: need a share > 0 and at least one edge")


@dataclass(frozen=True, kw_only=True, slots=True)
class Release:
    """A title that opens at `at_s`: no demand before, then a spike of `peak_share` of the region's
    catalogue demand that halves every `half_life_s`."""

    title: str
    at_s: float
    peak_share: float = 0.3
    half_life_s: float = 7200.0

    def __post_init__(self) -> None:
        if self.at_s < 0 or self.peak_share < 0 or not self.half_life_s > 0:
            raise ValueError(f"release {self.title}: need at_s >= 0, peak_share >= 0, half_life_s > 0")


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class DemandModel:
    """Who watches what, where and when. `catalogue` is in order of popularity (most popular first)."""

    catalogue: tuple[TitleInfo, ...]
    regions: tuple[Region, ...]
    releases: tuple[Release, ...] = ()
    zipf_s: float = 0.9
    regional_tilt: float = 0.5  # sigma of each region's log-normal tilt of a title's popularity
    sessions_per_s: float = 5.0  # averaged over a day
    diurnal_amplitude: float = 0.0  # a region's rate is 1 + A cos(2 pi (hour - peak hour) / 24) times its mean
    mean_watch_s: float = 1200.0
    video_shares: tuple[float, ...] = DEFAULT_VIDEO_SHARES
    seed: int = 0
    _base: np.ndarray = field(init=False, repr=False)  # (regions, titles) catalogue weights

    def __post_init__(self) -> None:
        if not self.catalogue or not self.regions:
            raise ValueError("a demand model needs titles and regions")
        names = [t.name for t in self.catalogue]
        if len(set(names)) != len(names):
            raise ValueError("title names in the catalogue must be unique")
        edge_ids = [e.id for r in self.regions for e in r.edges]
        if len(set(edge_ids)) != len(edge_ids):
            raise ValueError("edge ids must be unique across regions")
        unknown = [r.title for r in self.releases if r.title not in set(names)]
        if unknown:
            raise ValueError(f"releases name titles not in the catalogue: {', '.join(unknown)}")
        if self.zipf_s < 0 or self.regional_tilt < 0 or not self.sessions_per_s > 0 or not self.mean_watch_s > 0:
            raise ValueError("need zipf_s >= 0, regional_tilt >= 0, sessions_per_s > 0 and mean_watch_s > 0")
        if not 0 <= self.diurnal_amplitude <= 1:
            raise ValueError("diurnal_amplitude must be in [0, 1]")
        if not self.video_shares or min(self.video_shares) < 0 or not sum(self.video_shares) > 0:
            raise ValueError("video_shares must be non-negative with a positive sum")
        rng = np.random.default_rng(self.seed)
        zipf = np.arange(1, len(self.catalogue) + 1, dtype=np.float64) ** -self.zipf_s
        tilt = rng.lognormal(0.0, self.regional_tilt, (len(self.regions), len(self.catalogue)))
        object.__setattr__(self, "_base", zipf * tilt)

    @property
    def edges(self) -> tuple[EdgeSpec, ...]:
        return tuple(e for r in self.regions for e in r.edges)

    def region_shares(self) -> np.ndarray:
        shares = np.array([r.share for r in self.regions])
        return shares / shares.sum()

    def session_rate(self, region: int, times_s: np.ndarray) -> np.ndarray:
        """Sessions per second starting in `region` at each of `times_s`."""
        hours = np.asarray(times_s, dtype=np.float64) / 3600.0 - self.regions[region].peak_hour_utc
        daily = 1.0 + self.diurnal_amplitude * np.cos(2 * np.pi * hours / 24.0)
        return self.sessions_per_s * self.region_shares()[region] * daily

    def weights(self, region: int, times_s: np.ndarray) -> np.ndarray:
        """(times, titles) probabilities that a session starting then in `region` is for each title."""
        times = np.asarray(times_s, dtype=np.float64)
        base = np.broadcast_to(self._base[region], (times.size, len(self.catalogue))).copy()
        index = {t.name: i for i, t in enumerate(self.catalogue)}
        total = self._base[region].sum()
        for release in self.releases:
            i = index[release.title]
            age = times - release.at_s
            spike = release.peak_share * total * np.exp2(-np.maximum(age, 0.0) / release.half_life_s)
            base[:, i] = np.where(age >= 0, base[:, i] + spike, 0.0)
        return base / base.sum(axis=1, keepdims=True)

    def expected_sessions(self, region: int, start_s: float, end_s: float, *, step_s: float = 300.0) -> np.ndarray:
        """Expected sessions per title in `region` starting within [start_s, end_s)."""
        if not end_s > start_s:
            return np.zeros(len(self.catalogue))
        bins = max(1, math.ceil((end_s - start_s) / step_s))
        edges = np.linspace(start_s, end_s, bins + 1)
        mids = (edges[:-1] + edges[1:]) / 2
        sessions = np.diff(edges) * self.session_rate(region, mids)
        return (self.weights(region, mids) * sessions[:, None]).sum(axis=0)

    def rendition_shares(self, title: TitleInfo) -> dict[str, float]:
        """Share of sessions that fetch each rendition: video by `video_shares` spread over this
        title's ladder by position; every audio rendition (the player fetches the first) at 1."""
        video = title.video
        src = np.asarray(self.video_shares, dtype=np.float64)
        if len(video) == len(src):
            shares = src
        else:
            positions = np.linspace(0.0, 1.0, len(src))
            shares = np.interp(np.linspace(0.0, 1.0, len(video)), positions, src) if len(video) > 1 else np.ones(1)
        shares = shares / shares.sum()
        out = {r.id: float(s) for r, s in zip(video, shares)}
        out.update({r.id: 1.0 if k == 0 else 0.0 for k, r in enumerate(title.audio)})
        return out

    def survival(self, title: TitleInfo, segments: int | None = None) -> np.ndarray:
        """P(a session of `title` fetches media segment n), n = 1..segments (exponential watch time)."""
        count = title.segment_count if segments is None else segments
        starts = np.arange(count) * title.segment_s
        return np.exp(-starts / self.mean_watch_s)

    def home_edges(self, title: str) -> list[EdgeSpec]:
        """The edge steering sends `title`'s sessions to in each region (rendezvous hashing)."""
        return [max(r.edges, key=lambda e: (rendezvous_weight(title, e.id), e.id)) for r in self.regions]


# --- the plan --------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class PlacementItem:
    """Push the first `segments` media segments of `renditions` of `title` (with the MPD, the
    segment index and the init segments) to `edge` at `push_at_s`."""

    edge: str
    title: str
    renditions: tuple[str, ...]
    segments: int
    size_bytes: int
    expected_requests: float
    push_at_s: float


@dataclass(frozen=True, kw_only=True, slots=True)
class PlacementPlan:
    items: tuple[PlacementItem, ...]
    plan_at_s: float
    horizon_s: float
    budgets: Mapping[str, int]
    used: Mapping[str, int]
    edge_urls: Mapping[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"plan_at_s": self.plan_at_s, "horizon_s": self.horizon_s, "budgets": dict(self.budgets),
                "used": dict(self.used), "edge_urls": dict(self.edge_urls),
                "items": [{**asdict(item), "renditions": list(item.renditions)} for item in self.items]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PlacementPlan:
        try:
            items = tuple(PlacementItem(edge=str(i["edge"]), title=str(i["title"]),
                                        renditions=tuple(str(r) for r in i["renditions"]), segments=int(i["segments"]),
                                        size_bytes=int(i["size_bytes"]), expected_requests=float(i["expected_requests"]),
                                        push_at_s=float(i["push_at_s"])) for i in data["items"])
            plan = cls(items=items, plan_at_s=float(data["plan_at_s"]), horizon_s=float(data["horizon_s"]),
                       budgets={str(k): int(v) for k, v in data["budgets"].items()},
                       used={str(k): int(v) for k, v in data["used"].items()},
                       edge_urls={str(k): str(v) for k, v in data.get("edge_urls", {}).items()})
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a placement plan: {exc!r}") from None
        for item in plan.items:
            if not is_valid_title(item.title) or item.segments < 0:
                raise ValueError(f"plan item for {item.title!r} on {item.edge}: bad title or segment count")
        return plan


def load_plan(path: Path) -> PlacementPlan:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a placement plan")
    return PlacementPlan.from_json(data)


def plan_placement(model: DemandModel, *, plan_at_s: float = 0.0, horizon_s: float = 86_400.0,
                   chunk_segments: int = 75, release_lead_s: float = 3600.0, min_expected_requests: float = 1.0,
                   forecast_sigma: float = 0.0, forecast_seed: int = 1) -> PlacementPlan:
    """Which renditions (and how much of each) of which titles each edge gets, within its budget.

    Candidates are chunks of `chunk_segments` segments of a rendition on the title's home edge in a
    region; a chunk's value is its expected requests per object in [plan_at_s, plan_at_s +
    horizon_s), from the model (times a seeded log-normal error of `forecast_sigma`: the planner's
    forecast is not the demand). Chunks expected to be requested fewer than `min_expected_requests`
    times per object are not pushed (the push would cost more than it saves).
    """
    if not horizon_s > 0 or chunk_segments < 1 or release_lead_s < 0 or forecast_sigma < 0:
        raise ValueError("need horizon_s > 0, chunk_segments >= 1, release_lead_s >= 0, forecast_sigma >= 0")
    end_s = plan_at_s + horizon_s
    error = np.random.default_rng(forecast_seed).lognormal(0.0, forecast_sigma, (len(model.regions), len(model.catalogue)))
    opens = {r.title: r.at_s for r in model.releases}
    # (value per object, edge, title index, rendition, chunk, bytes)
    candidates: dict[str, list[tuple[float, int, Rendition, int, int]]] = {e.id: [] for e in model.edges}
    for region_index, region in enumerate(model.regions):
        sessions = model.expected_sessions(region_index, plan_at_s, end_s) * error[region_index]
        for title_index, title in enumerate(model.catalogue):
            if sessions[title_index] <= 0:
                continue
            home = max(region.edges, key=lambda e: (rendezvous_weight(title.name, e.id), e.id))
            shares = model.rendition_shares(title)
            survival = model.survival(title)
            for rendition in title.renditions:
                count = rendition.segment_count
                for chunk, first in enumerate(range(0, count, chunk_segments)):
                    last = min(count, first + chunk_segments)
                    per_object = sessions[title_index] * shares[rendition.id] * float(survival[first:last].mean())
                    if per_object < min_expected_requests:
                        break  # later chunks are watched less
                    size = int(rendition.segment_bytes[first:last].sum())
                    if chunk == 0:
                        size += rendition.init_bytes + title.manifest_bytes + title.index_bytes
                    candidates[home.id].append((per_object, title_index, rendition, chunk, size))
    items: list[PlacementItem] = []
    budgets = {e.id: e.budget_bytes for e in model.edges}
    used: dict[str, int] = {}
    for edge_id, options in candidates.items():
        options.sort(key=lambda c: (-c[0], c[1], c[2].id, c[3]))
        room = budgets[edge_id]
        taken: dict[tuple[int, str], tuple[int, float, int]] = {}  # (title, rendition) -> (chunks, value, bytes)
        closed: set[tuple[int, str]] = set()
        for per_object, title_index, rendition, chunk, size in options:
            key = (title_index, rendition.id)
            if key in closed or taken.get(key, (0, 0.0, 0))[0] != chunk:
                continue  # only prefixes: a chunk after one that did not fit is not pushed
            if size > room:
                closed.add(key)
                continue
            room -= size
            chunks, value, total_bytes = taken.get(key, (0, 0.0, 0))
            objects = min(chunk_segments, rendition.segment_count - chunk * chunk_segments)
            taken[key] = (chunks + 1, value + per_object * objects, total_bytes + size)
        used[edge_id] = budgets[edge_id] - room
        items.extend(_group(model, edge_id, taken, chunk_segments, opens, plan_at_s, release_lead_s))
    items.sort(key=lambda i: (i.push_at_s, i.edge, i.title, i.renditions))
    return PlacementPlan(items=tuple(items), plan_at_s=plan_at_s, horizon_s=horizon_s, budgets=budgets, used=used,
                         edge_urls={e.id: e.url for e in model.edges if e.url})


def _group(model: DemandModel, edge_id: str, taken: Mapping[tuple[int, str], tuple[int, float, int]],
           chunk_segments: int, opens: Mapping[str, float], plan_at_s: float, lead_s: float) -> list[PlacementItem]:
    """One item per (title, segment count): the renditions pushed to the same depth go in one request."""
    groups: dict[tuple[int, int], list[tuple[str, float, int]]] = {}
    for (title_index, rendition_id), (chunks, value, size) in taken.items():
        title = model.catalogue[title_index]
        rendition = next(r for r in title.renditions if r.id == rendition_id)
        segments = min(rendition.segment_count, chunks * chunk_segments)
        groups.setdefault((title_index, segments), []).append((rendition_id, value, size))
    out = []
    for (title_index, segments), members in groups.items():
        name = model.catalogue[title_index].name
        push_at = max(plan_at_s, opens[name] - lead_s) if name in opens else plan_at_s
        out.append(PlacementItem(edge=edge_id, title=name, renditions=tuple(sorted(m[0] for m in members)),
                                 segments=segments, size_bytes=sum(m[2] for m in members),
                                 expected_requests=round(sum(m[1] for m in members), 2), push_at_s=push_at))
    return out


# --- executing it ----------------------------------------------------------------------------------


def preposition_path(item: PlacementItem) -> str:
    """The edge request that executes `item` (docs/EDGE.md, "Pre-positioning")."""
    return (f"/internal/preposition/{quote(item.title, safe='')}?renditions={','.join(item.renditions)}"
            f"&segments={item.segments}")


async def apply_plan(plan: PlacementPlan, edge_urls: Mapping[str, str], *, headers: Mapping[str, str],
                     titles: Sequence[str] | None = None, timeout_s: float = 600.0) -> list[dict[str, Any]]:
    """POST every item (of `titles`, if given) to its edge; one result per item, in plan order.
    An edge without a URL, or one that fails, is reported in its items' results, not raised."""
    wanted = [i for i in plan.items if titles is None or i.title in titles]
    results: list[dict[str, Any]] = [{} for _ in wanted]
    async with aiohttp.ClientSession(trust_env=False, timeout=aiohttp.ClientTimeout(total=timeout_s)) as http:
        async def one(item: PlacementItem) -> dict[str, Any]:
            out: dict[str, Any] = {"edge": item.edge, "title": item.title, "renditions": list(item.renditions),
                                   "segments": item.segments}
            url = edge_urls.get(item.edge)
            if url is None:
                return {**out, "status": None, "error": "no URL for this edge"}
            try:
                async with http.post(url.rstrip("/") + preposition_path(item), headers=dict(headers)) as resp:
                    body = await resp.json(content_type=None)
                    out["status"] = resp.status
                    if isinstance(body, dict):
                        out.update({k: body[k] for k in ("objects", "fetched", "already_cached", "failed",
                                                         "fetched_bytes", "error") if k in body})
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                out.update(status=None, error=f"{type(exc).__name__}: {exc}")
            return out

        async def edge_items(indexes: list[int]) -> None:
            for n in indexes:  # one push at a time per edge: each fetches in parallel already
                results[n] = await one(wanted[n])

        by_edge: dict[str, list[int]] = {}
        for n, item in enumerate(wanted):
            by_edge.setdefault(item.edge, []).append(n)
        await asyncio.gather(*(edge_items(indexes) for indexes in by_edge.values()))
    return results


# --- models from files -----------------------------------------------------------------------------

GB = 1_000_000_000


def default_model(*, titles: int = 500, seed: int = 0, cache_bytes: int = 20 * GB,
                  budget_fraction: float = 0.5) -> DemandModel:
    """A day of a small service: three regions (evening peaks at 20:00 UTC in eu, 02:00 in na, 13:00
    in apac) of two edges each, a release opening at 19:00 UTC and another at 01:00: the scenario
    `abrkit placement simulate` and bench/fleet.py run when no model file is given."""
    if not 0 <= budget_fraction <= 1:
        raise ValueError("budget_fraction must be in [0, 1]")
    budget = int(cache_bytes * budget_fraction)
    regions = tuple(Region(name=name, share=share, peak_hour_utc=peak, edges=tuple(
        EdgeSpec(id=f"{name}-{k}", cache_bytes=cache_bytes, budget_bytes=budget) for k in (1, 2)))
        for name, share, peak in (("eu", 0.40, 20.0), ("na", 0.45, 2.0), ("apac", 0.15, 13.0)))
    catalogue = synthetic_catalogue(titles, seed=seed)
    releases = (Release(title=catalogue[titles // 2].name, at_s=19 * 3600.0, peak_share=0.5, half_life_s=3 * 3600.0),
                Release(title=catalogue[3 * titles // 4].name, at_s=25 * 3600.0, peak_share=0.3,
                        half_life_s=2 * 3600.0))
    return DemandModel(catalogue=catalogue, regions=regions, releases=releases, diurnal_amplitude=0.6,
                       mean_watch_s=900.0, seed=seed)


def _field(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = None) -> Any:
    if key not in data:
        if default is None:
            raise ValueError(f"{where}: missing {key!r}")
        return default
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"{where}: {key!r} has the wrong type ({type(value).__name__})")
    return value


def model_from_json(data: Mapping[str, Any], *, base_dir: Path) -> DemandModel:
    """A demand model from its JSON form (docs/FLEET.md, "Demand model file"); relative paths are
    relative to `base_dir`. Errors name the field."""
    if not isinstance(data, Mapping):
        raise ValueError("a demand model file holds a JSON object")
    number = (int, float)
    source = _field(data, "catalogue", dict, "model")
    if "content_root" in source:
        root = Path(_field(source, "content_root", str, "catalogue"))
        catalogue = catalogue_from_root(root if root.is_absolute() else base_dir / root)
        order = _field(source, "order", list, "catalogue", default=[])
        rank = {name: i for i, name in enumerate(order)}
        catalogue = tuple(sorted(catalogue, key=lambda t: (rank.get(t.name, len(rank)), t.name)))
    else:
        catalogue = synthetic_catalogue(int(_field(source, "synthetic_titles", int, "catalogue")),
                                        seed=int(_field(source, "seed", int, "catalogue", default=0)))
    regions = []
    for n, region in enumerate(_field(data, "regions", list, "model")):
        where = f"regions[{n}]"
        if not isinstance(region, dict):
            raise ValueError(f"{where}: must be an object")
        edges = []
        for k, edge in enumerate(_field(region, "edges", list, where)):
            at = f"{where}.edges[{k}]"
            if not isinstance(edge, dict):
                raise ValueError(f"{at}: must be an object")
            cache = int(float(_field(edge, "cache_gb", number, at)) * GB)
            edges.append(EdgeSpec(id=_field(edge, "id", str, at), url=edge.get("url"), cache_bytes=cache,
                                  budget_bytes=int(float(_field(edge, "budget_gb", number, at, default=cache / GB / 2)) * GB)))
        regions.append(Region(name=_field(region, "name", str, where), share=float(_field(region, "share", number, where)),
                              peak_hour_utc=float(_field(region, "peak_hour_utc", number, where, default=20.0)),
                              edges=tuple(edges)))
    releases = []
    for n, release in enumerate(_field(data, "releases", list, "model", default=[])):
        where = f"releases[{n}]"
        if not isinstance(release, dict):
            raise ValueError(f"{where}: must be an object")
        releases.append(Release(title=_field(release, "title", str, where), at_s=float(_field(release, "at_s", number, where)),
                                peak_share=float(_field(release, "peak_share", number, where, default=0.3)),
                                half_life_s=float(_field(release, "half_life_s", number, where, default=7200.0))))
    shares = _field(data, "video_shares", list, "model", default=list(DEFAULT_VIDEO_SHARES))
    if not all(isinstance(s, number) and not isinstance(s, bool) for s in shares):
        raise ValueError("model: 'video_shares' must be a list of numbers")
    return DemandModel(
        catalogue=catalogue, regions=tuple(regions), releases=tuple(releases),
        zipf_s=float(_field(data, "zipf_s", number, "model", default=0.9)),
        regional_tilt=float(_field(data, "regional_tilt", number, "model", default=0.5)),
        sessions_per_s=float(_field(data, "sessions_per_s", number, "model", default=5.0)),
        diurnal_amplitude=float(_field(data, "diurnal_amplitude", number, "model", default=0.0)),
        mean_watch_s=float(_field(data, "mean_watch_s", number, "model", default=1200.0)),
        video_shares=tuple(float(s) for s in shares), seed=int(_field(data, "seed", int, "model", default=0)))


def load_model(path: Path) -> DemandModel:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    try:
        return model_from_json(data, base_dir=path.parent)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
