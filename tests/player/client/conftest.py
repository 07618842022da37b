"""Helpers shared by the HTTP-client tests: DASH content written by FFmpeg's own muxer, our origin
publishing a live channel (`live_origin`, with the segment statuses it answered) and a stack whose
live channel follows the player's clock (`live_stack_config`)."""

from __future__ import annotations

import fractions
import math
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiohttp import web

from server.config import RateLimitPolicy, StackConfig, save_stack_config
from server.live.channel import LiveConfig
from server.origin import OriginConfig, create_app
from tests.conftest import CLEAR_TITLE, PackagedTitles
from tests.server.conftest import write_users

STATUS = web.AppKey("statuses", Counter)
# live_origin(middlewares=(), **LiveConfig changes) -> (origin URL, counts of "segment <status>")
Origin = Callable[..., Awaitable[tuple[str, Counter[str]]]]
Middleware = Callable[[web.Request, Callable[[web.Request], Awaitable[web.StreamResponse]]],
                     Awaitable[web.StreamResponse]]


@web.middleware
async def _statuses(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
    response = await handler(request)
    if request.path.endswith(".m4s"):
        request.app[STATUS][f"segment {response.status}"] += 1
    elif request.path.endswith("/time"):  # the UTCTiming source
        request.app[STATUS]["time"] += 1
    return response


@pytest.fixture
async def live_origin(packaged: PackagedTitles) -> AsyncIterator[Origin]:
    """Starts our origin publishing a live channel of the clear test title (live 20 s ago; keyword
    arguments change its `LiveConfig`, `middlewares` misbehave inside it); each start returns its URL
    and the segment statuses answered."""
    runners: list[web.AppRunner] = []

    async def start(middlewares: tuple[Middleware, ...] = (), **changes: Any) -> tuple[str, Counter[str]]:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        live = LiveConfig(**{"source_title": CLEAR_TITLE, "availability_start_s": time.time() - 20,
                             "time_url": f"{url}/time", **changes})
        app = create_app(OriginConfig(content_root=packaged.content_root, port=0, live=live))
        app.middlewares.extend((_statuses, *middlewares))
        app[STATUS] = Counter()
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        runners.append(runner)
        return url, app[STATUS]

    yield start
    for runner in runners:
        await runner.cleanup()


def live_stack_config(tmp_path: Path, content_root: Path, *, speed: float) -> StackConfig:
    """A one-edge stack (written to `tmp_path`) whose low-latency live channel runs at `speed` and
    follows the player's clock; user alice may play it."""
    config = StackConfig(config_path=tmp_path / "state" / "stack.json", content_root=content_root, port=0,
                         heartbeat_s=0.2, access_log=False, shutdown_timeout_s=2.0, edges=1,
                         rate_limit=RateLimitPolicy(rate_per_s=100, burst=100), live_title=CLEAR_TITLE,
                         # Live 3 wall seconds before the stack starts (30 s of channel at 10x): older
                         # than the 8 s target, so the player can join at it.
                         live_speed=speed, live_start_s=float(math.floor(time.time())) - 3.0,
                         # The channel follows the player's clock, which leaves out the stack's time
                         # and the loop's stalls (docs/LIVE-EMULATION.md, "The stack's time in live emulation").
                         live_player_clocks=True, low_latency=True)
    save_stack_config(config)
    write_users(config.config_path, {"alice": ("live",)})
    return config


def write_ffmpeg_dash(out_dir: Path, **options: str) -> Path:
    """5 s of two H.264 renditions (320x180, 640x360, 24 fps, 2 s GOPs) and AAC through FFmpeg's dash
    muxer (PyAV), with the muxer `options`; returns the MPD path. It wrote tests/player/client/data/ffmpeg_*.mpd."""
    out_dir.mkdir(parents=True, exist_ok=True)
    options = {"seg_duration": "2", "adaptation_sets": "id=0,streams=v id=1,streams=a", **options}
    with av.open(str(out_dir / "manifest.mpd"), "w", format="dash", options=options) as container:
        videos = []
        for width, height, bit_rate in ((320, 180, 200_000), (640, 360, 600_000)):
            stream = container.add_stream(
                "libx264", rate=24, options={"preset": "ultrafast", "g": "48", "keyint_min": "48", "sc_threshold": "0"}
            )
            stream.width, stream.height, stream.pix_fmt, stream.bit_rate = width, height, "yuv420p", bit_rate
            videos.append(stream)
        audio = container.add_stream("aac", rate=48000)
        audio.bit_rate, audio.layout = 96_000, "stereo"
        for index in range(24 * 5):
            for stream in videos:
                picture = np.full((stream.height, stream.width, 3), index, np.uint8)
                frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
                frame.pts, frame.time_base = index, fractions.Fraction(1, 24)
                container.mux(stream.encode(frame))
        for index in range(48000 * 5 // 1024):
            frame = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = 48000, index * 1024, fractions.Fraction(1, 48000)
            container.mux(audio.encode(frame))
        for stream in (*videos, audio):
            container.mux(stream.encode(None))
    return out_dir / "manifest.mpd"


def mp4_box(kind: bytes, n: int) -> bytes:
    """An ISO-BMFF box of `kind` with `n` zero bytes of payload (8 + n bytes): chunk bodies for timer tests."""
    return (8 + n).to_bytes(4, "big") + kind + bytes(n)
