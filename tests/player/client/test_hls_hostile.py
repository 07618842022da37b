"""Hostile HLS servers through the player (the parser alone is fuzzed in test_hls_fuzz.py): each case
ends in one clear BootstrapError quickly, within a bounded number of requests and bounded memory -
never another exception, a hang, a fetch of every named playlist or key, or a segment request."""

from __future__ import annotations

import asyncio
import contextlib
import re
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from player.client.bootstrap import BootstrapError, bootstrap_url
from player.client.fetch import FetchConfig, Fetcher
from player.client.harness import UrlTarget, play_headless
from player.client.headless import PlayerConfig
from tests.conftest import CLEAR_TITLE, PackagedTitles
from tests.player.conftest import serving_app

QUICK = FetchConfig(connect_timeout_s=1.0, first_byte_timeout_s=1.5, read_timeout_s=1.5, attempts=2,
                    backoff_base_s=0.01, backoff_max_s=0.05)
# Where a playlist never answers, the case lasts attempts x (connect + first byte) timeouts: shorter ones.
STALL_QUICK = replace(QUICK, first_byte_timeout_s=0.5)
HANG_GUARD_S = 60.0
M = "#EXTM3U\n"
MEDIA = M + '#EXT-X-TARGETDURATION:4\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:4,\n1.m4s\n#EXT-X-ENDLIST\n'


def _variants(count: int, uri: Callable[[int], str] = lambda k: f"v{k}.m3u8") -> str:
    return M + "".join(f"#EXT-X-STREAM-INF:BANDWIDTH={k + 1}\n{uri(k)}\n" for k in range(count))


@dataclass
class Case:
    files: dict[str, bytes | str]
    expected: str
    max_requests: int = 3
    stall: frozenset[str] = frozenset()
    fetch: FetchConfig = QUICK


CASES = {
    "a thousand variants": Case({"master.m3u8": _variants(1000)}, "more than 128 variants", 1),
    "a hundred media playlists": Case({"master.m3u8": _variants(100)}, "names 100 media playlists, more than the 64",
                                      1),
    "a master naming a master": Case({"master.m3u8": _variants(1), "v0.m3u8": _variants(1)},
                                     "a master playlist names another master playlist", 2),
    "a 404 media playlist": Case({"master.m3u8": _variants(1)}, "the media playlist .*v0.m3u8 could not be fetched",
                                 2),
    "a stalling media playlist": Case({"master.m3u8": _variants(1), "v0.m3u8": MEDIA},
                                      "the media playlist .*v0.m3u8 could not be fetched .*timeout", 3,
                                      frozenset({"v0.m3u8"}), STALL_QUICK),
    "a 5 MB media playlist": Case({"master.m3u8": _variants(1), "v0.m3u8": MEDIA + "#" + "x" * 5_000_000},
                                  "v0.m3u8: is 5000.* bytes, more than the 4194304 allowed", 2),
    "live and ended playlists mixed": Case({"master.m3u8": _variants(2), "v0.m3u8": MEDIA.replace("#EXT-X-ENDLIST\n", ""),
                                            "v1.m3u8": MEDIA}, "has #EXT-X-ENDLIST but v0.m3u8 is live", 3),
    "a file: variant": Case({"master.m3u8": _variants(1, lambda k: "file:///etc/passwd")}, "has scheme 'file'", 1),
    "a 1 MB key": Case({"master.m3u8": _variants(1), "v0.m3u8": MEDIA.replace(
        "#EXTINF", '#EXT-X-KEY:METHOD=AES-128,URI="k.bin"\n#EXTINF'), "k.bin": b"k" * 1_000_000},
        "the AES-128 key at .*k.bin is 1000000 bytes, not 16", 3),
    "three hundred keys": Case({"master.m3u8": _variants(1), "v0.m3u8": M + "".join(
        f'#EXT-X-KEY:METHOD=AES-128,URI="k{k}.bin"\n#EXTINF:4,\n{k}.ts\n' for k in range(300)) + "#EXT-X-ENDLIST\n"},
        "name 300 AES-128 keys, more than the 256 allowed", 2),
    "a wrong variant line": Case({"master.m3u8": M + "#EXT-X-STREAM-INF:BANDWIDTH=12,RESOLUTION=big\nv.m3u8\n"},
                                 "master.m3u8 line 2: #EXT-X-STREAM-INF: RESOLUTION='big'", 1),
    "a binary playlist": Case({"master.m3u8": b"\x89PNG\r\n\x1a\n" + bytes(range(256))},
                              "master.m3u8: is not valid UTF-8", 1),
}


