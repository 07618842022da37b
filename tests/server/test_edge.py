"""The edge cache against a real origin (server.origin, instrumented to count and hold requests), over
real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from server.edge import EDGE, EdgeConfig, RunningEdge
from server.formats.dash import LAURL_PLACEHOLDER
from server.internal import INTERNAL_HEADER
from tests.server.edgekit import (
    INTERNAL_HEADERS,
    LICENSE_URL,
    MANIFEST,
    SEGMENT,
    SEGMENT_BYTES,
    TITLE,
    VERIFY_KEY,
    EdgeFactory,
    OriginProbe,
    cli_edge,
    get,
    object_bytes,
    raw_request,
    signed,
    start_origin,
    title_paths,
    wait_until,
)

# --- signatures ---------------------------------------------------------------------------------

@pytest.mark.parametrize("make_url", [
    pytest.param(lambda: SEGMENT, id="unsigned"),
    pytest.param(lambda: signed(SEGMENT, expires_in_s=-1), id="expired"),
    pytest.param(lambda: signed(SEGMENT, key=b"another-key-of-32-bytes-length!!"), id="wrong-key"),
    pytest.param(lambda: signed(SEGMENT).replace("/s/", "/s/x", 1), id="tampered-payload"),
    pytest.param(lambda: re.sub(r"\.([^/]{4})", r".AAAA", signed(SEGMENT), count=1), id="tampered-mac"),
    pytest.param(lambda: signed(SEGMENT, prefix="/other/"), id="out-of-scope"),
    pytest.param(lambda: "/s/" + "A" * 2000 + SEGMENT, id="oversized"),
])
async def test_bad_or_missing_signatures_get_403_and_never_reach_the_origin(
        edge: RunningEdge, origin: OriginProbe, http: aiohttp.ClientSession, make_url: Callable[[], str]) -> None:
    status, headers, body = await get(http, edge.url + make_url())
    assert status == 403
    assert headers["Content-Type"].startswith("application/json")
    assert "error" in json.loads(body)
    assert not origin.gets


async def test_unsigned_paths_are_served_when_signatures_are_not_required(
        make_edge: EdgeFactory, http: aiohttp.ClientSession) -> None:
    edge = await make_edge(require_signature=False)
    status, _, body = await get(http, edge.url + SEGMENT)
    assert status == 200 and body == object_bytes(SEGMENT)


# --- caching --------------------------------------------------------------------------------------

async def test_first_request_misses_then_hits_keeping_the_origin_headers(
        edge: RunningEdge, origin: OriginProbe, http: aiohttp.ClientSession) -> None:
    status1, headers1, body1 = await get(http, edge.url + signed(SEGMENT))
    status2, headers2, body2 = await get(http, edge.url + signed(SEGMENT))
    assert (status1, status2) == (200, 200)
    assert (headers1["X-Cache"], headers2["X-Cache"]) == ("MISS", "HIT")
    assert body1 == body2 == object_bytes(SEGMENT)
    assert origin.gets[SEGMENT] == 1
    for name in ("Content-Type", "ETag", "Last-Modified", "Cache-Control"):
        assert headers1[name] == headers2[name]
    assert headers1["Content-Type"] == "video/iso.segment"
    assert "immutable" in headers1["Cache-Control"]
    assert headers2["X-Request-ID"]


async def test_fifty_concurrent_misses_make_exactly_one_origin_get(
        edge: RunningEdge, origin: OriginProbe, http: aiohttp.ClientSession) -> None:
    origin.gate.clear()
    url = edge.url + signed(SEGMENT)
    requests = [asyncio.create_task(get(http, url)) for _ in range(50)]
    await wait_until(lambda: edge.edge.coalescer.coalesced == 49)
    origin.gate.set()
    results = await asyncio.gather(*requests)
    assert origin.gets[SEGMENT] == 1
    assert all(status == 200 and body == object_bytes(SEGMENT) for status, _, body in results)


async def test_a_failed_origin_fetch_reaches_every_waiter_as_502(
        edge: RunningEdge, origin: OriginProbe, http: aiohttp.ClientSession) -> None:
    origin.gate.clear()
    origin.answer_status = 503
    url = edge.url + signed(SEGMENT)
    requests = [asyncio.create_task(get(http, url)) for _ in range(20)]
    await wait_until(lambda: edge.edge.coalescer.coalesced == 19)
    origin.gate.set()
    results = await asyncio.wait_for(asyncio.gather(*requests), timeout=10)
    assert origin.gets[SEGMENT] == 1
    assert {status for status, _, _ in results} == {502}
    assert all("error" in json.loads(body) for _, _, body in results)


async def test_origin_timeout_is_a_504(make_edge: EdgeFactory, origin: OriginProbe,
                                       http: aiohttp.ClientSession) -> None:
    edge = await make_edge(origin_timeout_s=0.3)
    origin.gate.clear()
    status, _, body = await asyncio.wait_for(get(http, edge.url + signed(SEGMENT)), timeout=10)
    assert status == 504 and json.loads(body)["error"] == "origin timed out"


async def test_origin_404_is_a_404_and_is_not_cached(edge: RunningEdge, origin: OriginProbe,
                                                    http: aiohttp.ClientSession) -> None:
    missing = f"/{TITLE}/video/v0/99.m4s"
    for _ in range(2):
        status, _, body = await get(http, edge.url + signed(missing))
        assert status == 404 and "error" in json.loads(body)
    assert origin.gets[missing] == 2


async def test_lru_evicts_the_least_recently_used_object_by_bytes(
        make_edge: EdgeFactory, origin: OriginProbe, http: aiohttp.ClientSession) -> None:
    edge = await make_edge(cache_bytes=int(2.5 * SEGMENT_BYTES))
    a, b, c = (f"/{TITLE}/video/v0/{n}.m4s" for n in (1, 2, 3))
    for path in (a, b, a, c):  # a is used again before c arrives, so b is the oldest-used
        status, _, _ = await get(http, edge.url + signed(path))
        assert status == 200
        assert edge.edge.cache.used_bytes <= 2.5 * SEGMENT_BYTES
    assert (await get(http, edge.url + signed(a)))[1]["X-Cache"] == "HIT"
    assert (await get(http, edge.url + signed(b)))[1]["X-Cache"] == "MISS"
    assert origin.gets[b] == 2 and origin.gets[a] == 1
    assert edge.edge.cache.evictions == 2  # b for c, then c for b


async def test_stale_manifest_is_revalidated_with_a_conditional_get(
        content_root: Path, make_edge: EdgeFactory, http: aiohttp.ClientSession) -> None:
    probe = await start_origin(content_root, manifest_max_age_s=0)
    try:
        edge = await make_edge(origin_url=probe.url)
        manifest = f"/{TITLE}/manifest.mpd"
        first = await get(http, edge.url + signed(manifest))
        second = await get(http, edge.url + signed(manifest))
        assert first[2] == second[2]
        assert second[1]["X-Cache"] == "HIT"  # revalidated (origin said 304), body from the cache
        assert probe.gets[manifest] == 2
        assert edge.edge.stats.origin_fetches["not_modified"] == 1
    finally:
        await probe.stop()


async def test_origin_down_fails_fast_while_cached_objects_are_still_served(
        content_root: Path, make_edge: EdgeFactory, http: aiohttp.ClientSession) -> None:
    probe = await start_origin(content_root, manifest_max_age_s=0)
    edge = await make_edge(origin_url=probe.url)
    manifest = f"/{TITLE}/manifest.mpd"
    for path in (SEGMENT, manifest):
        assert (await get(http, edge.url + signed(path)))[0] == 200
    await probe.stop()
    status, headers, _ = await asyncio.wait_for(get(http, edge.url + signed(SEGMENT)), timeout=5)
    assert (status, headers["X-Cache"]) == (200, "HIT")
    status, _, body = await asyncio.wait_for(get(http, edge.url + signed(manifest)), timeout=5)
    assert status == 200 and LICENSE_URL.split("?")[0].encode() in body  # stale, but served
    assert edge.edge.stats.stale_served == 1
    status, _, body = await asyncio.wait_for(get(http, edge.url + signed(f"/{TITLE}/video/v1/1.m4s")), timeout=5)
    assert status == 502 and json.loads(body)["error"].startswith("origin unreachable")


async def test_objects_over_max_object_bytes_stream_through_uncached(
        make_edge: EdgeFactory, origin: OriginProbe, http: aiohttp.ClientSession) -> None:
    edge = await make_edge(max_object_bytes=SEGMENT_BYTES // 2)
    for _ in range(2):
        status, headers, body = await get(http, edge.url + signed(SEGMENT))
        assert status == 200 and headers["X-Cache"] == "MISS" and body == object_bytes(SEGMENT)
    status, headers, body = await get(http, edge.url + signed(SEGMENT), headers={"Range": "bytes=0-9"})
    assert status == 206 and body == object_bytes(SEGMENT)[:10]
    assert SEGMENT not in edge.edge.cache
    assert edge.edge.stats.passthrough == 3


# --- ranges, conditional requests, HEAD ---------------------------------------------------------------

@pytest.mark.parametrize(("range_header", "status", "span"), [
    ("bytes=10-19", 206, (10, 20)),
    ("bytes=990-", 206, (990, 1000)),
    ("bytes=-5", 206, (995, 1000)),
    ("bytes=0-5000", 206, (0, 1000)),
    ("bytes=1000-", 416, None),
    ("bytes=0-1,5-6", 200, (0, 1000)),  # multiple ranges: the whole object (RFC 9110 allows it)
    ("bytes=abc", 200, (0, 1000)),  # unparseable: ignored
])
async def test_ranges_are_served_from_the_cache_on_a_miss_and_on_a_hit(
        edge: RunningEdge, origin: OriginProbe, http: aiohttp.ClientSession,
        range_header: str, status: int, span: tuple[int, int] | None) -> None:
    data = object_bytes(SEGMENT)
    for expected_cache in ("MISS", "HIT"):
        got_status, headers, body = await get(http, edge.url + signed(SEGMENT), headers={"Range": range_header})
        assert got_status == status
        if span is None:
            assert headers["Content-Range"] == f"bytes */{len(data)}"
            assert "error" in json.loads(body)
        else:
            assert headers["X-Cache"] == expected_cache
            assert body == data[span[0]:span[1]]
            if status == 206:
                assert headers["Content-Range"] == f"bytes {span[0]}-{span[1] - 1}/{len(data)}"
    assert origin.gets[SEGMENT] == 1  # the origin is always asked for the whole object, once


async def test_if_range_with_another_etag_gets_the_whole_object(edge: RunningEdge,
                                                                http: aiohttp.ClientSession) -> None:
    status, _, body = await get(http, edge.url + signed(SEGMENT), headers={"Range": "bytes=0-9", "If-Range": '"old"'})
    assert status == 200 and len(body) == SEGMENT_BYTES


async def test_if_none_match_gets_304_and_head_gets_headers_only(edge: RunningEdge,
                                                                 http: aiohttp.ClientSession) -> None:
    _, headers, _ = await get(http, edge.url + signed(SEGMENT))
    status, _, body = await get(http, edge.url + signed(SEGMENT), headers={"If-None-Match": headers["ETag"]})
    assert status == 304 and body == b""
    async with http.head(edge.url + signed(SEGMENT)) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(SEGMENT_BYTES)
        assert await resp.read() == b""


async def test_other_methods_get_405_json(edge: RunningEdge, http: aiohttp.ClientSession) -> None:
    async with http.post(edge.url + signed(SEGMENT), data=b"x") as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == "GET, HEAD, OPTIONS"
        assert "error" in await resp.json()


# --- MPD rewriting --------------------------------------------------------------------------------

async def test_manifest_license_url_is_rewritten_with_the_right_length_etag_and_max_age(
        edge: RunningEdge, origin: OriginProbe, http: aiohttp.ClientSession) -> None:
    manifest = f"/{TITLE}/manifest.mpd"
    origin_headers = (await get(http, origin.url + manifest))[1]
    for expected_cache in ("MISS", "HIT"):
        status, headers, body = await get(http, edge.url + signed(manifest))
        assert status == 200 and headers["X-Cache"] == expected_cache
        assert LAURL_PLACEHOLDER.encode() not in body
        assert b"<dashif:Laurl>https://gw.example/license?a=1&amp;b=2</dashif:Laurl>" in body
        assert int(headers["Content-Length"]) == len(body)
        assert headers["Cache-Control"] == "max-age=2"
        assert headers["ETag"] != origin_headers["ETag"]
        assert headers["Content-Type"] == "application/dash+xml"
    # The cache holds the origin's bytes; the rewrite happens per response.
    assert edge.edge.cache.peek(manifest).body == MANIFEST.encode()  # type: ignore[union-attr]


# --- pre-positioning ------------------------------------------------------------------------------

async def test_preposition_warms_every_object_of_a_title(edge: RunningEdge, origin: OriginProbe,
                                                         http: aiohttp.ClientSession) -> None:
    async with http.post(edge.url + f"/internal/preposition/{TITLE}", headers=INTERNAL_HEADERS) as resp:
        assert resp.status == 200
        counts = await resp.json()
    paths = title_paths()
    assert counts["objects"] == len(paths) == 13
    assert (counts["fetched"], counts["already_cached"], counts["failed"]) == (len(paths), 0, 0)
    for path in paths:
        status, headers, _ = await get(http, edge.url + signed(path))
        assert (status, headers["X-Cache"]) == (200, "HIT"), path
        assert origin.gets[path] == 1
    async with http.post(edge.url + f"/internal/preposition/{TITLE}", headers=INTERNAL_HEADERS) as resp:
        assert (await resp.json())["already_cached"] == len(paths)


@pytest.mark.parametrize(("title", "status"), [("nosuchtitle", 404), ("bad title!", 400)])
async def test_preposition_of_an_unknown_or_malformed_title_fails_cleanly(
        edge: RunningEdge, http: aiohttp.ClientSession, title: str, status: int) -> None:
    async with http.post(edge.url + f"/internal/preposition/{title}", headers=INTERNAL_HEADERS) as resp:
        assert resp.status == status
        assert "error" in await resp.json()


# --- CMCD and the access log ---------------------------------------------------------------------------

async def test_cmcd_from_query_and_headers_lands_in_the_access_log(
        edge: RunningEdge, http: aiohttp.ClientSession, access_lines: list[dict[str, Any]]) -> None:
    url = edge.url + signed(SEGMENT) + "?CMCD=" + aiohttp.helpers.quote("bl=21300,br=3200,bs,ot=v,mtp=25400", safe="")
    headers = {"CMCD-Session": 'sid="6e2fb550-c457",cid="demo",st=v', "CMCD-Request": "su,nor=\"2.m4s\""}
    assert (await get(http, url, headers=headers))[0] == 200
    await wait_until(lambda: any(line.get("cmcd") for line in access_lines))
    line = next(line for line in access_lines if line.get("cmcd"))
    assert line["cmcd"] == {"bl": 21300, "br": 3200, "bs": True, "ot": "v", "mtp": 25400, "sid": "6e2fb550-c457",
                            "cid": "demo", "st": "v", "su": True, "nor": "2.m4s"}
    assert line["service"] == "edge" and line["cache"] == "MISS" and line["status"] == 200
    assert "<token>" in line["path"]
    token = signed(SEGMENT).split("/")[2]
    assert all(token not in json.dumps(entry) for entry in access_lines)


async def test_malformed_cmcd_is_logged_and_never_fails_the_request(
        edge: RunningEdge, http: aiohttp.ClientSession, access_lines: list[dict[str, Any]]) -> None:
    headers = {"CMCD-Request": "bl=lots", "CMCD-Object": "br=3200"}
    assert (await get(http, edge.url + signed(SEGMENT), headers=headers))[0] == 200
    await wait_until(lambda: any("cmcd_error" in line for line in access_lines))
    line = next(line for line in access_lines if "cmcd_error" in line)
    assert "bl" in line["cmcd_error"] and line["cmcd"] == {"br": 3200}


# --- no open proxy, no traversal --------------------------------------------------------------------

@pytest.fixture
async def elsewhere() -> AsyncIterator[tuple[int, Counter[str]]]:
    """A server the edge must never talk to: counts whatever reaches it."""
    hits: Counter[str] = Counter()

    async def record(request: web.Request) -> web.Response:
        hits[request.path] += 1
        return web.Response(text="elsewhere")

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield site.port, hits
    await runner.cleanup()


async def test_absolute_form_targets_and_host_headers_never_reach_another_server(
        edge: RunningEdge, origin: OriginProbe, elsewhere: tuple[int, Counter[str]]) -> None:
    port, hits = elsewhere
    target = f"http://127.0.0.1:{port}"
    cases = [
        (f"GET {target}{signed(SEGMENT)} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n", 200),
        (f"GET {target}/{TITLE}/manifest.mpd HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n", 403),
        (f"GET {signed(f'/{TITLE}/video/v1/1.m4s')} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
         f"X-Forwarded-Host: 127.0.0.1:{port}\r\n", 200),
        (f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n", None),
    ]
    for head, expected in cases:
        status, body = await raw_request(edge.port, (head + "Connection: close\r\n\r\n").encode())
        if expected is None:
            assert 400 <= status < 500
        else:
            assert status == expected
            if expected == 200:
                assert body.startswith(b"/" + TITLE.encode())  # the origin's bytes
    assert not hits
    assert sum(origin.gets.values()) == 2


async def test_an_origin_redirect_is_not_followed(edge: RunningEdge, origin: OriginProbe,
                                                  elsewhere: tuple[int, Counter[str]],
                                                  http: aiohttp.ClientSession) -> None:
    port, hits = elsewhere
    origin.redirect_to = f"http://127.0.0.1:{port}/stolen"
    status, _, _ = await get(http, edge.url + signed(SEGMENT))
    assert status == 502 and not hits


@pytest.mark.parametrize("path", [
    f"{signed('/demo/x')[:-2]}/../../etc/passwd",
    signed(f"/{TITLE}/%2e%2e/%2e%2e/etc/passwd"),
    signed(f"/{TITLE}/video/v0/1.m4s%00.txt"),
    signed(f"/{TITLE}/keys.json"),
    signed(f"/{TITLE}/.hidden"),
])
async def test_traversal_nul_and_non_layout_paths_are_refused_before_the_origin(
        edge: RunningEdge, origin: OriginProbe, path: str) -> None:
    status, body = await raw_request(edge.port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert 400 <= status < 500
    assert "error" in json.loads(body)
    assert not origin.gets


async def test_unsigned_mode_refuses_traversal_too(make_edge: EdgeFactory, origin: OriginProbe) -> None:
    edge = await make_edge(require_signature=False)
    for path in (f"/{TITLE}/%2e%2e/secret", f"/{TITLE}/../{TITLE}/keys.json", "/%00/manifest.mpd"):
        status, _ = await raw_request(edge.port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        assert 400 <= status < 500, path
    assert not origin.gets


# --- CORS -----------------------------------------------------------------------------------------

async def test_cors_allows_configured_origins_only(make_edge: EdgeFactory, http: aiohttp.ClientSession) -> None:
    edge = await make_edge(allowed_origins=("https://player.example",))
    _, headers, _ = await get(http, edge.url + signed(SEGMENT), headers={"Origin": "https://player.example"})
    assert headers["Access-Control-Allow-Origin"] == "https://player.example"
    assert "X-Cache" in headers["Access-Control-Expose-Headers"]
    assert "Content-Range" in headers["Access-Control-Expose-Headers"]
    _, headers, _ = await get(http, edge.url + signed(SEGMENT), headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in headers

    preflight = {"Origin": "https://player.example", "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "range, cmcd-request"}
    async with http.options(edge.url + signed(SEGMENT), headers=preflight) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == "https://player.example"
        assert "GET" in resp.headers["Access-Control-Allow-Methods"]
        assert "CMCD-Request" in resp.headers["Access-Control-Allow-Headers"]
    async with http.options(edge.url + signed(SEGMENT), headers={**preflight, "Origin": "https://evil.example"}) as resp:
        assert resp.status == 403
    for refused in ({"Access-Control-Request-Method": "POST"}, {"Access-Control-Request-Headers": "authorization"}):
        async with http.options(edge.url + signed(SEGMENT), headers={**preflight, **refused}) as resp:
            assert resp.status == 403 and "error" in await resp.json()
    _, headers, _ = await get(http, edge.url + SEGMENT, headers={"Origin": "https://player.example"})
    assert headers["Access-Control-Allow-Origin"] == "https://player.example"  # errors are readable too
    fault = {"error_status": 503, "duration_s": 30}
    async with http.post(edge.url + "/internal/faults", json=fault,
                         headers=INTERNAL_HEADERS) as resp:
        assert resp.status == 200
    status, headers, _ = await get(http, edge.url + signed(SEGMENT), headers={"Origin": "https://player.example"})
    assert status == 503 and "Access-Control-Allow-Origin" not in headers  # a failing node grants nothing


# --- metrics, health, heartbeats -----------------------------------------------------------------------

def metric(text: str, name: str) -> float:
    match = re.search(rf"^abrkit_{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match is not None, name
    return float(match.group(1))


async def test_metrics_count_hits_misses_bytes_and_origin_fetches(edge: RunningEdge,
                                                                  http: aiohttp.ClientSession) -> None:
    for _ in range(2):
        await get(http, edge.url + signed(SEGMENT))
    await get(http, edge.url + SEGMENT)  # 403
    async with http.get(edge.url + "/metrics") as resp:
        text = await resp.text()
    assert metric(text, "edge_cache_hits_total") == 1
    assert metric(text, "edge_cache_misses_total") == 1
    assert metric(text, "edge_cache_hit_ratio") == 0.5
    assert metric(text, "edge_bytes_served_total") == 2 * SEGMENT_BYTES
    assert metric(text, "edge_cache_bytes") == SEGMENT_BYTES
    assert metric(text, 'edge_origin_fetches_total{outcome="ok"}') == 1
    assert metric(text, 'edge_requests_total{status="200"}') == 2
    assert metric(text, 'edge_requests_total{status="403"}') == 1
    async with http.get(edge.url + "/healthz") as resp:
        health = await resp.json()
    assert health["status"] == "ok" and health["edge_id"] == "edge-test" and health["cache_objects"] == 1


@dataclass
class Steering:
    beats: list[dict[str, Any]] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)
    status: int = 200
    url: str = ""


@pytest.fixture
async def steering() -> AsyncIterator[Steering]:
    receiver = Steering()

    async def heartbeat(request: web.Request) -> web.Response:
        receiver.beats.append(await request.json())
        receiver.auth.append(request.headers.get(INTERNAL_HEADER, ""))
        return web.json_response({}, status=receiver.status)

    app = web.Application()
    app.router.add_post("/internal/edges/heartbeat", heartbeat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.url = f"http://127.0.0.1:{site.port}"
    yield receiver
    await runner.cleanup()


async def test_heartbeats_report_url_load_and_cached_titles(
        make_edge: EdgeFactory, steering: Steering, http: aiohttp.ClientSession) -> None:
    edge = await make_edge(steering_url=steering.url, heartbeat_s=0.05)
    await wait_until(lambda: len(steering.beats) >= 2)
    assert steering.beats[0] == {"edge_id": "edge-test", "url": edge.url, "healthy": True, "load": 0,
                                 "cached_titles": []}
    assert steering.auth[0] == INTERNAL_HEADERS[INTERNAL_HEADER]
    await get(http, edge.url + signed(SEGMENT))
    await wait_until(lambda: steering.beats[-1]["cached_titles"] == [TITLE])


async def test_heartbeat_failures_are_logged_once_per_outage_and_do_not_stop_the_edge(
        make_edge: EdgeFactory, steering: Steering, http: aiohttp.ClientSession,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="abrkit.edge")
    steering.status = 503
    edge = await make_edge(steering_url=steering.url, heartbeat_s=0.02)
    await wait_until(lambda: len(steering.beats) >= 5)
    warnings = [r for r in caplog.records if r.name == "abrkit.edge" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "heartbeat" in warnings[0].getMessage()
    assert (await get(http, edge.url + signed(SEGMENT)))[0] == 200
    steering.status = 200
    await wait_until(lambda: any("accepted again" in r.getMessage() for r in caplog.records))
    await edge.stop()
    assert not [t for t in asyncio.all_tasks() if t.get_name().endswith("-heartbeat")]


async def test_heartbeats_to_an_unreachable_steering_api_never_crash_the_edge(
        make_edge: EdgeFactory, http: aiohttp.ClientSession) -> None:
    edge = await make_edge(steering_url="http://127.0.0.1:9", heartbeat_s=0.02)
    await wait_until(lambda: edge.edge.stats.heartbeat_failures >= 3)
    assert (await get(http, edge.url + "/healthz"))[0] == 200


# --- config ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides", [
    {"edge_id": ""}, {"origin_url": "ftp://x"}, {"origin_url": "http://user:pw@host"},
    {"origin_url": "http://host/?q=1"}, {"url_verify_key": b"short"}, {"internal_token": b"short"}, {"port": 70000},
    {"cache_bytes": -1}, {"heartbeat_s": 0}, {"allowed_origins": ("https://a.example/path",)},
    {"origin_timeout_s": 0}, {"max_object_bytes": 0}, {"workers": 0}, {"steering_url": "nope"},
])
def test_config_rejects_bad_values(overrides: dict[str, Any]) -> None:
    settings: dict[str, Any] = {"edge_id": "e", "origin_url": "http://127.0.0.1:1", "url_verify_key": VERIFY_KEY}
    with pytest.raises(ValueError):
        EdgeConfig(**{**settings, **overrides})


# --- several worker processes -----------------------------------------------------------------------

async def test_cli_edge_with_two_workers_shares_one_port_and_warms_every_worker(
        origin: OriginProbe, tmp_path: Path, http: aiohttp.ClientSession) -> None:
    async with cli_edge(origin, tmp_path) as (_, url):
        async with http.post(url + f"/internal/preposition/{TITLE}", headers=INTERNAL_HEADERS) as resp:
            counts = await resp.json()
        assert counts["workers"] == 2 and counts["failed"] == 0
        assert counts["fetched"] == 2 * len(title_paths())  # each worker has its own cache
        objects_per_worker = len(title_paths()) + 1  # and segments.json
        assert origin.gets[SEGMENT] <= 2
        for _ in range(4):  # new connections land on either worker: all of them hit
            async with aiohttp.ClientSession() as fresh:
                assert (await get(fresh, url + signed(SEGMENT)))[1]["X-Cache"] == "HIT"
        async with http.get(url + "/metrics") as resp:
            text = await resp.text()
        assert metric(text, "edge_cache_objects") == 2 * objects_per_worker
        assert metric(text, "edge_cache_hits_total") == 4


def spawned_workers(parent_pid: int) -> list[int]:
    """The worker processes `abrkit edge --workers N` (pid `parent_pid`) spawned (not its resource tracker)."""
    workers = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if ppid == parent_pid and b"spawn_main" in cmdline:
            workers.append(int(stat.parent.name))
    return sorted(workers)


async def test_cli_edge_worker_killed_from_outside_is_restarted_and_serves_again(
        origin: OriginProbe, tmp_path: Path, http: aiohttp.ClientSession) -> None:
    async with cli_edge(origin, tmp_path) as (proc, url):
        assert proc.stderr is not None
        workers = spawned_workers(proc.pid)
        assert len(workers) == 2
        victim = workers[1]
        os.kill(victim, signal.SIGKILL)
        logged: list[str] = []
        while not any("restarted" in line for line in logged):
            logged.append((await asyncio.wait_for(proc.stderr.readline(), timeout=30)).decode())
        assert any(re.search(rf"service edge multi worker \d \(pid {victim}\) was killed by SIGKILL; "
                             r"restarting it in 0.1 s \(restart 1\)", line) for line in logged), logged
        after = spawned_workers(proc.pid)
        assert len(after) == 2 and victim not in after
        async with http.post(url + f"/internal/preposition/{TITLE}", headers=INTERNAL_HEADERS) as resp:
            counts = await resp.json()
        assert counts["workers"] == 2 and counts["failed"] == 0  # both warmed: the new one is a sibling again
        answered: set[int] = set()
        for _ in range(60):  # the kernel spreads new connections over both: the new one answers too
            async with aiohttp.ClientSession() as fresh:
                status, _, body = await get(fresh, url + "/healthz")
            assert status == 200
            answered.add(json.loads(body)["worker"])
            if answered == {0, 1}:
                break
        assert answered == {0, 1}


def test_edge_app_state_is_per_app() -> None:
    config = EdgeConfig(edge_id="e", origin_url="http://127.0.0.1:1", url_verify_key=VERIFY_KEY)
    from server.edge import create_app
    first, second = create_app(config), create_app(config)
    assert first[EDGE] is not second[EDGE]
    assert first[EDGE].cache is not second[EDGE].cache
