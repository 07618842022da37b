"""Hostile MPDs arriving through the player (the parser alone is fuzzed in test_mpd_fuzz.py): served
by a real HTTP server, each must end in a clear BootstrapError (PlaybackError for a valid MPD with
nothing to play), quickly - never another exception, a hang, a huge allocation or a segment request."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from player.client.bootstrap import BootstrapError, bootstrap_url
from player.client.fetch import FetchConfig, Fetcher
from player.client.harness import UrlTarget, play_headless
from player.client.headless import PlaybackError, PlayerConfig
from tests.conftest import CLEAR_TITLE, PackagedTitles

HANG_GUARD_S = 60.0
QUICK = FetchConfig(connect_timeout_s=1.0, first_byte_timeout_s=1.5, read_timeout_s=1.5, attempts=2,
                    backoff_base_s=0.01, backoff_max_s=0.05)
MEMORY_BUDGET_BYTES = 128 * 1024 * 1024

HEADER = '<?xml version="1.0"?>\n'
MPD_OPEN = ('<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="{duration}" '
            'minBufferTime="PT2S" profiles="urn:mpeg:dash:profile:isoff-live:2011">')
ADAPTATION = ('<Period><AdaptationSet contentType="video" mimeType="video/mp4">'
              '<SegmentTemplate timescale="1000" duration="{segment_ms}" startNumber="1" '
              'initialization="video/$RepresentationID$/init.mp4" media="video/$RepresentationID$/$Number$.m4s"/>'
              '<Representation id="v216p" bandwidth="300000" width="384" height="216" codecs="avc1.64000d"/>'
              '</AdaptationSet></Period></MPD>')


def _mpd(duration: str = "PT10S", segment_ms: int = 4000, prolog: str = "") -> bytes:
    return (HEADER + prolog + MPD_OPEN.format(duration=duration) + ADAPTATION.format(segment_ms=segment_ms)).encode()


LAUGHS = ('<!DOCTYPE lolz [<!ENTITY lol "lol">' + "".join(
    f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10)) + "]>")
HOSTILE_MPDS: dict[str, bytes] = {
    "xxe file": _mpd(prolog='<!DOCTYPE MPD [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>').replace(
        b'type="static"', b'type="static" id="&xxe;"'),
    "xxe network": _mpd(prolog='<!DOCTYPE MPD [<!ENTITY % ext SYSTEM "http://127.0.0.1:9/x.dtd"> %ext;]>'),
    "billion laughs": _mpd(prolog=LAUGHS).replace(b'type="static"', b'type="static" id="&lol9;"'),
    "10^9 segments": _mpd(duration="PT1000000S", segment_ms=1),
    "10^12 s presentation": _mpd(duration="PT1000000000000S"),
    "negative duration": _mpd(duration="-PT10S"),
    "zero segment duration": _mpd(segment_ms=0),
    "truncated": _mpd()[:300],
    "not XML": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
    "empty": b"",
    "wrong root": b"<html><body>hello</body></html>",
    "wrong namespace": _mpd().replace(b"urn:mpeg:dash:schema:mpd:2011", b"urn:evil"),
    "no representations": (HEADER + MPD_OPEN.format(duration="PT10S") + "<Period/></MPD>").encode(),
    "10 MB attribute": _mpd().replace(b'id="v216p"', b'id="' + b"v" * 10_000_000 + b'"'),
    "deep nesting": (HEADER + MPD_OPEN.format(duration="PT10S") + "<Period>" + "<X>" * 100_000 + "</X>" * 100_000
                     + "</Period></MPD>").encode(),
}


@dataclass
class HostileServer:
    """Serves one manifest body at /<title>/manifest.mpd and the packaged clip's files beside it."""

    content: Path
    manifest: bytes = b""
    stall: bool = False  # never answer the manifest request
    requests: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.path)
        if request.path.endswith("/manifest.mpd"):
            if self.stall:
                await asyncio.sleep(3600)
            return web.Response(body=self.manifest, content_type="application/dash+xml")
        path = (self.content / request.path.lstrip("/")).resolve()
        if not path.is_relative_to(self.content.resolve()) or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path)


