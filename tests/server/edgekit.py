"""The edge tests' world (tests/server/test_edge*.py): a fake title's bytes, a real origin instrumented to
count and hold requests (`OriginProbe`), signed URLs, small HTTP helpers and `abrkit edge` run as a
process (`cli_edge`); their fixtures
(`content_root`, `origin`, `make_edge`, `edge`, `http`) are in tests/server/conftest.py."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from server.edge import RunningEdge
from server.formats.dash import LAURL_PLACEHOLDER
from server.internal import INTERNAL_HEADER, internal_headers
from server.keys import ed25519_public
from server.origin import OriginConfig
from server.origin import create_app as create_origin_app
from server.urlsign import UrlGrant, sign, signed_path

KEY = b"edge-tests-url-signing-key-32by!"  # the playback API's seed; edges get the public half
VERIFY_KEY = ed25519_public(KEY)
INTERNAL = b"edge-tests-internal-credential-!"
INTERNAL_HEADERS = internal_headers(INTERNAL)
TITLE = "demo"
SEGMENT_BYTES = 1000
REPS = {"video": ("v0", "v1"), "audio": ("a0",)}
SEGMENTS_PER_REP = 3
MANIFEST = f'<MPD><ContentProtection><dashif:Laurl>{LAURL_PLACEHOLDER}</dashif:Laurl></ContentProtection></MPD>\n'
LICENSE_URL = "https://gw.example/license?a=1&b=2"
REPO_ROOT = Path(__file__).resolve().parents[2]


def object_bytes(path: str) -> bytes:
    """Distinct, deterministic bytes for every object of the test title."""
    seed = path.encode()
    return (seed * (SEGMENT_BYTES // len(seed) + 1))[:SEGMENT_BYTES]


def title_paths() -> list[str]:
    paths = [f"/{TITLE}/manifest.mpd"]
    for kind, reps in REPS.items():
        for rep in reps:
            paths.append(f"/{TITLE}/{kind}/{rep}/init.mp4")
            paths.extend(f"/{TITLE}/{kind}/{rep}/{n}.m4s" for n in range(1, SEGMENTS_PER_REP + 1))
    return paths


# --- a real origin, instrumented --------------------------------------------------------------------

@dataclass
class OriginProbe:
    """Counts the origin's GETs by path, and can hold them (gate) or answer something else."""

    gets: Counter[str] = field(default_factory=Counter)
    credentials: list[str] = field(default_factory=list)  # the internal credential each request carried
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    answer_status: int | None = None
    redirect_to: str | None = None
    url: str = ""
    runner: web.AppRunner | None = None

    def __post_init__(self) -> None:
        self.gate.set()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


PROBE = web.AppKey("probe", OriginProbe)


@web.middleware
async def _probe_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                            ) -> web.StreamResponse:
    probe = request.app[PROBE]
    if request.method == "GET":
        probe.gets[request.path] += 1
    probe.credentials.append(request.headers.get(INTERNAL_HEADER, ""))
    await probe.gate.wait()
    if probe.redirect_to is not None:
        return web.Response(status=302, headers={"Location": probe.redirect_to})
    if probe.answer_status is not None:
        return web.Response(status=probe.answer_status)
    return await handler(request)


async def start_origin(content_root: Path, **config: Any) -> OriginProbe:
    probe = OriginProbe()
    app = create_origin_app(OriginConfig(content_root=content_root, port=0, **config))
    app.middlewares.append(_probe_middleware)
    app[PROBE] = probe
    probe.runner = web.AppRunner(app, access_log=None)
    await probe.runner.setup()
    site = web.TCPSite(probe.runner, "127.0.0.1", 0)
    await site.start()
    probe.url = f"http://127.0.0.1:{site.port}"
    return probe


EdgeFactory = Callable[..., Awaitable[RunningEdge]]


def signed(path: str, *, prefix: str = f"/{TITLE}/", expires_in_s: float = 60.0, key: bytes = KEY,
           subject: str = "alice", family: str = "login-1") -> str:
    now = time.time()
    token = sign(key, UrlGrant(path_prefix=prefix, expires_at=int(now + expires_in_s), session_id="s1",
                               subject=subject, family=family, issued_at=round(now, 3)))
    return signed_path(token, path)


SEGMENT = f"/{TITLE}/video/v0/1.m4s"


async def get(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, CIMultiDict[str], bytes]:
    async with http.get(url, **kwargs) as resp:
        return resp.status, resp.headers.copy(), await resp.read()


async def raw_request(port: int, request: bytes) -> tuple[int, bytes]:
    """Send bytes as they are (no client-side normalisation); the status and body of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


# --- `abrkit edge` as a process ----------------------------------------------------------------------

@asynccontextmanager
async def cli_edge(origin: OriginProbe, tmp_path: Path) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """`abrkit edge --workers 2` as a child process (stdout and stderr piped) and its URL once ready;
    stopped with SIGTERM at the end, which must exit 0."""
    key_file, internal_file = tmp_path / "key.hex", tmp_path / "internal.hex"
    key_file.write_text(VERIFY_KEY.hex())
    internal_file.write_text(INTERNAL.hex())
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "player", "edge", "--origin", origin.url, "--port", "0", "--workers", "2",
        "--key-file", str(key_file), "--internal-token-file", str(internal_file), "--access-log", "off",
        "--edge-id", "multi",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=30)).decode()
        yield proc, line.split("ready at ")[1].split()[0]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=30) == 0
