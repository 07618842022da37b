"""Edge cache: a caching reverse proxy in front of one origin, serving signed segment URLs.

`GET|HEAD /s/<token>/<title>/<file>` is verified with the playback API's public key
(`server.urlsign.UrlVerifier`) and against the revocation store (a revoked login's URLs are refused
within `revocation_recheck_s`), then served from a byte-bounded LRU (`X-Cache: HIT`) or fetched once from `<origin_url>/<title>/<file>` however many
clients miss at the same time (`X-Cache: MISS`). Range requests (rules in server/httpcache.py), MPD
license-URL rewriting, CMCD (CTA-5004) logging, pre-positioning, `/metrics`, `/healthz` and steering
heartbeats are here too; `/internal/*` needs the stack's internal credential, from any peer; server/edgeworkers.py runs it on its own, with N worker processes sharing one
port. See docs/EDGE.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape as xml_escape

import aiohttp
from aiohttp import web

from server.cache import ByteLRU, Coalescer
from server.config import EdgeConfig
from server.content import REPRESENTATION_ID_PATTERN, classify
from server.edgecmcd import CmcdLogFields
from server.edgefast import EdgeRunner
from server.edgelive import LiveEdge
from server.edgemetrics import EdgeStats, add_siblings, render_metrics, snapshot
from server.edgeorigin import STREAM_CHUNK_BYTES, CachedObject, Origin, OriginError, TooLarge
from server.edgepeers import FANOUT_HEADER, WorkerGroup, send_heartbeats
from server.edgetokens import VerifiedToken, check_revocation
from server.faults import FaultState, add_fault_routes, fault_middleware
from server.formats.cmcd import CMCD_HEADERS
from server.formats.dash import LAURL_PLACEHOLDER
from server.formats.names import MANIFEST_NAME, SEGMENTS_NAME, is_valid_title
from server.formats.urls import SIGNED_PREFIX, url_host
from server.httpapi import CorsPolicy, cors_middleware, json_error
from server.httpcache import RangeNotSatisfiable, etag_matches, if_range_matches, parse_range
from server.internal import InternalCredential, internal_headers
from server.live.origin import LIVE_CLOCK
from server.live.origin import time_handler as live_time_handler
from server.observability import (
    IDLE_TIMEOUT_S,
    REQUEST_ID_HEADER,
    DeferredLogFields,
    access_log,
    add_deferred_log_fields,
    add_log_fields,
    request_id,
    request_id_middleware,
    service_runner,
)
from server.revocation import RevocationStore, StoreUnavailable
from server.urlsign import SignatureError, UrlVerifier, check_content_path, split_signed_path

MAX_PREPOSITION_OBJECTS = 100_000
# What a browser player may send to an edge (ranges, revalidation, CMCD) and read from its answers.
_CORS_ALLOW_HEADERS = ("Range", "If-Range", "If-None-Match", "If-Modified-Since", "X-Request-ID")
_CORS_EXPOSE_HEADERS = ("Content-Length", "Content-Range", "Content-Type", "ETag", "Last-Modified", "Cache-Control",
                        "X-Cache", "X-Request-ID", "Retry-After")

_VERIFIED_TOKENS_MAX = 16_384
_DIRECT_WRITE_BYTES = 64 * 1024
_TCP_CORK = getattr(socket, "TCP_CORK", 3)  # Linux; elsewhere setsockopt fails and nothing is corked

log = logging.getLogger("abrkit.edge")


# --- the edge -------------------------------------------------------------------------------------

class Edge:
    """The state and handlers of one edge app (one per `create_app`)."""

    def __init__(self, config: EdgeConfig, group: WorkerGroup | None = None,
                 faults: FaultState | None = None) -> None:
        self.config = config
        self.faults = faults if faults is not None else FaultState()  # chaos runs: server/faults.py
        self.group = group
        self.cache: ByteLRU[CachedObject] = ByteLRU(config.cache_bytes)
        self.coalescer: Coalescer[CachedObject] = Coalescer()
        self.stats = EdgeStats()
        self.active = 0
        self.bound_url: str | None = None
        self.session: aiohttp.ClientSession | None = None  # to the origin and sibling workers, while the app runs
        self._verifier = UrlVerifier(config.url_verify_key)
        self._verified: dict[str, VerifiedToken] = {}
        self.revocations: RevocationStore | None = None  # opened with the app (config.revocations_path)
        self.origin = Origin(config, self.stats)
        self.internal = InternalCredential(config.internal_token)
        self.internal_headers = internal_headers(config.internal_token) if config.internal_token else {}
        self._laurl = xml_escape(config.license_url, {'"': "&quot;"}).encode() if config.license_url else None
        self._placeholder = LAURL_PLACEHOLDER.encode()
        self.cors = CorsPolicy(allowed_origins=config.allowed_origins, allow_methods=("GET", "HEAD"),
                               allow_headers=(*_CORS_ALLOW_HEADERS, *CMCD_HEADERS), expose_headers=_CORS_EXPOSE_HEADERS)
        self._stream_timeout = aiohttp.ClientTimeout(total=None, connect=config.origin_timeout_s,
                                                     sock_read=config.origin_timeout_s)
        self.live = LiveEdge(self) if config.live_channels else None  # live channels: server/edgelive.py

    # -- identity --

    def public_url(self) -> str | None:
        """The URL reported to steering: `public_url`, else the bound one (known once a site started)."""
        if self.config.public_url:
            return self.config.public_url
        if self.bound_url:
            return self.bound_url
        if self.config.port:
            return f"http://{url_host(self.config.host)}:{self.config.port}"
        return None

    def cached_titles(self) -> list[str]:
        return sorted({key.split("/", 2)[1] for key in self.cache.keys()})

    def load(self) -> int:
        return self.group.total_active() if self.group else self.active

    # -- content --

    async def handle_content(self, request: web.Request) -> web.StreamResponse:
        self.active += 1
        group = self.group
        if group is not None:
            group.active_requests[group.index] = self.active
        try:
            response = await self._serve(request)
        finally:
            self.active -= 1
            if group is not None:
                group.active_requests[group.index] = self.active
        self.stats.by_status[response.status] += 1
        return response

    def _verified_content_path(self, path: str) -> tuple[VerifiedToken, str | None]:
        """The token's verification and the content path the signed request path grants (None: not a
        file of the title layout); `SignatureError` if it grants none.

        Verifying a signature is the costliest step of a cache hit, and a player asks for many objects
        with one token: each token's grant is remembered until it expires (successes only, bounded,
        oldest forgotten first); the prefix and layout checks still run per path (`hit_or_none` runs
        the same checks on remembered tokens only).
        """
        now = time.time()
        token, content_path = split_signed_path(path)
        check_content_path(content_path)
        known = self._verified.get(token)
        if known is None or now >= known.grant.expires_at:
            known = VerifiedToken(grant=self._verifier.verify(token, now=now))
            if len(self._verified) >= _VERIFIED_TOKENS_MAX:
                del self._verified[next(iter(self._verified))]
            self._verified[token] = known
        if not content_path.startswith(known.grant.path_prefix):
            raise SignatureError("URL token does not cover this path")
        return known, (content_path if _content_path_ok(content_path) else None)

    async def _revoked(self, verified: VerifiedToken) -> bool:
        """Whether the URL's login was revoked (or its user changed) since it was signed: asked of the
        store at most every `revocation_recheck_s` per token; `StoreUnavailable` if it cannot say."""
        store = self.revocations
        if store is None:
            return False
        now = time.monotonic()
        if verified.checked_at_s is not None and now - verified.checked_at_s < self.config.revocation_recheck_s:
            return verified.revoked
        return await asyncio.shield(check_revocation(verified, store))

    def hit_or_none(self, path: str, now_s: float) -> CachedObject | None:
        """The fresh cached object that a plain GET of the request path `path` may
        be answered with at once (server/edgefast.py), else None: anything that needs `_serve` (a bad
        or unverified signature, a revocation check due or a revoked login, an emulated RTT, a live
        channel, a miss or a stale object, an MPD, a fault in force) declines. `now_s`: loop clock."""
        if not path.startswith(SIGNED_PREFIX) or self.faults.spec is not None:
            return None
        # `_verified_content_path`'s checks for a remembered token, in the order of their cost;
        # any failure declines, and `_serve` then gives the answer.
        try:
            token, content_path = split_signed_path(path)
        except SignatureError:
            return None
        verified = self._verified.get(token)
        if (verified is None or time.time() >= verified.grant.expires_at
                or not content_path.startswith(verified.grant.path_prefix) or not _layout_ok(content_path)):
            return None
        store = self.revocations
        if store is not None:
            checked_at_s = verified.checked_at_s
            if checked_at_s is None or verified.revoked:
                return None
            age_s = time.monotonic() - checked_at_s
            if age_s >= self.config.revocation_recheck_s / 2:
                # Ask again in the background while this answer is still fresh, so that hits do not
                # fall back to `_serve` (and wait) each time the check comes due.
                if age_s >= self.config.revocation_recheck_s:
                    return None
                check_revocation(verified, store)
        region = verified.grant.region
        if region and self.config.rtt_ms.get(region):
            return None
        if self.live is not None and self.live.owns(content_path):
            return None
        obj = self.cache.get(content_path)
        if obj is None or obj.expires_at_s <= now_s or obj.hit_head is None:
            return None
        return obj

    def cmcd_log_fields(self, raw_query: str, headers: Mapping[str, str]) -> DeferredLogFields:
        """A request's CMCD as deferred access-log fields (parsed and counted when the line is written)."""
        return CmcdLogFields(raw_query, headers, self.stats)

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        method = request.method
        if method != "GET" and method != "HEAD":
            if method == "OPTIONS":  # not a preflight (those are answered by the CORS middleware)
                return web.Response(status=204, headers={"Allow": "GET, HEAD, OPTIONS"})
            return self._error(request, 405, f"method {method} not allowed",
                               {"Allow": "GET, HEAD, OPTIONS"})
        path = request.path
        content_path: str | None
        if path.startswith(SIGNED_PREFIX):
            try:
                verified, content_path = self._verified_content_path(path)
                if await self._revoked(verified):
                    return self._error(request, 403, "URL of a session that was ended")
                rtt_ms = self.config.rtt_ms.get(verified.grant.region) if verified.grant.region else None
                if rtt_ms:  # the emulated distance to the client's region (server/regions.py): one RTT a request
                    await asyncio.sleep(rtt_ms / 1000.0)
            except SignatureError as exc:
                return self._error(request, 403, str(exc))
            except StoreUnavailable:
                return self._error(request, 503, "revocations unavailable, try again shortly", {"Retry-After": "2"})
        elif self.config.require_signature:
            return self._error(request, 403, "URL is not signed")
        else:
            content_path = path if _content_path_ok(path) else None
        if content_path is None:
            return self._error(request, 404, "not found (not a file of the title layout)")
        if self.live is not None and self.live.owns(content_path):
            return await self.live.serve(request, content_path)

        log_enabled = access_log.isEnabledFor(logging.INFO)
        if log_enabled:
            # CMCD only goes into the access log: looked for and parsed when its line is written.
            add_deferred_log_fields(request, CmcdLogFields(request.rel_url.raw_query_string, request.headers,
                                                            self.stats))

        obj = self.cache.get(content_path)
        loop_now = asyncio.get_running_loop().time()
        if obj is not None and obj.expires_at_s > loop_now:
            self.stats.cache_hits += 1
            x_cache_headers = obj.hit_headers
        else:
            self.stats.cache_misses += 1
            stale = obj
            try:
                obj, _ = await self.coalescer.run(
                    content_path, lambda: self._fetch(content_path, stale, request_id(request)))
            except TooLarge:
                return await self._stream_through(request, content_path)
            except OriginError as exc:
                if stale is None:
                    return self._error(request, exc.status, exc.message)
                log.warning("origin failed for %s (%s); serving the stale copy", content_path, exc.message)
                self.stats.stale_served += 1
                obj = stale
                x_cache_headers = stale.hit_headers
            else:
                # A revalidated object (the origin said 304) keeps its body: served from the cache.
                revalidated = stale is not None and obj.body is stale.body
                x_cache_headers = obj.hit_headers if revalidated else obj.miss_headers
        if log_enabled:
            add_log_fields(request, edge_id=self.config.edge_id, cache=x_cache_headers["X-Cache"])
        return await self._respond(request, obj, x_cache_headers)

    async def _respond(self, request: web.Request, obj: CachedObject, base: Mapping[str, str]) -> web.StreamResponse:
        headers: Mapping[str, str] = base
        if_none_match = request.headers.get("If-None-Match")
        if if_none_match is not None and etag_matches(if_none_match, obj.etag):
            return web.Response(status=304, headers={k: v for k, v in headers.items() if k != "Content-Type"})
        body: bytes | memoryview = obj.body
        if obj.is_manifest and self._laurl is not None:
            body = bytes(obj.body).replace(self._placeholder, self._laurl)
        status = 200
        range_header = request.headers.get("Range")
        if_range = request.headers.get("If-Range")
        if range_header is not None and (if_range is None or if_range_matches(if_range, obj.etag, obj.last_modified)):
            try:
                span = parse_range(range_header, len(body))
            except RangeNotSatisfiable:
                return self._error(request, 416, "range not satisfiable",
                                   {"Content-Range": f"bytes */{len(body)}"})
            if span is not None:
                first, last = span
                headers = {**headers, "Content-Range": f"bytes {first}-{last}/{len(body)}"}
                body = memoryview(body)[first:last + 1]
                status = 206
        if request.method == "HEAD":
            return web.Response(body=body, status=status, headers=headers)
        self.stats.bytes_served += len(body)
        if len(body) < _DIRECT_WRITE_BYTES:
            return web.Response(body=body, status=status, headers=headers)
        # web.Response joins headers and body into one new bytes object before writing (on Python
        # < 3.12.9): a full copy of every large body. Headers first, then the cached bytes as they are,
        # corked (as nginx's tcp_nopush): the headers leave in the body's first packet instead of
        # costing a send of their own (on loopback each send is a trip through the whole TCP stack).
        response = web.StreamResponse(status=status, headers=headers)
        self.cors.add_grant(response.headers, request.headers.get("Origin"))  # the middleware comes too late
        response.content_length = len(body)
        response.headers[REQUEST_ID_HEADER] = request_id(request)  # the middleware comes too late
        sock = _corked(request)
        try:
            await response.prepare(request)
            await response.write(body)
            await response.write_eof()
        except ConnectionResetError:
            response.force_close()  # the client went away mid-response: nothing to tell it
        finally:
            if sock is not None:
                _uncork(sock)
        return response

    async def _fetch(self, content_path: str, stale: CachedObject | None, req_id: str) -> CachedObject:
        """One origin GET (conditional when revalidating `stale`); stores the object if cacheable."""
        obj, cacheable = await self.origin.fetch(content_path, stale, req_id)
        if cacheable:
            self.cache.put(content_path, obj, obj.size_bytes)
        return obj

    async def _stream_through(self, request: web.Request, content_path: str) -> web.StreamResponse:
        """Relay an object too big to cache, Range and all, without holding it in memory."""
        session = self.origin.session
        assert session is not None
        self.stats.passthrough += 1
        headers = {"Accept-Encoding": "identity", "X-Request-ID": request_id(request), **self.internal_headers}
        for name in ("Range", "If-Range", "If-None-Match", "If-Modified-Since"):
            if name in request.headers:
                headers[name] = request.headers[name]
        try:
            async with session.request(request.method, self.origin.url(content_path), headers=headers,
                                            allow_redirects=False, timeout=self._stream_timeout) as upstream:
                if upstream.status in (404, 410):
                    return self._error(request, 404, "not found")
                if upstream.status not in (200, 206, 304, 416):
                    return self._error(request, 502, f"origin answered {upstream.status}")
                out_headers = {name: upstream.headers[name] for name in
                               ("Content-Type", "Content-Length", "Content-Range", "ETag", "Last-Modified",
                                "Cache-Control", "Accept-Ranges") if name in upstream.headers}
                out_headers["X-Cache"] = "MISS"
                response = web.StreamResponse(status=upstream.status, headers=out_headers)
                self.cors.add_grant(response.headers, request.headers.get("Origin"))
                await response.prepare(request)
                try:
                    if request.method != "HEAD":
                        async for chunk in upstream.content.iter_chunked(STREAM_CHUNK_BYTES):
                            await response.write(chunk)
                            self.stats.bytes_served += len(chunk)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    # Headers are gone: all we can do is cut the connection so the client sees a short body.
                    log.warning("origin stream for %s broke: %s", content_path, type(exc).__name__)
                    response.force_close()
                    return response
                await response.write_eof()
                return response
        except TimeoutError:
            return self._error(request, 504, "origin timed out")
        except aiohttp.ClientError as exc:
            return self._error(request, 502, f"origin unreachable: {type(exc).__name__}")

    def _error(self, request: web.Request, status: int, message: str,
               headers: Mapping[str, str] | None = None) -> web.Response:
        if access_log.isEnabledFor(logging.INFO):
            add_log_fields(request, edge_id=self.config.edge_id, error=message)
        return json_error(status, message, headers=headers)

    # -- internal endpoints --

    def internal_allowed(self, request: web.Request) -> bool:
        """Whether the request carries the stack's internal credential (a loopback peer alone is not enough:
        anything on the host, or a proxy in front of it, is one)."""
        return self.internal.present(request)

    async def handle_preposition(self, request: web.Request) -> web.Response:
        if not self.internal_allowed(request):
            return self._error(request, 403, "pre-positioning needs the internal credential")
        title = request.match_info["title"]
        if not is_valid_title(title):
            return self._error(request, 400, "bad title")
        try:
            selection = PrepositionSelection.from_query(request.query)
        except ValueError as exc:
            return self._error(request, 400, str(exc))
        try:
            paths = await self._title_paths(title, request_id(request), selection)
        except OriginError as exc:
            return self._error(request, exc.status, f"segment index: {exc.message}")
        result = await self._warm(paths, request_id(request))
        result["title"] = title
        if self.group is not None and FANOUT_HEADER not in request.headers:
            # A sibling warms the same title from the same origin: as long as this worker took.
            no_timeout = aiohttp.ClientTimeout(total=None, connect=self.config.origin_timeout_s)
            for sibling in await self._fan_out("POST", request.path_qs, request, no_timeout):
                for key in ("fetched", "already_cached", "failed", "fetched_bytes"):
                    result[key] += int(sibling.get(key, 0))
                result["workers"] += 1
        return web.json_response(result, status=200 if result["failed"] == 0 else 502)

    async def _title_paths(self, title: str, req_id: str, selection: PrepositionSelection) -> list[str]:
        index_path = f"/{title}/{SEGMENTS_NAME}"
        try:
            index_obj, _ = await self.coalescer.run(index_path, lambda: self._fetch(index_path, None, req_id))
        except TooLarge:
            raise OriginError(502, "segment index too large") from None
        try:
            index = json.loads(bytes(index_obj.body))
            paths = [f"/{title}/{MANIFEST_NAME}"]
            listed: set[str] = set()
            for kind in ("video", "audio"):
                for rep in index.get(kind, []):
                    rep_id, sizes = str(rep["id"]), rep["segment_sizes_bytes"]
                    if not REPRESENTATION_ID_PATTERN.fullmatch(rep_id) or not isinstance(sizes, list):
                        raise ValueError(f"bad representation {rep_id!r}")
                    listed.add(rep_id)
                    if selection.renditions is not None and rep_id not in selection.renditions:
                        continue
                    count = len(sizes) if selection.segments is None else min(len(sizes), selection.segments)
                    paths.append(f"/{title}/{kind}/{rep_id}/init.mp4")
                    paths.extend(f"/{title}/{kind}/{rep_id}/{n}.m4s" for n in range(1, count + 1))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise OriginError(502, f"malformed {SEGMENTS_NAME}: {exc}") from None
        unknown = sorted((selection.renditions or frozenset()) - listed)
        if unknown:
            raise OriginError(404, f"{title} has no rendition {', '.join(unknown)}")
        if len(paths) > MAX_PREPOSITION_OBJECTS:
            raise OriginError(502, f"{SEGMENTS_NAME} lists too many objects")
        return paths

    async def _warm(self, paths: Sequence[str], req_id: str) -> dict[str, Any]:
        counts = {"objects": len(paths), "fetched": 0, "already_cached": 0, "failed": 0, "fetched_bytes": 0,
                  "workers": 1}
        errors: list[str] = []
        gate = asyncio.Semaphore(self.config.preposition_concurrency)
        loop = asyncio.get_running_loop()

        async def warm_one(path: str) -> None:
            cached = self.cache.get(path)
            if cached is not None and cached.expires_at_s > loop.time():
                counts["already_cached"] += 1
                return
            async with gate:
                try:
                    obj, _ = await self.coalescer.run(path, lambda: self._fetch(path, cached, req_id))
                except TooLarge:
                    counts["failed"] += 1
                    errors.append(f"{path}: larger than max_object_bytes")
                except OriginError as exc:
                    counts["failed"] += 1
                    errors.append(f"{path}: {exc.message}")
                else:
                    counts["fetched"] += 1
                    counts["fetched_bytes"] += obj.size_bytes

        await asyncio.gather(*(warm_one(path) for path in paths))
        result: dict[str, Any] = dict(counts)
        result["errors"] = errors[:20]
        return result

    async def _fan_out(self, method: str, path: str, request: web.Request,
                       timeout: aiohttp.ClientTimeout) -> list[dict[str, Any]]:
        """Ask every sibling worker the same (`WorkerGroup.ask_siblings`); their JSON answers."""
        assert self.group is not None and self.session is not None
        headers = {"X-Request-ID": request_id(request), **self.internal_headers}
        return await self.group.ask_siblings(self.session, method, path, headers=headers, timeout=timeout)

    async def handle_stats(self, request: web.Request) -> web.Response:
        if not self.internal_allowed(request):
            return self._error(request, 403, "internal endpoint")
        return web.json_response(snapshot(self.stats, self.cache, self.coalescer, self.active))

    async def handle_metrics(self, request: web.Request) -> web.Response:
        snap = snapshot(self.stats, self.cache, self.coalescer, self.active)
        if self.group is not None:
            timeout = aiohttp.ClientTimeout(total=self.config.origin_timeout_s)
            siblings = await self._fan_out("GET", "/internal/stats", request, timeout)
            add_siblings(snap, siblings, workers=len(self.group.control_ports), total_active=self.group.total_active())
        return web.Response(text=render_metrics(snap), content_type="text/plain", charset="utf-8",
                            headers={"Cache-Control": "no-store"})

    async def handle_healthz(self, request: web.Request) -> web.Response:
        return web.json_response({
            "status": "ok", "edge_id": self.config.edge_id, "url": self.public_url(),
            "worker": self.group.index if self.group else 0, "workers": self.config.workers,
            "cache_bytes": self.cache.used_bytes, "cache_capacity_bytes": self.cache.max_bytes,
            "cache_objects": len(self.cache), "active_requests": self.active,
        }, headers={"Cache-Control": "no-store"})

    # -- heartbeats --

    def heartbeat(self) -> dict[str, Any] | None:
        """What the steering API hears from this edge; None while it does not know its URL."""
        url = self.public_url()
        if url is None:
            return None
        return {"edge_id": self.config.edge_id, "url": url, "healthy": True, "load": self.load(),
                "cached_titles": self.cached_titles()}