@asynccontextmanager
async def hostile_server(content: Path) -> AsyncIterator[tuple[HostileServer, str]]:
    server = HostileServer(content=content)
    app = web.Application()
    app.router.add_get("/{tail:.*}", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield server, f"http://127.0.0.1:{port}/{CLEAR_TITLE}/manifest.mpd"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("case", list(HOSTILE_MPDS))
async def test_hostile_manifest_is_a_clear_bootstrap_error(packaged: PackagedTitles, case: str) -> None:
    async with hostile_server(packaged.content_root) as (server, url):
        server.manifest = HOSTILE_MPDS[case]
        tracemalloc.start()
        try:
            # A manifest that parses but has nothing to play is refused by the player as it starts.
            with pytest.raises((BootstrapError, PlaybackError), match="manifest") as info:
                await asyncio.wait_for(play_headless(UrlTarget(url=url), PlayerConfig(decode="none"), fetch=QUICK),
                                       HANG_GUARD_S)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    message = str(info.value)
    assert "Traceback" not in message and len(message) < 1000, message
    assert peak < MEMORY_BUDGET_BYTES + 2 * len(HOSTILE_MPDS[case]), f"{peak / 2**20:.0f} MiB"
    assert all(path.endswith(("/manifest.mpd", "/segments.json")) for path in server.requests), server.requests


async def test_a_manifest_server_that_never_answers_is_a_bootstrap_error(packaged: PackagedTitles) -> None:
    async with hostile_server(packaged.content_root) as (server, url):
        server.stall = True
        with pytest.raises(BootstrapError, match="manifest download failed.*timeout"):
            await asyncio.wait_for(play_headless(UrlTarget(url=url), PlayerConfig(decode="none"), fetch=QUICK),
                                   HANG_GUARD_S)


async def test_the_honest_manifest_still_plays(packaged: PackagedTitles) -> None:
    async with hostile_server(packaged.content_root) as (server, url):
        server.manifest = (packaged.content_root / CLEAR_TITLE / "manifest.mpd").read_bytes()
        report = await asyncio.wait_for(play_headless(UrlTarget(url=url), PlayerConfig(decode="none", speed=8.0)),
                                        HANG_GUARD_S)
    assert report.error is None and report.metrics.segments == 3


def _mutations(seed: bytes) -> st.SearchStrategy[bytes]:
    def splice(data: bytes, at: int, junk: bytes, cut: int) -> bytes:
        at %= len(data) + 1
        return data[:at] + junk + data[at + cut:]

    return st.builds(splice, st.just(seed), st.integers(min_value=0), st.binary(max_size=40) | st.sampled_from(
        [b"<!DOCTYPE x [<!ENTITY e 'x'>]>", b"&e;", b'r="-2"', b'duration="0"', b'timescale="0"', b"</MPD>",
         b'media="http://169.254.169.254/$Number$"', b'<BaseURL>file:///etc/</BaseURL>', b"\x00"]),
        st.integers(min_value=0, max_value=200))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_manifests_bootstrap_or_fail_clearly(packaged: PackagedTitles, data: st.DataObject) -> None:
    seed = (packaged.content_root / CLEAR_TITLE / "manifest.mpd").read_bytes()
    body = data.draw(_mutations(seed))

    async def attempt() -> None:
        async with hostile_server(packaged.content_root) as (server, url), aiohttp.ClientSession() as http:
            server.manifest = body
            try:
                source = await bootstrap_url(Fetcher(http, QUICK), url)
            except BootstrapError as exc:
                message = str(exc)
                assert message and "Traceback" not in message and len(message) < 1000, message
            else:
                assert source.manifest.periods

    asyncio.run(asyncio.wait_for(attempt(), HANG_GUARD_S))
