"""The edge's live side: live manifests with short lifetimes, one origin fetch per object however
many clients ask, and a segment still arriving from the origin streamed to every client that asks.

A request for a live channel's object (`EdgeConfig.live_channels`) joins the one fetch in flight
for it (coalescing), or starts it. The fetch appends the origin's bytes to a `LiveObject` as they
come (at low latency the origin sends a CMAF chunk at a time, server/live/origin.py); every client
of it gets what has arrived at once, then each new piece, over chunked transfer encoding. A complete
200 is kept for the origin's max-age (manifests: at most `live_manifest_max_age_s`; segments: as
long as the LRU keeps them); an error (a segment not yet available is a 404) is shared by the
clients that asked together and not kept. `live_coalescing=False` gives every request its own
origin fetch (the reference of bench/live_edge.py).

LL-HLS: a blocking playlist reload is one object per `(_HLS_msn, _HLS_part)` (its key and origin
request carry those two alone, in one spelling; a malformed one is a 400 here), kept as long as the
origin says since its query pins it (on the channel's clock: 1/K as long at K x); an ordinary LL-HLS
playlist is kept for half a part target.
Parts are objects like segments (bench/llhls_edge.py). An answer the origin held for the channel
(`Server-Timing: publish-wait`) tells each client how long it waited for it here: the origin's wait
less what of it had passed when the client joined the fetch (none for a cached answer).

Emulation (`EdgeConfig.live_player_clocks`): a request carrying `X-Abrkit-Channel-Lag` (its player's
clock runs that far behind the channel's, server/live/origin.py) gets its own origin fetch, with the
lag plus the time it spent here so far, and is neither coalesced nor kept: it is the channel as that
one player sees it. `/time` answers on the player's clock too.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from server.cache import ByteLRU
from server.content import ContentKind, classify
from server.formats.dash import TIME_URL_PLACEHOLDER
from server.formats.names import CHANNEL_LAG_HEADER
from server.formats.servertiming import publish_wait_header, publish_wait_s
from server.httpapi import json_error
from server.httpcache import RangeNotSatisfiable, parse_range, ttl_s
from server.live.channel import warped_clock
from server.live.hls import BadBlockingRequest, blocking_request
from server.live.origin import BadChannelLag, ChannelClock, channel_lag_s, lag_error
from server.observability import REQUEST_ID_HEADER, add_log_fields, request_id

if TYPE_CHECKING:
    from server.edge import Edge

log = logging.getLogger("abrkit.edge.live")

# Origin headers a client of a live object gets as they are.
_FORWARD = ("Content-Type", "Cache-Control", "ETag", "Last-Modified", "Retry-After", "X-Live-Chunks",
            CHANNEL_LAG_HEADER)


class LiveObject:
    """One origin response as it arrives: status and headers first, then the body piece by piece."""

    __slots__ = ("status", "headers", "pieces", "size_bytes", "_body", "done", "truncated", "expires_at_s", "_changed",
                 "_ready", "started_s", "publish_wait_s")

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.pieces: list[bytes] = []  # as they came: shared by every client, never copied per client
        self.size_bytes = 0
        self._body: bytes | None = None
        self.done = False
        self.truncated = False  # the origin's body broke off: never served as complete, never kept
        self.expires_at_s = 0.0  # loop time; while complete and fresh, served from the cache
        self._changed = asyncio.Event()
        self._ready = asyncio.Event()
        self.started_s = 0.0  # loop time the origin fetch began
        self.publish_wait_s = 0.0  # how long the origin held it for the channel (its Server-Timing)

    def start(self, status: int, headers: dict[str, str], *, publish_wait_s: float = 0.0) -> None:
        self.status, self.headers, self.publish_wait_s = status, headers, publish_wait_s
        self._ready.set()

    def waited_s(self, arrived_s: float) -> float:
        """How long a client that asked at loop time `arrived_s` waited here for the channel: the
        origin's wait less what of it had passed when the client joined (0 for a cache hit)."""
        return max(0.0, self.publish_wait_s - max(0.0, arrived_s - self.started_s))

    def append(self, piece: bytes) -> None:
        self.pieces.append(piece)
        self.size_bytes += len(piece)
        self._wake()

    def finish(self) -> None:
        self.done = True
        self._ready.set()
        self._wake()

    def fail(self, status: int, message: str) -> None:
        if not self._ready.is_set():
            self.status, self.headers = status, {"Content-Type": "application/json"}
            self.pieces = [f'{{"error": "{message}"}}'.encode()]
        else:
            self.truncated = True
        self.done = True
        self._ready.set()
        self._wake()

    @property
    def body(self) -> bytes:
        """All that has arrived, as one bytes object (joined once the object is complete)."""
        if self._body is not None:
            return self._body
        body = b"".join(self.pieces)
        if self.done:
            self._body = body
        return body

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def ready(self) -> None:
        await self._ready.wait()

    def changed(self) -> asyncio.Event:
        """Set at the next change (take it before looking, await its wait() after)."""
        return self._changed