@dataclass(frozen=True, kw_only=True, slots=True)
class PrepositionSelection:
    """What of a title to pre-position (`?renditions=v540p,a128k&segments=N`): those renditions (None:
    all) and of each its first N media segments (None: all); the MPD and init segments always."""

    renditions: frozenset[str] | None = None
    segments: int | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> PrepositionSelection:
        renditions = None
        if "renditions" in query:
            names = [n for n in query["renditions"].split(",") if n]
            if not names or not all(REPRESENTATION_ID_PATTERN.fullmatch(n) for n in names):
                raise ValueError("renditions must be a comma-separated list of representation ids")
            renditions = frozenset(names)
        segments = None
        if "segments" in query:
            text = query["segments"]
            if not text.isdigit() or not 1 <= int(text) <= MAX_PREPOSITION_OBJECTS:
                raise ValueError(f"segments must be a whole number in 1..{MAX_PREPOSITION_OBJECTS}")
            segments = int(text)
        return cls(renditions=renditions, segments=segments)


def _corked(request: web.BaseRequest) -> Any:
    """The request's TCP socket with TCP_CORK set (None where there is none, e.g. a Unix socket)."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    try:
        sock.setsockopt(socket.IPPROTO_TCP, _TCP_CORK, 1)
    except OSError:
        return None
    return sock


def _uncork(sock: Any) -> None:
    with contextlib.suppress(OSError):  # the connection may be gone already
        sock.setsockopt(socket.IPPROTO_TCP, _TCP_CORK, 0)


@functools.lru_cache(maxsize=65_536)
def _layout_ok(content_path: str) -> bool:
    """`check_content_path` and `_content_path_ok` both pass (pure: remembered for the fast path)."""
    try:
        check_content_path(content_path)
    except SignatureError:
        return False
    return _content_path_ok(content_path)


def _content_path_ok(content_path: str) -> bool:
    """Whether `/<title>/<file>` names a file of the title layout (server.content): nothing else,
    keys and traversal included, is worth asking the origin for."""
    title, _, relative = content_path[1:].partition("/")
    return is_valid_title(title) and classify(relative) is not None


EDGE = web.AppKey("abrkit_edge", Edge)


def create_app(config: EdgeConfig, *, group: WorkerGroup | None = None) -> web.Application:
    """The edge's aiohttp app; the origin client session (and heartbeats) start and stop with it."""
    faults = FaultState()  # chaos runs only: off until set through /internal/faults (server/faults.py)
    edge = Edge(config, group, faults)
    # CORS only when configured: the middleware is one more call on every request of the hot path.
    # Inside the faults: an injected failure carries no grant, as a failing CDN node's would not.
    cors = [cors_middleware(edge.cors)] if config.allowed_origins else []
    app = web.Application(middlewares=[request_id_middleware, fault_middleware(faults), *cors],
                          client_max_size=64 * 1024)
    app[EDGE] = edge
    if config.revocations_path is not None:
        app.cleanup_ctx.append(_revocations_ctx)
    app.cleanup_ctx.append(_client_session_ctx)
    if config.steering_url and (group is None or group.index == 0):
        app.cleanup_ctx.append(_heartbeat_ctx)
    app.router.add_get("/healthz", edge.handle_healthz)
    app.router.add_get("/metrics", edge.handle_metrics)
    if edge.live is not None:
        app[LIVE_CLOCK] = edge.live.clock  # a sped-up channel's clock (EdgeConfig.live_speed)
        app.router.add_get("/time", live_time_handler)
    app.router.add_post("/internal/preposition/{title}", edge.handle_preposition)
    app.router.add_get("/internal/stats", edge.handle_stats)
    add_fault_routes(app, faults, edge.internal.present)
    app.router.add_route("*", "/{path:.*}", edge.handle_content)
    return app


