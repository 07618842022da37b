"""The origin's live routes: `/<channel>/...` of a live channel, and `GET /time`.

Same names as a packaged title (server.content): `manifest.mpd` (dynamic), `master.m3u8`,
`video|audio/<rep>/playlist.m3u8` (live), `init.mp4`, `<n>.m4s`, and at low latency LL-HLS parts
`<n>.<c>.m4s` and blocking playlist reloads (`_HLS_msn`/`_HLS_part`, server/live/hls.py). A segment asked for before it is
available, or after it left the time-shift window, is a 404 whose JSON body says which (and
`Retry-After` when it will be available). At low latency a segment still being published is sent
with chunked transfer encoding, each CMAF chunk written when the wall clock reaches its end.

Emulation (`LiveConfig.player_clocks`): a request may carry `X-Abrkit-Channel-Lag: S`, the channel
seconds its player's clock has fallen behind the channel's because it leaves out the stack's time
(netsim.clock.WarpClock); the request is then answered on that player's view of the channel, the
channel's clock less S (availability, the release of each chunk, `/time`), plus the time this
request spent here before its first byte.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from aiohttp import web

from server.content import ContentKind, classify
from server.formats.hls import PLAYLIST_CONTENT_TYPE
from server.formats.names import CHANNEL_LAG_HEADER
from server.formats.servertiming import publish_wait_header
from server.httpapi import json_error
from server.live.channel import MAX_SEGMENT_NUMBER, LiveChannel, NotAvailable
from server.live.hls import (
    BadBlockingRequest,
    blocking_ready_at_s,
    blocking_request,
    check_blocking,
    live_media_playlist,
)
from server.live.mpd import iso_datetime, live_mpd

Clock = Callable[[], float]
LIVE_CHUNKS_HEADER = "X-Live-Chunks"  # on a segment: how many CMAF chunks it is published in
# Emulation: CHANNEL_LAG_HEADER says how many channel seconds the asking player's clock runs behind the
# channel's (module docstring); echoed on the answer when honoured, so a player knows its channel follows its clock.
MAX_CHANNEL_LAG_S = 86_400.0
LIVE_CHANNEL = web.AppKey("abrkit_live_channel", LiveChannel)
LIVE_CLOCK = web.AppKey("abrkit_live_clock", object)
_SEGMENT_TYPE = "video/iso.segment"
BLOCKING_TIMEOUT_TARGET_DURATIONS = 3.0  # a blocking playlist reload is answered 503 after this long
PART_HOLD_PARTS = 3.0  # a part due within this many parts is held until published, later ones are 404s


class ChannelClock:
    """A channel's clock (unix seconds; `LiveConfig.speed` times the wall clock) and whether requests
    may ask for it `CHANNEL_LAG_HEADER` seconds behind (`player_clocks`, emulation only)."""

    __slots__ = ("now", "player_clocks")

    def __init__(self, now: Clock, *, player_clocks: bool = False) -> None:
        self.now = now
        self.player_clocks = player_clocks

    def __call__(self) -> float:
        return self.now()


class BadChannelLag(ValueError):
    """A `CHANNEL_LAG_HEADER` that is not a number of seconds in [0, MAX_CHANNEL_LAG_S]."""


def channel_lag_s(request: web.Request, clock: object) -> float | None:
    """The lag a request asks for (None: none asked, or `clock` does not honour it); `BadChannelLag`
    for a malformed one."""
    text = request.headers.get(CHANNEL_LAG_HEADER)
    if text is None or not getattr(clock, "player_clocks", False):
        return None
    try:
        lag = float(text)
    except ValueError:
        raise BadChannelLag(f"{CHANNEL_LAG_HEADER} must be seconds, got {text[:40]!r}") from None
    if not (math.isfinite(lag) and 0 <= lag <= MAX_CHANNEL_LAG_S):
        raise BadChannelLag(f"{CHANNEL_LAG_HEADER} must be in [0, {MAX_CHANNEL_LAG_S:g}] s, got {text[:40]!r}")
    return lag


def lag_error(exc: BadChannelLag) -> web.Response:
    return json_error(400, str(exc), headers={"Cache-Control": "no-store"})


async def time_handler(request: web.Request) -> web.Response:
    """The UTCTiming endpoint: the server's time as xs:dateTime (urn:mpeg:dash:utc:http-xsdate:2014,
    also valid for http-iso), never cached; on the asking player's clock when it says how far that
    runs behind (`CHANNEL_LAG_HEADER`, emulation)."""
    clock = request.app.get(LIVE_CLOCK)
    now = clock() if callable(clock) else time.time()  # a sped-up channel's clock (LiveConfig.speed)
    headers = {"Cache-Control": "no-store"}
    try:
        lag = channel_lag_s(request, clock)
    except BadChannelLag as exc:
        return lag_error(exc)
    if lag is not None:
        now -= lag
        headers[CHANNEL_LAG_HEADER] = f"{lag:.6f}"
    return web.Response(text=iso_datetime(now), content_type="text/plain", headers=headers)


def _manifest_max_age_s(channel: LiveChannel) -> int:
    # Short: a cache may hold a live manifest for at most half a segment (a playlist changes every segment).
    return max(1, math.floor(float(channel.segment_s) / 2))


def add_live_routes(app: web.Application, channel: LiveChannel, *, clock: Clock = time.time) -> None:
    """Serve `channel` under `/<channel>/` (add before a catch-all title route)."""
    app[LIVE_CHANNEL] = channel
    app[LIVE_CLOCK] = ChannelClock(clock, player_clocks=channel.config.player_clocks)
    mpd = live_mpd(channel)
    etag_base = f"live-{int(channel.availability_start_s)}"
    max_age = _manifest_max_age_s(channel)

    async def serve(request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        kind = classify(path)
        if kind is None or kind[0] is ContentKind.SIDECAR:
            return json_error(404, "not a file of a live channel")
        manifest_headers = {"Cache-Control": f"public, max-age={max_age}"}
        if kind[0] is ContentKind.MANIFEST:
            return web.Response(body=mpd, content_type="application/dash+xml", headers=manifest_headers)
        media, _, rest = path.partition("/")
        if kind[0] is ContentKind.PLAYLIST and kind[1] is None:
            if channel.master_playlist is None:
                return json_error(404, "the live source title has no HLS playlists")
            return web.Response(body=channel.master_playlist, headers={**manifest_headers,
                                                                       "Content-Type": PLAYLIST_CONTENT_TYPE})
        rep_id, _, name = rest.partition("/")
        track = channel.track(media, rep_id)
        if track is None:
            return json_error(404, f"the live channel has no {media} rendition {rep_id}")
        try:
            lag = channel_lag_s(request, app[LIVE_CLOCK])
        except BadChannelLag as exc:
            return lag_error(exc)
        if kind[0] is ContentKind.PLAYLIST:
            return await _media_playlist(request, channel, media, rep_id, _behind(clock, lag or 0.0), lag)
        if kind[0] is ContentKind.INIT:
            return web.Response(body=track.init, headers={
                "Content-Type": f"{media}/mp4", "Cache-Control": "public, max-age=31536000, immutable",
                "ETag": f'"{etag_base}-{media}-{rep_id}-init"'})
        number, _, part = name.removesuffix(".m4s").partition(".")
        if part:
            return await _part(channel, media, rep_id, int(number), int(part), _behind(clock, lag or 0.0),
                               etag_base, lag)
        return await _segment(request, channel, media, rep_id, int(number), clock, etag_base, lag)

    app.router.add_get(f"/{channel.config.channel}/{{path:.+}}", serve)


async def _segment(request: web.Request, channel: LiveChannel, media: str, rep_id: str, number: int,
                   clock: Clock, etag_base: str, lag_s: float | None = None) -> web.StreamResponse:
    raw, arrived = clock, clock()
    if lag_s is not None:  # the asking player's view of the channel (module docstring)
        clock = _behind(raw, lag_s)
    now = clock()
    try:
        channel.check_available(number, now)
    except NotAvailable as exc:
        headers = {"Cache-Control": "no-store"}
        extra: dict[str, object] = {}
        if exc.available_at_s is not None:
            headers["Retry-After"] = str(max(1, math.ceil(exc.available_at_s - now)))
            extra["available_at"] = iso_datetime(exc.available_at_s)
        return json_error(404, str(exc), headers=headers, segment=number, **extra)
    chunks = await _chunks(channel, media, rep_id, number)
    headers = {"Content-Type": _SEGMENT_TYPE, "Cache-Control": "public, max-age=31536000, immutable",
               "ETag": f'"{etag_base}-{media}-{rep_id}-{number}"', LIVE_CHUNKS_HEADER: str(len(chunks))}
    if lag_s is not None:
        headers[CHANNEL_LAG_HEADER] = f"{lag_s:.6f}"
    published = channel.chunks_available(number, now)
    if published >= len(chunks):
        return web.Response(body=b"".join(chunks), headers=headers)
    if lag_s is not None:
        # The player's clock stands still while this request is here (until its first byte): the
        # chunks still to come are due that much later on the player's clock.
        clock = _behind(raw, lag_s + max(0.0, raw() - arrived))
    response = web.StreamResponse(headers=headers)
    response.enable_chunked_encoding()
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    try:
        for index, chunk in enumerate(chunks):
            wait_s = channel.chunk_available_at_s(number, index) - clock()
            if wait_s > 0:
                await asyncio.sleep(wait_s / channel.config.speed)  # channel seconds to wall seconds
            if chunk:
                await response.write(chunk)
        await response.write_eof()
    except ConnectionResetError:  # the client (an edge, a player) went away mid-segment
        pass
    return response


async def _media_playlist(request: web.Request, channel: LiveChannel, media: str, rep_id: str,
                          clock: Clock, lag_s: float | None = None) -> web.Response:
    """A live media playlist; at low latency a blocking reload (`_HLS_msn`/`_HLS_part`, rfc8216bis
    6.2.5.2) is held until the playlist contains what it asks for: 400 for a malformed one or one
    too far ahead, 503 if that takes longer than `BLOCKING_TIMEOUT_TARGET_DURATIONS`. The answer
    says how long it waited for publication (`Server-Timing: publish-wait`)."""
    headers = {"Cache-Control": "public, max-age=1", "Content-Type": PLAYLIST_CONTENT_TYPE}
    if lag_s is not None:
        headers[CHANNEL_LAG_HEADER] = f"{lag_s:.6f}"
    now = clock()
    try:
        blocking = blocking_request(request.query)
        if blocking is not None:
            check_blocking(channel, media, rep_id, blocking, now)
    except BadBlockingRequest as exc:
        return json_error(400, f"blocking playlist reload: {exc}", headers={"Cache-Control": "no-store"})
    if blocking is not None and channel.config.low_latency:
        ready_s = blocking_ready_at_s(channel, blocking)
        timeout_s = BLOCKING_TIMEOUT_TARGET_DURATIONS * float(channel.segment_s)
        if ready_s - now > timeout_s:
            waited_s = await _wait_until(now + timeout_s, clock, channel.config.speed)
            return json_error(503, f"the playlist did not reach {blocking.query} within {timeout_s:g} s",
                              headers={"Cache-Control": "no-store", "Retry-After": "1",
                                       "Server-Timing": publish_wait_header(waited_s)})
        if (waited_s := await _wait_until(ready_s, clock, channel.config.speed)) > 0:
            headers["Server-Timing"] = publish_wait_header(waited_s)
        now = max(clock(), ready_s)
        # Pinned by its query: any later version contains what it asked for too (6.2.5.2).
        headers["Cache-Control"] = f"public, max-age={max(1, math.floor(float(channel.segment_s)))}"
    return web.Response(text=live_media_playlist(channel, media, rep_id, now), headers=headers)


async def _part(channel: LiveChannel, media: str, rep_id: str, number: int, index: int, clock: Clock,
                etag_base: str, lag_s: float | None) -> web.Response:
    """LL-HLS part `index` of segment `number` (one CMAF chunk): once published; a part due within
    `PART_HOLD_PARTS` parts (the preload hint's) is held until then (rfc8216bis 6.2.6)."""
    no_store = {"Cache-Control": "no-store"}
    if not channel.config.low_latency:
        return json_error(404, "this live channel publishes no parts (it is not low latency)", headers=no_store)
    if index >= channel.chunks_per_segment or not 1 <= number <= MAX_SEGMENT_NUMBER:
        return json_error(404, f"no part {number}.{index}: a segment has {channel.chunks_per_segment} parts "
                          f"(0..{channel.chunks_per_segment - 1})", headers=no_store, segment=number)
    now = clock()
    if number < channel.oldest_available(now):
        return json_error(404, f"part {number}.{index} has left the {channel.config.time_shift_buffer_s:g} s "
                          "time-shift window", headers=no_store, segment=number)
    ready_s = channel.chunk_available_at_s(number, index)
    if ready_s - now > PART_HOLD_PARTS * channel.chunk_duration_s:
        return json_error(404, f"part {number}.{index} is not available yet (in {ready_s - now:.3f} s)",
                          headers={**no_store, "Retry-After": str(max(1, math.ceil(ready_s - now)))},
                          segment=number, available_at=iso_datetime(ready_s))
    waited_s = await _wait_until(ready_s, clock, channel.config.speed)
    chunks = await _chunks(channel, media, rep_id, number)
    headers = {"Content-Type": _SEGMENT_TYPE, "Cache-Control": "public, max-age=31536000, immutable",
               "ETag": f'"{etag_base}-{media}-{rep_id}-{number}.{index}"'}
    if waited_s > 0:
        headers["Server-Timing"] = publish_wait_header(waited_s)
    if lag_s is not None:
        headers[CHANNEL_LAG_HEADER] = f"{lag_s:.6f}"
    return web.Response(body=chunks[index], headers=headers)


async def _chunks(channel: LiveChannel, media: str, rep_id: str, number: int) -> tuple[bytes, ...]:
    """A segment's chunks: from the channel's cache on the loop, else built in a worker thread."""
    kept = channel.kept_chunks(media, rep_id, number)
    if kept is not None:
        return kept
    return await asyncio.get_running_loop().run_in_executor(None, channel.segment_chunks, media, rep_id, number)


async def _wait_until(ready_s: float, clock: Clock, speed: float) -> float:
    """Wait until `clock` (channel seconds) reaches `ready_s`; the wall seconds that took: the
    channel's time, not this server's work (server.formats.servertiming)."""
    loop = asyncio.get_running_loop()
    started = None
    while (wait_s := ready_s - clock()) > 0:
        started = loop.time() if started is None else started
        await asyncio.sleep(wait_s / speed)  # channel seconds to wall seconds
    return 0.0 if started is None else loop.time() - started


def _behind(clock: Clock, lag_s: float) -> Clock:
    return lambda: clock() - lag_s

