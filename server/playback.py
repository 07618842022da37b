"""The playback API (the steering role): which edges should serve this session, with signed URLs.

Edges report themselves by heartbeat (`POST /internal/edges/heartbeat`, with the stack's internal
credential); one silent for `missed_heartbeats` intervals leaves the ranking. A title's edges are ranked by cost: rendezvous
(highest-random-weight) hashing of the title over edge ids gives cache affinity that moves only
1/N of titles when an edge comes or goes (Thaler & Ravishankar 1998), traded off against reported
load and whether the edge says it holds the title already. With regions (server/regions.py,
docs/STEERING.md) each client gets its own ranking: by locality (ISP-embedded, nearby, far), whether
the edge holds the title, load against capacity, then the same affinity.

Segment URLs are signed here alone, bound to the session and login that asked and short-lived: a
player renews them as it plays (`POST /playback/{title}/renew`), and each renewal re-checks the
token, its revocation and the entitlement.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass

from aiohttp import web

from server import urlsign
from server.config import PlaybackConfig, SteeringWeights
from server.formats.hls import MASTER_PLAYLIST_NAME
from server.formats.names import MANIFEST_NAME, is_valid_title
from server.httpapi import BadRequest, json_error, read_json_body
from server.internal import InternalCredential, healthz, refused, service_middlewares
from server.observability import METRICS, Metrics, add_log_fields, metrics_handler
from server.regions import REGION_HEADER, Placement, Ranked, place_client, rank_for_client
from server.revocation import StoreUnavailable
from server.tokens import TOKENS, Claims, TokenError, TokenVerifier, authenticate, unauthorized, unavailable

log = logging.getLogger("abrkit.playback")

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
    """The edges heard from; an edge is live while healthy and heard within `stale_after_s`. When none
    is, `fail_static` gives those that last reported healthy within `fail_static_s` (0: none)."""

    def __init__(self, *, stale_after_s: float, max_edges: int = 1024, fail_static_s: float = 0.0) -> None:
        self.stale_after_s = stale_after_s
        self.fail_static_s = fail_static_s
        self.max_edges = max_edges
        self.failing_static = False  # `steerable` gives `fail_static`'s edges now (logged once per episode)
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

    def fail_static(self, now: float) -> list[EdgeStatus]:
        """The edges to steer to when none is live: every one whose last heartbeat, within
        `fail_static_s`, said healthy. No edge being live more often means the heartbeats are late
        (the steering API or the machine busy) than that every edge is down; an edge that said it is
        unhealthy stays out. As a load balancer's panic mode or fail-open, it costs a client of a
        truly dead stack a failed fetch instead of a 503."""
        return [e for e in self._edges.values() if e.healthy and now - e.last_seen_s <= self.fail_static_s]

    def steerable(self, now: float) -> list[EdgeStatus]:
        """The edges steering ranks: the live ones; only when no edge at all is live, `fail_static`'s
        (`failing_static` says which, and each change is logged once). Decided on the whole fleet, not
        on one client's ranking: an edge late while others are heard is down, not late."""
        live = self.live(now)
        late = [] if live else self.fail_static(now)
        if bool(late) != self.failing_static:
            if late:
                log.warning("no edge heard within %g s: steering to the %d edge(s) last heard healthy, up to "
                            "%.2f s ago, until one is heard again (fail static)", self.stale_after_s, len(late),
                            max(now - e.last_seen_s for e in late))
            elif live:
                log.info("edges heard again: steering by live edges only")
            self.failing_static = bool(late)
        return late or live

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


