"""A live channel for the desktop window's tests (tests/player/desktop/test_live_window.py,
test_live_audio.py): our origin publishing it on a real socket, and a window playing it."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from player.client.harness import UrlTarget
from player.client.headless import PlayerConfig
from player.client.liveplay import LivePlayConfig
from player.desktop.app import DesktopApp
from player.desktop.config import DesktopConfig
from server.live.channel import LiveConfig
from server.origin import OriginConfig, create_app
from tests.conftest import CLEAR_TITLE


@contextlib.asynccontextmanager
async def live_origin(content_root: Path, *, low_latency: bool = False) -> AsyncIterator[str]:
    """Our origin publishing a live channel of the clear test title, started 20 s ago: 4 s segments,
    or with `low_latency` 0.5 s CMAF chunks released as they are made."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    live = LiveConfig(source_title=CLEAR_TITLE, availability_start_s=time.time() - 20, time_url=f"{url}/time",
                      low_latency=low_latency)
    runner = web.AppRunner(create_app(OriginConfig(content_root=content_root, port=0, live=live)), access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        yield url
    finally:
        await runner.cleanup()


def live_app(url: str, *, exit_after_s: float, target_latency_s: float | None = None,
             log_path: Path | None = None) -> DesktopApp:
    """A 640x360 window playing the live presentation at `url` with the dynamic ABR."""
    return DesktopApp(UrlTarget(url=url), PlayerConfig(abr="dynamic"), options=DesktopConfig(window_size_px=(640, 360)),
                      exit_after_s=exit_after_s, log_path=log_path,
                      live=LivePlayConfig(duration_s=3600.0, target_latency_s=target_latency_s))