async def _revocations_ctx(app: web.Application) -> AsyncIterator[None]:
    edge = app[EDGE]
    assert edge.config.revocations_path is not None
    edge.revocations = RevocationStore(edge.config.revocations_path)  # raises (no start) if it cannot be opened
    yield
    store, edge.revocations = edge.revocations, None
    await asyncio.get_running_loop().run_in_executor(None, store.close)


async def _client_session_ctx(app: web.Application) -> AsyncIterator[None]:
    edge = app[EDGE]
    connector = aiohttp.TCPConnector(limit=256, limit_per_host=128, ttl_dns_cache=300)
    # trust_env=False (the default, stated): proxies from the environment must not redirect origin traffic.
    async with aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=False,
                                     raise_for_status=False) as session:
        edge.session = edge.origin.session = session
        yield
        edge.session = edge.origin.session = None


async def _heartbeat_ctx(app: web.Application) -> AsyncIterator[None]:
    edge = app[EDGE]
    async with aiohttp.ClientSession(trust_env=False) as session:
        config = edge.config
        assert config.steering_url is not None
        beats = send_heartbeats(session, edge_id=config.edge_id, steering_url=config.steering_url,
                                headers=edge.internal_headers, interval_s=config.heartbeat_s,
                                beat=edge.heartbeat, stats=edge.stats)
        task = asyncio.create_task(beats, name=f"edge-{config.edge_id}-heartbeat")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def set_bound_url(app: web.Application, url: str) -> None:
    """Tell an edge started on port 0 its URL (for heartbeats) once its site is listening."""
    app[EDGE].bound_url = url.rstrip("/")