def steer(title: str, edges: Sequence[EdgeStatus], config: PlaybackConfig,
          client: Placement | None) -> tuple[list[EdgeStatus], list[Ranked]]:
    """The edges for `title`, best first: by region, health, load and title (server/regions.py) when
    the stack has regions, else by `rank_edges`; with the ranking's reasons (empty without regions)."""
    if config.regions is None or client is None:
        return rank_edges(title, edges, config.weights), []
    by_affinity = sorted(edges, key=lambda e: (-rendezvous_weight(title, e.edge_id), e.edge_id))
    ranking = rank_for_client(title, edges, client, config.regions,
                              affinity={e.edge_id: i for i, e in enumerate(by_affinity)},
                              affinity_weight=config.weights.affinity_weight, load_weight=config.weights.load_weight)
    by_id = {e.edge_id: e for e in edges}
    return [by_id[r.edge_id] for r in ranking], ranking


def _placement(request: web.Request, rt: _Runtime) -> Placement | None:
    """Where the client is (None: the stack has no regions). Only a request carrying the internal
    credential (the gateway's) may name the client's address or a front door's region claim; anyone
    may say which region they are in (`?region=`), which moves only their own ranking."""
    regions = rt.config.regions
    if regions is None:
        return None
    vouched = rt.internal.present(request)
    forwarded = request.headers.get("X-Forwarded-For", "").split(",")[-1].strip() if vouched else ""
    return place_client(regions, proxy_claim=request.headers.get(REGION_HEADER) if vouched else None,
                        address=forwarded or request.remote, hint=request.query.get("region"))


def manifest_urls(title: str, edges: Sequence[EdgeStatus], *, signer: urlsign.UrlSigner,
                  grant: urlsign.UrlGrant) -> list[str]:
    """One signed MPD URL per edge, all with the same token (it covers `/<title>/`)."""
    path = urlsign.signed_path(signer.sign(grant), f"/{title}/manifest.mpd")
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
    signer: urlsign.UrlSigner
    internal: InternalCredential


_RUNTIME = web.AppKey("abrkit_playback", _Runtime)
_SESSION_ID_RE = re.compile(r"^[0-9a-f]{32}$")


async def _start_playback(request: web.Request) -> web.Response:
    """A new session: its id, signed manifest URLs on every live edge (best first), the license URL."""
    return await _session(request, uuid.uuid4().hex)


async def _renew(request: web.Request) -> web.Response:
    """`{"session_id"}` of a running session: the same answer with fresh URLs, if the token (which may
    have been refreshed meanwhile) is still valid and entitled to the title."""
    try:
        body = await read_json_body(request, max_bytes=4096)
        session_id = body.get("session_id") if isinstance(body, dict) else None
        if not isinstance(session_id, str) or not _SESSION_ID_RE.match(session_id):
            raise BadRequest("'session_id' must be the session id this API gave")
    except BadRequest as exc:
        return json_error(400, str(exc))
    return await _session(request, session_id, renewal=True)


