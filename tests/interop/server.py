"""A static file server that misbehaves the way real CDNs and origins do, chosen by the URL.

`http://host/<behaviour>/<path>` serves `<root>/<path>` with that behaviour; relative references
in a manifest keep the prefix, so one manifest URL sets the behaviour of every request it leads to:

| behaviour | what the server does |
| --- | --- |
| `plain` | answers like a good static server (Range -> 206 with Content-Range) |
| `redirect` | 302 to `/plain/<path>` (a relative `Location`, as many CDNs send) |
| `redirect-media` | manifests as `plain`; everything else 307 to the *other* server's `/plain/<path>` |
| `missing` | 404 for everything (a BaseURL that has nothing) |
| `error503` | 503 for everything but manifests |
| `norange` | ignores `Range`: 200 with the whole file |
| `badrange` | answers `Range` with a 206 whose `Content-Range` names other bytes |
| `stall` | never answers (but manifests) |
| `truncate` | announces the whole length (of the range), sends half of it, then closes the connection (but manifests) |

Manifests (`.mpd`, `.m3u8`) have `@OTHER_ORIGIN@` replaced by the other server's `host:port`, so
the corpus can name absolute URLs on another host. Every request is recorded in `requests`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

BEHAVIOURS = ("plain", "redirect", "redirect-media", "missing", "error503", "norange", "badrange", "stall", "truncate")
MANIFEST_SUFFIXES = (".mpd", ".m3u8")
OTHER_ORIGIN = "@OTHER_ORIGIN@"
CONTENT_TYPES = {".mpd": "application/dash+xml", ".m3u8": "application/vnd.apple.mpegurl", ".mp4": "video/mp4",
                 ".m4s": "video/iso.segment", ".ts": "video/mp2t", ".m4a": "audio/mp4", ".aac": "audio/aac"}


@dataclass(frozen=True, slots=True)
class Request:
    behaviour: str
    path: str
    range: str | None
    status: int


@dataclass
class MisbehavingServer:
    """Serves `root` on 127.0.0.1 with the behaviour each URL names; `other` is its twin's origin."""

    root: Path
    origin: str = ""  # http://127.0.0.1:port, once started
    other: str = ""
    requests: list[Request] = field(default_factory=list)
    stall_s: float = 3600.0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{behaviour}/{path:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        behaviour, path = request.match_info["behaviour"], request.match_info["path"]
        wanted = request.headers.get("Range")
        try:
            response = await self._answer(request, behaviour, path, wanted)
        except web.HTTPException as exc:
            self.requests.append(Request(behaviour, path, wanted, exc.status))
            raise
        self.requests.append(Request(behaviour, path, wanted, response.status))
        return response

    async def _answer(self, request: web.Request, behaviour: str, path: str, wanted: str | None) -> web.StreamResponse:
        if behaviour not in BEHAVIOURS:
            raise web.HTTPNotFound(text=f"unknown behaviour {behaviour!r}")
        is_manifest = path.endswith(MANIFEST_SUFFIXES)
        if behaviour == "missing":
            raise web.HTTPNotFound()
        if behaviour == "redirect":
            raise web.HTTPFound(location=f"/plain/{path}")
        if behaviour == "redirect-media" and not is_manifest:
            raise web.HTTPTemporaryRedirect(location=f"{self.other}/plain/{path}")
        file = (self.root / path).resolve()
        if not file.is_relative_to(self.root.resolve()) or not file.is_file():
            raise web.HTTPNotFound()
        data = file.read_bytes()
        content_type = CONTENT_TYPES.get(file.suffix, "application/octet-stream")
        if is_manifest:
            text = data.decode("utf-8").replace(OTHER_ORIGIN, self.other.removeprefix("http://"))
            return web.Response(body=text.encode(), content_type=content_type)
        if behaviour == "error503":
            raise web.HTTPServiceUnavailable()
        if behaviour == "stall":
            await asyncio.sleep(self.stall_s)
        span = _range(wanted, len(data)) if behaviour != "norange" else None
        if behaviour == "truncate":
            return await _truncated(request, data, span, content_type)
        if span is None:
            return web.Response(body=data, content_type=content_type, headers={"Accept-Ranges": "none"}
                                if behaviour == "norange" else {"Accept-Ranges": "bytes"})
        first, last = span
        if behaviour == "badrange":
            first, last = max(0, first - 100), max(0, last - 100)  # another window of the file
        return web.Response(status=206, body=data[first:last + 1], content_type=content_type,
                            headers={"Content-Range": f"bytes {first}-{last}/{len(data)}", "Accept-Ranges": "bytes"})


def _range(header: str | None, size: int) -> tuple[int, int] | None:
    if header is None or not header.startswith("bytes="):
        return None
    first_text, _, last_text = header[len("bytes="):].partition("-")
    first = int(first_text)
    last = min(int(last_text) if last_text else size - 1, size - 1)
    if first > last:
        raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    return first, last


async def _truncated(request: web.Request, data: bytes, span: tuple[int, int] | None,
                     content_type: str) -> web.StreamResponse:
    headers = {"Content-Type": content_type}
    body = data
    if span is not None:
        body = data[span[0]:span[1] + 1]
        headers["Content-Range"] = f"bytes {span[0]}-{span[1]}/{len(data)}"
    headers["Content-Length"] = str(len(body))
    response = web.StreamResponse(status=206 if span is not None else 200, headers=headers)
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    assert request.transport is not None
    request.transport.close()  # the peer sees the connection end before Content-Length bytes
    return response


@contextlib.asynccontextmanager
async def misbehaving_servers(root: Path) -> AsyncIterator[tuple[MisbehavingServer, MisbehavingServer]]:
    """Two servers of `root` on free ports of 127.0.0.1, each knowing the other's origin."""
    servers = (MisbehavingServer(root), MisbehavingServer(root))
    runners = []
    try:
        for server in servers:
            runner = web.AppRunner(server.app(), shutdown_timeout=0.1)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            runners.append(runner)
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            server.origin = f"http://127.0.0.1:{port}"
        servers[0].other, servers[1].other = servers[1].origin, servers[0].origin
        yield servers
    finally:
        for runner in runners:
            await runner.cleanup()
