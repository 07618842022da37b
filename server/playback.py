"""The playback API (the steering role): which edges should serve this session, with signed URLs.

Edges report themselves by heartbeat (`POST /internal/edges/heartbeat`, with the bearer
`server.urlsign.internal_token(url_signing_key)`); one silent for
`missed_heartbeats` intervals leaves the ranking. A title's edges are ranked by cost: rendezvous
(highest-random-weight) hashing of the title over edge ids gives cache affinity that moves only
1/N of titles when an edge comes or goes (Thaler & Ravishankar 1998), traded off against reported
load and whether the edge says it holds the title already.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from aiohttp import web

from server import urlsign
from server.auth import TOKENS, TokenError, TokenService, authenticate, common_middlewares, healthz, unauthorized
from server.config import PlaybackConfig, SteeringWeights
from server.formats.hls import MASTER_PLAYLIST_NAME
from server.formats.names import MANIFEST_NAME, is_valid_title
from server.httpapi import BadRequest, json_error, read_json_body
from server.observability import METRICS, Metrics, add_log_fields, metrics_handler

Clock = Callable[[], float]
_EDGE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_EDGE_URL_RE = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+$")
_MAX_CACHED_TITLES = 10_000


@dataclass(frozen=True, kw_only=True, slots=True)
class EdgeStatus:
    """What an edge said in its last heartbeat, and when (monotonic seconds) it was heard."""

    edge_id: str
    url: str
    healthy: bool
    load: float  # active requests
    cached_titles: frozenset[str]
    last_seen_s: float


def parse_heartbeat(body: object, *, now: float) -> EdgeStatus:
    """Validate a heartbeat body; `BadRequest` says which field is wrong."""
    if not isinstance(body, dict):
        raise BadRequest("heartbeat must be a JSON object")
    edge_id, url, healthy = body.get("edge_id"), body.get("url"), body.get("healthy")
    load, cached = body.get("load", 0.0), body.get("cached_titles", [])
    if not isinstance(edge_id, str) or not _EDGE_ID_RE.match(edge_id):
        raise BadRequest("'edge_id' must be a short id (letters, digits, . _ : -)")
    if not isinstance(url, str) or not _EDGE_URL_RE.match(url.rstrip("/")):
        raise BadRequest("'url' must be http(s)://host:port")
    if not isinstance(healthy, bool):
        raise BadRequest("'healthy' must be a boolean")
    if isinstance(load, bool) or not isinstance(load, (int, float)) or not 0 <= load < 1e9:
        raise BadRequest("'load' must be a number >= 0")
    if (not isinstance(cached, list) or len(cached) > _MAX_CACHED_TITLES
            or not all(isinstance(t, str) and len(t) <= 128 for t in cached)):
        raise BadRequest("'cached_titles' must be a list of title names")
    return EdgeStatus(edge_id=edge_id, url=url.rstrip("/"), healthy=healthy, load=float(load),
                      cached_titles=frozenset(cached), last_seen_s=now)


class EdgeRegistry:
    """The edges heard from; an edge is live while healthy and heard within `stale_after_s`."""

    def __init__(self, *, stale_after_s: float, max_edges: int = 1024) -> None:
        self.stale_after_s = stale_after_s
        self.max_edges = max_edges
        self._edges: dict[str, EdgeStatus] = {}

    def heartbeat(self, status: EdgeStatus) -> None:
        if status.edge_id not in self._edges and len(self._edges) >= self.max_edges:
            self._forget_stale(status.last_seen_s)
            if len(self._edges) >= self.max_edges:
                raise BadRequest("too many edges registered")
        self._edges[status.edge_id] = status

    def _forget_stale(self, now: float) -> None:
        for edge_id in [e.edge_id for e in self._edges.values() if not self._fresh(e, now)]:
            del self._edges[edge_id]

    def _fresh(self, edge: EdgeStatus, now: float) -> bool:
        return now - edge.last_seen_s <= self.stale_after_s

    def live(self, now: float) -> list[EdgeStatus]:
        return [e for e in self._edges.values() if e.healthy and self._fresh(e, now)]

    def all(self) -> list[EdgeStatus]:
        return list(self._edges.values())

    def is_live(self, edge: EdgeStatus, now: float) -> bool:
        return edge.healthy and self._fresh(edge, now)


def rendezvous_weight(title: str, edge_id: str) -> int:
    """The highest-random-weight hash of (title, edge): the edge with the largest is the title's home."""
    digest = hashlib.blake2b(f"{title}\x00{edge_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rank_edges(title: str, edges: Iterable[EdgeStatus], weights: SteeringWeights) -> list[EdgeStatus]:
    """Edges for `title`, best first (lowest cost; ties broken by edge id for determinism)."""
    by_affinity = sorted(edges, key=lambda e: (-rendezvous_weight(title, e.edge_id), e.edge_id))

    def cost(item: tuple[int, EdgeStatus]) -> tuple[float, str]:
        rank, edge = item
        bonus = weights.cached_bonus if title in edge.cached_titles else 0.0
        return weights.affinity_weight * rank + weights.load_weight * edge.load - bonus, edge.edge_id

    return [edge for _, edge in sorted(enumerate(by_affinity), key=cost)]


def manifest_urls(title: str, edges: Sequence[EdgeStatus], *, key: bytes, session_id: str,
                  expires_at: int) -> list[str]:
    """One signed MPD URL per edge, all with the same token (it covers `/<title>/`)."""
    token = urlsign.sign(key, urlsign.UrlGrant(path_prefix=f"/{title}/", expires_at=expires_at, session_id=session_id))
    path = urlsign.signed_path(token, f"/{title}/manifest.mpd")
    return [edge.url + path for edge in edges]


def hls_urls(manifest_urls: Sequence[str]) -> list[str]:
    """The HLS master playlist beside each signed MPD URL: the token covers the whole title, so only
    the file name changes (and the playlists' relative URIs keep the signed prefix)."""
    return [url.removesuffix(MANIFEST_NAME) + MASTER_PLAYLIST_NAME for url in manifest_urls]


@dataclass(frozen=True, kw_only=True, slots=True)
class _Runtime:
    config: PlaybackConfig
    registry: EdgeRegistry
    monotonic: Clock
    wall: Clock
    edge_secret: bytes = field(repr=False)


_RUNTIME = web.AppKey("abrkit_playback", _Runtime)


async def _start_playback(request: web.Request) -> web.Response:
    rt = request.app[_RUNTIME]
    try:
        claims = authenticate(request)
    except TokenError as exc:
        return unauthorized(exc)
    title = request.match_info["title"]
    add_log_fields(request, sub=claims.subject, title=title)
    if not is_valid_title(title):
        return json_error(404, "unknown title")
    # Entitlement before existence, so a user cannot probe the catalogue for titles they may not see.
    if not claims.entitled_to(title):
        return json_error(403, "not entitled to this title", title=title)
    if not (rt.config.content_root / title / "manifest.mpd").is_file():
        return json_error(404, "unknown title", title=title)
    now = rt.monotonic()
    edges = rank_edges(title, rt.registry.live(now), rt.config.weights)
    metrics = request.app[METRICS]
    if not edges:
        metrics.inc("playback_refused_total", labels={"reason": "no_edge"}, help="Sessions refused")
        return json_error(503, "no healthy edge", reason=(
            f"no edge has reported healthy in the last {rt.registry.stale_after_s:g} s"), headers={"Retry-After": "1"})
    session_id = uuid.uuid4().hex
    ttl_s = rt.config.url_ttl_s
    urls = manifest_urls(title, edges, key=rt.config.url_signing_key, session_id=session_id,
                         expires_at=int(rt.wall()) + ttl_s)
    metrics.inc("playback_sessions_total", help="Sessions started")
    add_log_fields(request, session_id=session_id, edges=[e.edge_id for e in edges])
    body = {"session_id": session_id, "manifest_urls": urls, "license_url": rt.config.license_url,
            "expires_in": ttl_s}
    if (rt.config.content_root / title / MASTER_PLAYLIST_NAME).is_file():
        body["hls_urls"] = hls_urls(urls)
    return web.json_response(body, headers={"Cache-Control": "no-store"})


async def _heartbeat(request: web.Request) -> web.Response:
    rt = request.app[_RUNTIME]
    # Only holders of the stack's URL key may steer clients: edges send a bearer derived from it.
    presented = request.headers.get("Authorization", "").removeprefix("Bearer ").strip().encode()
    if not hmac.compare_digest(presented, rt.edge_secret):
        return json_error(401, "heartbeat needs the edges' internal bearer token")
    try:
        status = parse_heartbeat(await read_json_body(request, max_bytes=256 * 1024), now=rt.monotonic())
        rt.registry.heartbeat(status)
    except BadRequest as exc:
        return json_error(400, str(exc))
    request.app[METRICS].set("playback_edges_live", len(rt.registry.live(rt.monotonic())),
                             help="Edges currently in the ranking")
    return web.json_response({"ok": True, "stale_after_s": rt.registry.stale_after_s})


async def _list_edges(request: web.Request) -> web.Response:
    rt = request.app[_RUNTIME]
    now = rt.monotonic()
    return web.json_response({"edges": [
        {"edge_id": e.edge_id, "url": e.url, "healthy": e.healthy, "load": e.load, "live": rt.registry.is_live(e, now),
         "last_seen_s_ago": round(now - e.last_seen_s, 3), "cached_titles": sorted(e.cached_titles)}
        for e in sorted(rt.registry.all(), key=lambda e: e.edge_id)]})


def create_app(config: PlaybackConfig, *, tokens: TokenService | None = None, monotonic: Clock = time.monotonic,
               wall: Clock = time.time) -> web.Application:
    app = web.Application(middlewares=common_middlewares(config.allowed_origins), client_max_size=256 * 1024)
    registry = EdgeRegistry(stale_after_s=config.heartbeat_s * config.missed_heartbeats, max_edges=config.max_edges)
    app[_RUNTIME] = _Runtime(config=config, registry=registry, monotonic=monotonic, wall=wall,
                             edge_secret=urlsign.internal_token(config.url_signing_key).encode())
    app[TOKENS] = tokens or TokenService(config.tokens)
    app[METRICS] = Metrics()
    app.router.add_post("/playback/{title}", _start_playback)
    app.router.add_post("/internal/edges/heartbeat", _heartbeat)
    app.router.add_get("/internal/edges", _list_edges)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_handler)
    return app