@dataclass(kw_only=True)
class LiveStats:
    origin_fetches: int = 0
    coalesced: int = 0  # requests that joined a fetch in flight
    hits: int = 0  # requests served from a complete cached object
    streamed: int = 0  # responses sent while their object was still arriving
    by_path: dict[str, int] = field(default_factory=dict)  # origin fetches per content path (bounded)


class LiveEdge:
    """Live objects of one edge app."""

    def __init__(self, edge: Edge) -> None:
        self.edge = edge
        config = edge.config
        self.channels = frozenset(config.live_channels)
        self.coalescing = config.live_coalescing
        # Manifests age on the channel's clock: a channel K times faster changes K times as often.
        self.manifest_max_age_s = config.live_manifest_max_age_s / config.live_speed
        self.speed = config.live_speed
        # What `/time` answers (on a player's clock when it says how far behind, in emulation).
        self.clock = ChannelClock(warped_clock(config.live_speed, config.live_clock_origin_s),
                                  player_clocks=config.live_player_clocks)
        self.cache: ByteLRU[LiveObject] = ByteLRU(max(1, config.cache_bytes // 4))
        self.inflight: dict[str, LiveObject] = {}
        self.stats = LiveStats()
        self._tasks: set[asyncio.Task[None]] = set()
        self._timeout = aiohttp.ClientTimeout(total=None, connect=config.origin_timeout_s,
                                              sock_read=config.origin_timeout_s)

    def owns(self, content_path: str) -> bool:
        return content_path[1:].partition("/")[0] in self.channels

    async def serve(self, request: web.Request, content_path: str) -> web.StreamResponse:
        loop_now = asyncio.get_running_loop().time()
        try:
            lag_s = channel_lag_s(request, self.clock)
        except BadChannelLag as exc:
            return lag_error(exc)
        kind = classify(content_path[1:].partition("/")[2])
        key = content_path
        if kind is not None and kind[0] is ContentKind.PLAYLIST and kind[1] is not None:
            try:  # LL-HLS blocking reloads: one object per (msn, part), other parameters left out
                blocking = blocking_request(request.query)
            except BadBlockingRequest as exc:
                return json_error(400, f"blocking playlist reload: {exc}", headers={"Cache-Control": "no-store"})
            if blocking is not None:
                key = f"{content_path}?{blocking.query}"
        obj = self.cache.get(key) if lag_s is None else None
        stats = self.edge.stats  # the edge's /metrics count live requests with the rest
        if lag_s is not None:  # one player's view of the channel: its own fetch (module docstring)
            obj = self._start_fetch(key, request_id(request), lag_s=lag_s, arrived_s=self.clock())
            stats.cache_misses += 1
            label = "MISS"
        elif obj is not None and obj.expires_at_s > loop_now:
            self.stats.hits += 1
            stats.cache_hits += 1
            label = "HIT"
        else:
            obj = self.inflight.get(key) if self.coalescing else None
            if obj is not None:
                self.stats.coalesced += 1
                stats.cache_hits += 1
                label = "HIT-INFLIGHT"
            else:
                obj = self._start_fetch(key, request_id(request))
                stats.cache_misses += 1
                label = "MISS"
        add_log_fields(request, edge_id=self.edge.config.edge_id, cache=label)
        await obj.ready()
        if obj.status != 200 or (kind is not None and kind[0] is ContentKind.MANIFEST):
            while not obj.done:
                await obj.changed().wait()
        if obj.truncated and obj.done:
            return json_error(502, "origin broke off the response", headers={"Cache-Control": "no-store"})
        headers = {name: obj.headers[name] for name in _FORWARD if name in obj.headers}
        headers["X-Cache"] = label
        if (waited_s := obj.waited_s(loop_now)) > 0:  # this client's share of a blocking hold
            headers["Server-Timing"] = publish_wait_header(waited_s)
        if obj.status != 200:
            return web.Response(status=obj.status, body=obj.body, headers=headers)
        if kind is not None and kind[0] is ContentKind.MANIFEST:
            return web.Response(body=self._fill_placeholders(obj.body), headers=headers)
        if obj.done:
            return self._complete(request, obj, headers)
        return await self._stream(request, obj, headers)

    def _fill_placeholders(self, body: bytes) -> bytes:
        edge = self.edge
        if edge._laurl is not None:
            body = body.replace(edge._placeholder, edge._laurl)
        url = edge.public_url()
        if url is not None:
            body = body.replace(TIME_URL_PLACEHOLDER.encode(), f"{url}/time".encode())
        return body

    def _complete(self, request: web.Request, obj: LiveObject, headers: dict[str, str]) -> web.Response:
        body: bytes | memoryview = obj.body
        status = 200
        range_header = request.headers.get("Range")
        if range_header is not None:
            try:
                span = parse_range(range_header, len(body))
            except RangeNotSatisfiable:
                return json_error(416, "range not satisfiable", headers={"Content-Range": f"bytes */{len(body)}"})
            if span is not None:
                first, last = span
                headers["Content-Range"] = f"bytes {first}-{last}/{len(body)}"
                body, status = memoryview(body)[first:last + 1], 206
        self.edge.stats.bytes_served += len(body)
        return web.Response(body=body, status=status, headers=headers)

    async def _stream(self, request: web.Request, obj: LiveObject, headers: dict[str, str]) -> web.StreamResponse:
        """Send what has arrived, then each piece as it comes (Range is ignored while arriving: RFC
        9110 lets a server answer a range request with the whole representation)."""
        self.stats.streamed += 1
        response = web.StreamResponse(headers=headers)
        response.enable_chunked_encoding()
        # Prepared here, so the middlewares come too late for their headers.
        self.edge.cors.add_grant(response.headers, request.headers.get("Origin"))
        response.headers[REQUEST_ID_HEADER] = request_id(request)
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        sent = 0
        try:
            while True:
                changed = obj.changed()
                if sent < len(obj.pieces):
                    piece = obj.pieces[sent]
                    sent += 1
                    await response.write(piece)
                    self.edge.stats.bytes_served += len(piece)
                    continue
                if obj.done:
                    break
                await changed.wait()
            if obj.truncated:
                # No terminating chunk: the client sees a broken response, not a short segment.
                log.warning("origin broke off %s while it streamed; closing the client's connection", request.path)
                if request.transport is not None:
                    request.transport.close()
                return response
            await response.write_eof()
        except ConnectionResetError:  # the client went away mid-segment (a player seeking, abandoning)
            log.debug("client left while %s streamed", request.path)
        return response

    def _start_fetch(self, content_path: str, req_id: str, *, lag_s: float | None = None,
                     arrived_s: float = 0.0) -> LiveObject:
        """Fetch `content_path` (with a blocking reload's canonical query, the object's key)."""
        obj = LiveObject()
        obj.started_s = asyncio.get_running_loop().time()
        if self.coalescing and lag_s is None:
            self.inflight[content_path] = obj
        task = asyncio.get_running_loop().create_task(self._fetch(content_path, obj, req_id, lag_s, arrived_s))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return obj

    async def _fetch(self, content_path: str, obj: LiveObject, req_id: str, lag_s: float | None = None,
                     arrived_s: float = 0.0) -> None:
        edge = self.edge
        session = edge.session
        self.stats.origin_fetches += 1
        if len(self.stats.by_path) < 100_000:
            self.stats.by_path[content_path] = self.stats.by_path.get(content_path, 0) + 1
        started = time.perf_counter()
        try:
            if session is None:
                raise RuntimeError("the edge is not running")
            headers = {"X-Request-ID": req_id, **edge.internal_headers}
            if lag_s is not None:  # the player's clock stood still while the request was here too
                headers[CHANNEL_LAG_HEADER] = f"{lag_s + max(0.0, self.clock() - arrived_s):.6f}"
            async with session.get(edge.config.origin_url + content_path, headers=headers,
                                   timeout=self._timeout) as response:
                obj.start(response.status, {k: v for k, v in response.headers.items() if k in _FORWARD},
                          publish_wait_s=sum(publish_wait_s(v) for v in response.headers.getall("Server-Timing", ())))
                async for piece in response.content.iter_any():
                    obj.append(piece)
            obj.finish()
            edge.stats.origin_fetches["live_ok" if obj.status == 200 else f"live_{obj.status}"] += 1
        except (aiohttp.ClientError, asyncio.TimeoutError, RuntimeError) as exc:
            log.warning("live origin fetch of %s failed: %s", content_path, exc)
            edge.stats.origin_fetches["live_error"] += 1
            obj.fail(502, "origin unreachable")
        finally:
            edge.stats.origin_fetch_seconds += time.perf_counter() - started
            if self.inflight.get(content_path) is obj:
                del self.inflight[content_path]
        if obj.status == 200 and obj.done and not obj.truncated and lag_s is None:
            keep_s = ttl_s(obj.headers.get("Cache-Control"), 0.0)
            path, _, query = content_path.partition("?")
            kind = classify(path[1:].partition("/")[2])
            playlist = kind is not None and kind[0] in (ContentKind.MANIFEST, ContentKind.PLAYLIST)
            if playlist and keep_s is not None and query:
                # A blocking reload's answer is pinned by its query, kept as long as the origin says: on
                # the channel's clock (its max-age is a segment), else at 4x a client asking late for
                # a part gets a playlist 4 segments old where the origin would answer a current one.
                keep_s /= self.speed
            elif playlist and keep_s is not None:
                keep_s = min(keep_s, self.manifest_max_age_s)
                if (part_target_s := _part_target_s(obj.body)) is not None:
                    keep_s = min(keep_s, part_target_s / 2 / self.speed)  # an LL-HLS playlist changes every part
            if keep_s:
                obj.expires_at_s = asyncio.get_running_loop().time() + keep_s
                self.cache.put(content_path, obj, obj.size_bytes + 256)



_PART_INF = re.compile(rb"^#EXT-X-PART-INF:(?:.*,)?PART-TARGET=([0-9]+(?:\.[0-9]+)?)", re.MULTILINE)


def _part_target_s(playlist: bytes) -> float | None:
    """An LL-HLS playlist's PART-TARGET (None: it has no parts)."""
    match = _PART_INF.search(playlist, 0, 4096)
    return float(match[1]) if match is not None and float(match[1]) > 0 else None