# --- running it -----------------------------------------------------------------------------------

@dataclass(kw_only=True)
class RunningEdge:
    """An edge listening in this process (from `start_edge`); `stop()` shuts it down gracefully."""

    app: web.Application
    runner: web.AppRunner
    url: str
    port: int

    @property
    def edge(self) -> Edge:
        return self.app[EDGE]

    async def stop(self) -> None:
        await self.runner.cleanup()


def make_runner(app: web.Application, *, shutdown_timeout_s: float = 10.0,
                idle_timeout_s: float = IDLE_TIMEOUT_S) -> web.AppRunner:
    """The edge app's runner: the services' AppRunner (`server.observability.service_runner`) whose
    connections answer plain cache hits at once (server/edgefast.py)."""
    return service_runner(app, "edge", shutdown_timeout_s=shutdown_timeout_s, idle_timeout_s=idle_timeout_s,
                          runner_class=functools.partial(EdgeRunner, edge=app[EDGE]))


async def start_edge(config: EdgeConfig, *, group: WorkerGroup | None = None,
                     reuse_port: bool = False) -> RunningEdge:
    """Start one edge on `config.host:config.port` (0 = any free port) in the running loop."""
    app = create_app(config, group=group)
    runner = make_runner(app)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, reuse_port=reuse_port or None)
    await site.start()
    url = f"http://{url_host(config.host)}:{site.port}"
    set_bound_url(app, url)
    return RunningEdge(app=app, runner=runner, url=url, port=site.port)
