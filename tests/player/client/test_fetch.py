"""The fetcher against servers that misbehave the way CDNs do: redirects, a BaseURL that 404s or
stalls, Range ignored or answered wrongly, bodies cut short. Real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from player.client.fetch import (
    ERROR_TEXT_CHARS,
    Attempt,
    FetchConfig,
    Fetcher,
    FetchError,
    alternative_bases,
    error_text,
    requested_range,
)
from tests.interop.server import MisbehavingServer, misbehaving_servers
from tests.player.conftest import serving_app

QUICK = FetchConfig(connect_timeout_s=0.5, first_byte_timeout_s=0.5, read_timeout_s=0.5, backoff_base_s=0.01,
                    backoff_max_s=0.02)
BODY = bytes(range(256)) * 64  # 16 KiB, every byte position recognisable


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "file.bin").write_bytes(BODY)
    (tmp_path / "t" / "manifest.mpd").write_text("<MPD/> @OTHER_ORIGIN@")
    return tmp_path


@asynccontextmanager
async def fetcher(config: FetchConfig = QUICK) -> AsyncIterator[tuple[Fetcher, list[Attempt]]]:
    seen: list[Attempt] = []
    async with aiohttp.ClientSession() as http:
        yield Fetcher(http, config, observer=seen.append), seen


@asynccontextmanager
async def servers(root: Path) -> AsyncIterator[tuple[MisbehavingServer, MisbehavingServer]]:
    async with misbehaving_servers(root) as pair:
        yield pair


async def test_a_redirected_manifest_names_the_url_that_answered(root: Path) -> None:
    async with servers(root) as (a, _), fetcher() as (f, seen):
        result = await f.fetch([f"{a.origin}/redirect/t/manifest.mpd"])
    assert result.url == f"{a.origin}/plain/t/manifest.mpd"  # relative references resolve against this
    assert [x.status for x in seen] == [302, 200] and seen[0].note and "redirect to" in seen[0].note
    assert f.counts["redirects"] == 1


async def test_media_redirected_to_another_host_is_followed(root: Path) -> None:
    async with servers(root) as (a, b), fetcher() as (f, _):
        result = await f.fetch([f"{a.origin}/redirect-media/t/file.bin"])
    assert result.body == BODY and result.url.startswith(b.origin)
    assert a.requests[0].status == 307 and b.requests[0].status == 200


@pytest.mark.parametrize(("location", "problem"), [
    ("/loop", "too many redirects (more than 5)"),
    ("ftp://127.0.0.1/x", "a redirect to a non-HTTP URL (ftp:) is refused"),
    ("javascript:alert(1)", "non-HTTP URL (javascript:)"),
    (None, "a redirect without a Location header"),
])
async def test_bad_redirects_are_clear_errors(location: str | None, problem: str) -> None:
    app = web.Application()

    async def loop(request: web.Request) -> web.Response:
        headers = {"Location": location} if location else {}
        return web.Response(status=302, headers=headers)

    app.router.add_get("/loop", loop)
    async with serving_app(app) as origin, fetcher() as (f, seen):
        with pytest.raises(FetchError) as info:
            await f.fetch([f"{origin}/loop"])
    assert problem in str(info.value) and info.value.permanent
    assert len(seen) == (6 if location == "/loop" else 1)


async def test_redirects_keep_posts_only_for_307_and_drop_authorization_across_hosts() -> None:
    app_a, app_b = web.Application(), web.Application()
    seen: list[tuple[str, str, str | None]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append((request.path, request.method, request.headers.get("Authorization")))
        if request.path == "/see-other":
            return web.Response(status=303, headers={"Location": "/answer"})
        if request.path == "/temporary":
            return web.Response(status=307, headers={"Location": other + "/answer"})
        return web.json_response({"ok": True})

    for app in (app_a, app_b):
        app.router.add_route("*", "/{path:.*}", record)
    async with serving_app(app_a) as origin, serving_app(app_b) as other, fetcher() as (f, _):
        await f.fetch([f"{origin}/see-other"], method="POST", json_body={"x": 1}, headers={"Authorization": "Bearer t"})
        await f.fetch([f"{origin}/temporary"], method="POST", json_body={"x": 1}, headers={"Authorization": "Bearer t"})
    assert seen == [("/see-other", "POST", "Bearer t"), ("/answer", "GET", "Bearer t"),  # same host keeps it
                    ("/temporary", "POST", "Bearer t"), ("/answer", "POST", None)]  # another host never sees it


async def test_a_404_on_the_first_base_url_fails_over_to_the_next(root: Path) -> None:
    async with servers(root) as (a, _), fetcher() as (f, seen):
        result = await f.fetch([f"{a.origin}/missing/t/file.bin", f"{a.origin}/plain/t/file.bin"])
    assert result.body == BODY and [x.status for x in seen] == [404, 200]
    assert f.counts["not_here"] == 1


async def test_404_everywhere_is_a_permanent_error_naming_all_alternatives(root: Path) -> None:
    async with servers(root) as (a, _), fetcher() as (f, seen):
        with pytest.raises(FetchError, match=r"HTTP 404 \(on all 2 alternatives\)") as info:
            await f.fetch([f"{a.origin}/missing/t/file.bin", f"{a.origin}/missing/t/other.bin"])
    assert info.value.permanent and info.value.status == 404 and len(seen) == 2


async def test_a_403_ends_the_request_at_once() -> None:
    async def forbidden(request: web.Request) -> web.Response:
        return web.Response(status=403)

    app = web.Application()
    app.router.add_get("/{p:.*}", forbidden)
    async with serving_app(app) as origin, fetcher() as (f, seen):
        with pytest.raises(FetchError, match="HTTP 403"):
            await f.fetch([f"{origin}/a", f"{origin}/b"])
    assert len(seen) == 1


async def test_a_400_names_itself_with_the_servers_words() -> None:
    """The bundled servers say what is wrong in a JSON `error`: the request's error carries it (the
    status alone said nothing about which limit a blocking playlist reload broke)."""
    said = "blocking playlist reload: _HLS_msn=120&_HLS_part=7 is more than 6 parts past the playlist's last part"

    async def bad(request: web.Request) -> web.Response:
        return web.json_response({"error": said}, status=400)

    app = web.Application()
    app.router.add_get("/{p:.*}", bad)
    async with serving_app(app) as origin, fetcher() as (f, seen):
        with pytest.raises(FetchError) as info:
            await f.fetch([f"{origin}/live/playlist.m3u8?_HLS_msn=120&_HLS_part=7"])
    assert str(info.value).endswith(f": HTTP 400: {said}") and info.value.server_text == said
    assert info.value.status == 400 and info.value.permanent
    assert [a.error for a in seen] == ["HTTP 400"]  # an attempt's error stays its kind (reports count them)


async def test_a_hostile_error_body_cannot_forge_log_lines() -> None:
    """Newlines, terminal escapes, a bidi override and a megabyte: one bounded line of printable text."""
    hostile = ("oops\r\n2026-01-01 INFO login ok user=admin\x1b[2J\u202etxt.exe\x00" + "A" * 1_000_000).encode()

    async def bad(request: web.Request) -> web.Response:
        return web.Response(status=403, body=hostile, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/{p:.*}", bad)
    async with serving_app(app) as origin, fetcher() as (f, _):
        with pytest.raises(FetchError) as info:
            await f.fetch([f"{origin}/a"])
    text = info.value.server_text
    assert text is not None and text.startswith("oops 2026-01-01 INFO login ok user=admin [2J txt.exe AAA")
    assert len(text) <= ERROR_TEXT_CHARS and text.endswith("...")
    assert str(info.value).isprintable() and "\n" not in str(info.value)


async def test_an_error_body_that_trickles_is_read_within_one_read_timeout() -> None:
    """A 403 whose body comes a byte at a time (every 20 ms, never ending): its text is what came within
    one read timeout (0.5 s, about 25 bytes), not a read timeout per byte until 2 KiB (41 s)."""
    sent: list[int] = [0]

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=403, headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        try:
            while sent[0] < 5000:
                await response.write(b"x")
                sent[0] += 1
                await asyncio.sleep(0.02)
        except (ConnectionError, RuntimeError):
            pass
        return response

    app = web.Application()
    app.router.add_get("/{p:.*}", trickle)
    async with serving_app(app) as origin, fetcher() as (f, _):
        with pytest.raises(FetchError) as info:
            await f.fetch([f"{origin}/a"])
    text = info.value.server_text
    assert text is not None and set(text) == {"x"}
    assert len(text) < 200 and sent[0] < 500  # before: the reads went on to 2,048 bytes


async def test_a_5xx_that_never_recovers_says_what_the_server_said() -> None:
    async def unavailable(request: web.Request) -> web.Response:
        return web.json_response({"error": "the playlist did not reach _HLS_msn=9 within 12 s"}, status=503)

    app = web.Application()
    app.router.add_get("/{p:.*}", unavailable)
    async with serving_app(app) as origin, fetcher(replace(QUICK, attempts=2)) as (f, _):
        with pytest.raises(FetchError, match=r"failed after 2 attempts .*: HTTP 503: the playlist did not reach"):
            await f.fetch([f"{origin}/a"])


@pytest.mark.parametrize("body,content_type,expected", [
    (b"", "", ""), (b'{"error": "no"}', "application/json; charset=utf-8", "no"),
    (b'{"error": 5}', "application/json", '{"error": 5}'), (b"{not json", "application/json", "{not json"),
    (b"<h1>502  Bad\tGateway</h1>", "text/html", "<h1>502 Bad Gateway</h1>"),
    ("caf\u00e9 \u2028ok".encode(), "text/plain", "caf\u00e9 ok"), (b"\xff\xfe", "", "\ufffd\ufffd")])
def test_error_text(body: bytes, content_type: str, expected: str) -> None:
    assert error_text(body, content_type) == expected


@pytest.mark.parametrize("failing", ["error503", "stall", "truncate"])
async def test_every_alternative_gets_a_try_and_a_failing_base_url_is_skipped_next_time(root: Path,
                                                                                       failing: str) -> None:
    config = replace(QUICK, attempts=1)  # still one try per alternative
    async with servers(root) as (a, _), fetcher(config) as (f, seen):
        urls = [f"{a.origin}/{failing}/t/file.bin", f"{a.origin}/plain/t/file.bin"]
        first = await f.fetch(urls)
        started = time.monotonic()
        second = await f.fetch(urls)  # the failed BaseURL (same host) now comes last
    assert first.body == second.body == BODY
    assert [x.url.split("/")[3] for x in seen] == [failing, "plain", "plain"]
    assert time.monotonic() - started < 0.4


async def test_a_206_must_carry_the_range_asked_for(root: Path) -> None:
    async with servers(root) as (a, _), fetcher() as (f, seen):
        result = await f.fetch([f"{a.origin}/badrange/t/file.bin", f"{a.origin}/plain/t/file.bin"],
                               headers={"Range": "bytes=1000-1999"})
    assert result.body == BODY[1000:2000] and result.status == 206
    assert "Content-Range bytes 900-1899" in (seen[0].error or "") and f.counts["bad_content_range"] == 1


@pytest.mark.parametrize(("first", "last"), [(0, 99), (1000, 1999), (len(BODY) - 10, len(BODY) - 1)])
async def test_a_server_ignoring_range_has_the_range_cut_out_and_counted(root: Path, first: int, last: int) -> None:
    async with servers(root) as (a, _), fetcher() as (f, seen):
        result = await f.fetch([f"{a.origin}/norange/t/file.bin"], headers={"Range": f"bytes={first}-{last}"})
    assert result.body == BODY[first:last + 1] and result.range_ignored and result.status == 200
    assert f.counts["range_ignored"] == 1 and seen[-1].note and "ignored Range" in seen[-1].note


async def test_a_range_beyond_a_whole_body_is_a_short_body(root: Path) -> None:
    async with servers(root) as (a, _), fetcher() as (f, _):
        with pytest.raises(FetchError, match="short body"):
            await f.fetch([f"{a.origin}/norange/t/file.bin"], headers={"Range": f"bytes=0-{len(BODY) + 5}"})


async def test_a_body_cut_short_is_retried_and_named(root: Path) -> None:
    async with servers(root) as (a, _), fetcher() as (f, seen):
        with pytest.raises(FetchError, match=r"short body: 8192 of 16384 bytes"):
            await f.fetch([f"{a.origin}/truncate/t/file.bin"])
    assert len(seen) == QUICK.attempts


def test_range_headers_and_alternative_bases() -> None:
    assert requested_range({"range": "bytes=5-9"}) == (5, 9) and requested_range({}) is None
    with pytest.raises(ValueError, match="bytes=first-last"):
        requested_range({"Range": "bytes=5-"})
    assert alternative_bases(["http://h/cdn1/v/1.m4s", "http://h/cdn2/v/1.m4s"]) == {
        "http://h/cdn1/v/1.m4s": "http://h/cdn1/", "http://h/cdn2/v/1.m4s": "http://h/cdn2/"}
    assert alternative_bases(["http://e1/s/x.m4s"]) == {"http://e1/s/x.m4s": "http://e1"}


class _CountingRandom(random.Random):
    """Counts the backoffs the fetcher draws (each wait is one `uniform` call)."""

    def __init__(self) -> None:
        super().__init__(0)
        self.backoffs = 0

    def uniform(self, a: float, b: float) -> float:
        self.backoffs += 1
        return super().uniform(a, b)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_failover_follows_the_steering_ranking_across_a_dead_region(root: Path) -> None:
    # Ranked for an eu client: two eu edges (dead: their region is down), then the us edges.
    dead = [f"http://127.0.0.1:{_closed_port()}" for _ in range(2)]
    rng = _CountingRandom()
    async with misbehaving_servers(root) as (us1, us2), aiohttp.ClientSession() as http:
        seen: list[Attempt] = []
        f = Fetcher(http, replace(QUICK, backoff_base_s=5.0, backoff_max_s=5.0), rng=rng, observer=seen.append)
        ranking = [*dead, us1.origin, us2.origin]
        first = await f.fetch([f"{base}/plain/t/file.bin" for base in ranking])
        assert [a.url.split("/plain")[0] for a in seen] == [*dead, us1.origin]
        assert rng.backoffs == 0  # the next edge in the ranking at once, no backoff per dead edge
        seen.clear()
        second = await f.fetch([f"{base}/plain/t/file.bin" for base in ranking])
        assert [a.url.split("/plain")[0] for a in seen] == [us1.origin]  # the dead region is skipped now
    assert first.body == second.body == BODY


async def test_coming_back_to_a_failed_alternative_backs_off(root: Path) -> None:
    rng = _CountingRandom()
    async with servers(root) as (a, _), aiohttp.ClientSession() as http:
        f = Fetcher(http, replace(QUICK, attempts=3), rng=rng)
        with pytest.raises(FetchError):
            await f.fetch([f"{a.origin}/error503/t/file.bin"])
    assert rng.backoffs == 2  # three tries of the one alternative, a wait before each retry