@dataclass
class HostileServer:
    files: dict[str, bytes | str]
    stall: frozenset[str]
    requests: list[str] = field(default_factory=list)
    released: asyncio.Event = field(default_factory=asyncio.Event)  # set when the test is done: stalls end

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.requests.append(name)
        if name in self.stall:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.released.wait(), 30)
        if name not in self.files:
            raise web.HTTPNotFound()
        body = self.files[name]
        return web.Response(body=body.encode() if isinstance(body, str) else body,
                            content_type="application/vnd.apple.mpegurl")


@asynccontextmanager
async def hostile(case: Case) -> AsyncIterator[tuple[HostileServer, str]]:
    server = HostileServer(case.files, case.stall)
    app = web.Application()
    app.router.add_get("/t/{name}", server.handle)
    async with serving_app(app) as base:
        try:
            yield server, f"{base}/t/master.m3u8"
        finally:
            server.released.set()  # the stalled handlers answer, so the server stops at once


@pytest.mark.parametrize("name", list(CASES))
async def test_hostile_hls_is_one_clear_bootstrap_error(name: str) -> None:
    case = CASES[name]
    async with hostile(case) as (server, url):
        tracemalloc.start()
        try:
            with pytest.raises(BootstrapError, match="manifest is not valid") as info:
                await asyncio.wait_for(play_headless(UrlTarget(url=url), PlayerConfig(decode="none"), fetch=case.fetch),
                                       HANG_GUARD_S)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    message = str(info.value)
    assert re.search(case.expected, message), message
    assert "\n" not in message and "Traceback" not in message and len(message) < 600, message
    assert len(server.requests) <= case.max_requests * case.fetch.attempts, server.requests
    assert not any(r.endswith((".m4s", ".ts", ".mp4")) for r in server.requests), server.requests
    assert peak < 64 * 1024 * 1024, f"{peak / 2**20:.0f} MiB"


class MutatedTitle:
    """Our packaged clip over HTTP, with its master and one media playlist replaced."""

    def __init__(self, root: Path, master: bytes, media: bytes) -> None:
        self.root, self.master, self.media = root, master, media

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        if path == "master.m3u8":
            return web.Response(body=self.master)
        if path == "video/v216p/playlist.m3u8":
            return web.Response(body=self.media)
        file = self.root / path
        return web.FileResponse(file) if file.is_file() else web.Response(status=404)


JUNK = st.binary(max_size=30) | st.sampled_from([
    b"#EXT-X-STREAM-INF:BANDWIDTH=1\n", b"#EXTINF:-1,\n", b"#EXT-X-BYTERANGE:99999999999@0\n",
    b'#EXT-X-KEY:METHOD=AES-128,URI="http://127.0.0.1:9/k"\n', b'#EXT-X-MAP:URI="file:///etc/passwd"\n',
    b"#EXT-X-DISCONTINUITY\n", b"#EXT-X-ENDLIST\n", b"\x00", b'#EXT-X-KEY:METHOD=SAMPLE-AES,URI="data:,x"\n'])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_playlists_of_our_title_bootstrap_or_fail_clearly(packaged: PackagedTitles,
                                                                  data: st.DataObject) -> None:
    title = packaged.content_root / CLEAR_TITLE
    files = {"master": (title / "master.m3u8").read_bytes(),
             "media": (title / "video" / "v216p" / "playlist.m3u8").read_bytes()}
    which = data.draw(st.sampled_from(sorted(files)))
    seed = files[which]
    at = data.draw(st.integers(0, len(seed)))
    files[which] = seed[:at] + data.draw(JUNK) + seed[at + data.draw(st.integers(0, 60)):]
    server = MutatedTitle(title, files["master"], files["media"])

    async def attempt() -> None:
        app = web.Application()
        app.router.add_get("/t/{path:.+}", server.handle)
        async with serving_app(app) as base, aiohttp.ClientSession() as http:
            try:
                source = await bootstrap_url(Fetcher(http, QUICK), f"{base}/t/master.m3u8")
            except BootstrapError as exc:
                message = str(exc)
                assert message and "\n" not in message and len(message) < 1000, message
            else:
                assert source.manifest.video is not None and source.manifest.video.representations

    asyncio.run(asyncio.wait_for(attempt(), HANG_GUARD_S))