async def _session(request: web.Request, session_id: str, *, renewal: bool = False) -> web.Response:
    rt = request.app[_RUNTIME]
    try:
        claims = await authenticate(request)
    except TokenError as exc:
        return unauthorized(exc)
    except StoreUnavailable as exc:
        return unavailable(exc)
    title = request.match_info["title"]
    add_log_fields(request, sub=claims.subject, title=title)
    if not is_valid_title(title):
        return json_error(404, "unknown title")
    # Entitlement before existence, so a user cannot probe the catalogue for titles they may not see.
    if not claims.entitled_to(title):
        return json_error(403, "not entitled to this title", title=title)
    live_source = rt.config.live_titles.get(title)  # a live channel: the title it loops
    if live_source is None and not (rt.config.content_root / title / "manifest.mpd").is_file():
        return json_error(404, "unknown title", title=title)
    try:
        client = _placement(request, rt)
    except ValueError as exc:
        return json_error(400, str(exc))
    candidates = rt.registry.steerable(rt.monotonic())
    edges, ranking = steer(title, candidates, rt.config, client)
    metrics = request.app[METRICS]
    if rt.registry.failing_static and edges:
        metrics.inc("playback_fail_static_total", help="Sessions steered to edges whose heartbeats were late")
    if not edges:
        metrics.inc("playback_refused_total", labels={"reason": "no_edge"}, help="Sessions refused")
        reason = (f"no edge has reported healthy in the last {rt.registry.stale_after_s:g} s"
                  + (f" (nor in the last {rt.registry.fail_static_s:g} s)" if rt.registry.fail_static_s else "")
                  if not candidates else f"none of the {len(candidates)} live edge(s) is ranked for this client")
        return json_error(503, "no healthy edge", reason=reason, headers={"Retry-After": "1"})
    ttl_s = rt.config.url_ttl_s
    region = client.region if client is not None else ""
    urls = manifest_urls(title, edges, signer=rt.signer, grant=_grant(rt, title, session_id, claims, region))
    if renewal:
        metrics.inc("playback_renewals_total", help="Signed URLs renewed for running sessions")
    else:
        metrics.inc("playback_sessions_total", help="Sessions started")
    add_log_fields(request, session_id=session_id, edges=[e.edge_id for e in edges])
    body = {"session_id": session_id, "manifest_urls": urls, "license_url": rt.config.license_url,
            "expires_in": ttl_s}
    if (rt.config.content_root / (live_source or title) / MASTER_PLAYLIST_NAME).is_file():
        body["hls_urls"] = hls_urls(urls)
    if live_source is not None:
        body["live"] = True
    if client is not None:
        add_log_fields(request, region=client.region, placed_by=client.source)
        body["region"], body["placed_by"] = client.region, client.source
        body["steering"] = [{"edge_id": r.edge_id, "region": r.region, "reason": r.reason, "rtt_ms": r.rtt_ms}
                            for r in ranking]
    return web.json_response(body, headers={"Cache-Control": "no-store"})


def _grant(rt: _Runtime, title: str, session_id: str, claims: Claims, region: str) -> urlsign.UrlGrant:
    now = rt.wall()
    return urlsign.UrlGrant(path_prefix=f"/{title}/", expires_at=math.ceil(now + rt.config.url_ttl_s),
                            session_id=session_id, subject=claims.subject, family=claims.family,
                            issued_at=round(now, 3), region=region)


async def _heartbeat(request: web.Request) -> web.Response:
    rt = request.app[_RUNTIME]
    if not rt.internal.present(request):  # only the stack's edges may steer clients
        return refused()
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
    if not rt.internal.present(request):
        return refused()
    now = rt.monotonic()
    return web.json_response({"edges": [
        {"edge_id": e.edge_id, "url": e.url, "healthy": e.healthy, "load": e.load, "live": rt.registry.is_live(e, now),
         "last_seen_s_ago": round(now - e.last_seen_s, 3), "cached_titles": sorted(e.cached_titles)}
        for e in sorted(rt.registry.all(), key=lambda e: e.edge_id)]})


def create_app(config: PlaybackConfig, *, tokens: TokenVerifier | None = None, monotonic: Clock = time.monotonic,
               wall: Clock = time.time) -> web.Application:
    app = web.Application(middlewares=service_middlewares(config.allowed_origins, config.internal_token),
                          client_max_size=256 * 1024)
    registry = EdgeRegistry(stale_after_s=config.heartbeat_s * config.missed_heartbeats, max_edges=config.max_edges,
                            fail_static_s=config.heartbeat_s * config.fail_static_heartbeats)
    app[_RUNTIME] = _Runtime(config=config, registry=registry, monotonic=monotonic, wall=wall,
                             signer=urlsign.UrlSigner(config.url_signing_key),
                             internal=InternalCredential(config.internal_token))
    app[TOKENS] = tokens or TokenVerifier(config.tokens, clock=wall)
    app[METRICS] = Metrics()

    async def close_store(app: web.Application) -> AsyncIterator[None]:
        yield
        if tokens is None:
            app[TOKENS].close()

    app.cleanup_ctx.append(close_store)
    app.router.add_post("/playback/{title}", _start_playback)
    app.router.add_post("/playback/{title}/renew", _renew)
    app.router.add_post("/internal/edges/heartbeat", _heartbeat)
    app.router.add_get("/internal/edges", _list_edges)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_handler)
    return app
