"""The origin: serves packaged titles from a content root over HTTP (aiohttp, sendfile).

`GET|HEAD /<title>/<path>` for the files of the title layout (server.content) with byte ranges,
ETag/Last-Modified validators and cache lifetimes fit for a CDN: segments are immutable, the
manifest gets a short max-age. Keys and anything outside the layout are 404. `GET /healthz`.
With a live channel configured, `/<channel>/...` and `GET /time` are served by server/live/origin.py.
In a stack it serves the edges only: every request needs the internal credential (`internal_token`);
run on its own without one, it serves anyone who can reach it (it binds 127.0.0.1 by default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from server.content import list_titles, resolve_content_path
from server.internal import require_internal
from server.live.channel import LiveChannel, LiveConfig
from server.live.origin import add_live_routes, time_handler


@dataclass(frozen=True, kw_only=True, slots=True)
class OriginConfig:
    """Where titles live and how long caches may keep what the origin sends."""

    content_root: Path
    host: str = "127.0.0.1"
    port: int = 8000
    manifest_max_age_s: int = 2
    segment_max_age_s: int = 31_536_000  # one year: segments never change once published
    internal_token: bytes | None = field(default=None, repr=False)
    live: LiveConfig | None = None  # a live channel published from a title of content_root (docs/LIVE-SERVER.md)

    def __post_init__(self) -> None:
        if not Path(self.content_root).is_dir():
            raise ValueError(f"content root {self.content_root} is not a directory")
        if not (0 <= self.port <= 65535):
            raise ValueError(f"port must be in [0, 65535], got {self.port}")
        if self.manifest_max_age_s < 0 or self.segment_max_age_s < 0:
            raise ValueError("max-age values must be >= 0")


ORIGIN_CONFIG = web.AppKey("origin_config", OriginConfig)


async def _healthz(request: web.Request) -> web.Response:
    titles = list_titles(Path(request.app[ORIGIN_CONFIG].content_root))
    return web.json_response({"status": "ok", "titles": len(titles)})


async def _serve(request: web.Request) -> web.StreamResponse:
    config = request.app[ORIGIN_CONFIG]
    found = resolve_content_path(Path(config.content_root), request.match_info["title"], request.match_info["path"])
    if found is None:
        raise web.HTTPNotFound()
    if found.immutable:
        cache_control = f"public, max-age={config.segment_max_age_s}, immutable"
    else:
        cache_control = f"public, max-age={config.manifest_max_age_s}"
    # FileResponse answers Range (206/416), If-None-Match/If-Modified-Since (304), If-Range and
    # HEAD itself, sets ETag and Last-Modified, and sends the body with sendfile.
    return web.FileResponse(
        found.path, headers={"Content-Type": found.content_type, "Cache-Control": cache_control}
    )


def create_app(config: OriginConfig) -> web.Application:
    app = web.Application(middlewares=[require_internal(config.internal_token)])
    app[ORIGIN_CONFIG] = config
    app.router.add_get("/healthz", _healthz)
    if config.live is not None:
        app.router.add_get("/time", time_handler)
        channel = LiveChannel(config.live, Path(config.content_root))
        add_live_routes(app, channel, clock=channel.clock)
    app.router.add_get("/{title}/{path:.+}", _serve)
    return app
