"""The edge's cache-hit fast path (server/edgefast.py) answers exactly as the full handler does: same
headers and body, same access-log line, same metrics, requests on one connection in order, and every
request it must not answer (revoked login, fault, range, conditional, CORS, HTTP/1.0, close) left to
the full handler."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.edge import EdgeConfig, RunningEdge, create_app
from server.edgefast import EdgeRunner
from server.edgeorigin import MEMORY_FILE_MIN_BYTES, MemoryFile
from server.revocation import RevocationStore, create_store
from server.stack import make_runner as stack_runner
from tests.server.edgekit import (
    INTERNAL_HEADERS,
    SEGMENT,
    TITLE,
    VERIFY_KEY,
    EdgeFactory,
    OriginProbe,
    get,
    object_bytes,
    signed,
    wait_until,
)

VOLATILE = {"Date", "X-Request-ID"}


def _stable(headers: Any) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name not in VOLATILE}


async def test_a_hit_is_answered_on_the_fast_path_with_the_full_handlers_headers(
        edge: RunningEdge, http: aiohttp.ClientSession) -> None:
    url = edge.url + signed(SEGMENT)
    status, miss_headers, body = await get(http, url)
    assert status == 200 and miss_headers["X-Cache"] == "MISS"
    status, fast_headers, fast_body = await get(http, url)
    assert edge.edge.stats.fast_hits == 1
    # A conditional that does not match is a plain 200 HIT from the full handler.
    status_full, full_headers, full_body = await get(http, url, headers={"If-None-Match": '"other"'})
    assert edge.edge.stats.fast_hits == 1 and edge.edge.stats.cache_hits == 2
    assert status == status_full == 200
    assert fast_body == full_body == body == object_bytes(SEGMENT)
    assert _stable(fast_headers) == _stable(full_headers)
    assert fast_headers["X-Cache"] == "HIT" and fast_headers["Content-Length"] == str(len(body))
    assert len(fast_headers["X-Request-ID"]) == 32 and "GMT" in fast_headers["Date"]
    async with http.get(edge.url + "/metrics") as resp:
        metrics = await resp.text()
    assert "abrkit_edge_cache_fast_hits_total 1" in metrics
    assert "abrkit_edge_cache_hits_total 2" in metrics
    assert 'abrkit_edge_requests_total{status="200"} 3' in metrics


async def test_a_fast_hit_is_access_logged_like_a_full_one(
        edge: RunningEdge, http: aiohttp.ClientSession, access_lines: list[dict[str, Any]]) -> None:
    url = edge.url + signed(SEGMENT) + "?CMCD=" + aiohttp.helpers.quote("bl=21300,br=3200,ot=v", safe="")
    cmcd_headers = {"CMCD-Session": 'sid="s-1"', "X-Request-ID": "client-id-1"}
    assert (await get(http, url, headers=cmcd_headers))[0] == 200  # miss
    assert (await get(http, url, headers=cmcd_headers))[0] == 200  # fast hit
    assert (await get(http, url, headers={**cmcd_headers, "If-None-Match": '"other"'}))[0] == 200  # full hit
    assert edge.edge.stats.fast_hits == 1
    await wait_until(lambda: len(access_lines) >= 3)
    miss, fast, full = access_lines[:3]
    assert miss["cache"] == "MISS" and fast["cache"] == full["cache"] == "HIT"
    for key in ("service", "request_id", "method", "path", "status", "bytes", "remote", "edge_id", "cmcd"):
        assert fast[key] == full[key], key
    assert fast.keys() == full.keys()
    assert fast["request_id"] == "client-id-1" and "<token>" in fast["path"]
    assert fast["cmcd"] == {"bl": 21300, "br": 3200, "ot": "v", "sid": "s-1"}
    assert edge.edge.stats.cmcd_requests == 3


async def test_an_insane_request_id_is_replaced_on_the_fast_path(edge: RunningEdge,
                                                                 http: aiohttp.ClientSession) -> None:
    url = edge.url + signed(SEGMENT)
    await get(http, url)
    _, headers, _ = await get(http, url, headers={"X-Request-ID": "bad id with spaces"})
    assert edge.edge.stats.fast_hits == 1
    assert headers["X-Request-ID"] != "bad id with spaces" and len(headers["X-Request-ID"]) == 32


async def _exchange(port: int, request: bytes, responses: int, *, pause_s: float = 0.0) -> list[tuple[bytes, bytes]]:
    """On a connection that already had one exchange (`/healthz`: the edge's handler for it is idle
    then), send `request` (pipelined as written), wait `pause_s` before reading, and read `responses`
    answers by their Content-Length: [(head, body)]."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def read(count: int) -> list[tuple[bytes, bytes]]:
        answers = []
        for _ in range(count):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=20)
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            answers.append((head, await asyncio.wait_for(reader.readexactly(length), timeout=20)))
        return answers

    try:
        writer.write(_get("/healthz"))
        await read(1)
        await asyncio.sleep(0.01)
        writer.write(request)
        await writer.drain()
        await asyncio.sleep(pause_s)
        return await read(responses)
    finally:
        writer.close()


def _rest_writers() -> int:
    """How many bodies' rests wait for room in their sockets (EdgeProtocol._write_rest callbacks)."""
    selector = asyncio.get_running_loop()._selector  # type: ignore[attr-defined]
    return sum(1 for key in selector.get_map().values()
               if key.data[1] is not None and getattr(key.data[1]._callback, "__name__", "") == "_write_rest")


def _get(path: str, *extra: str) -> bytes:
    return ("\r\n".join((f"GET {path} HTTP/1.1", "Host: edge", *extra)) + "\r\n\r\n").encode()


async def test_pipelined_requests_are_answered_in_order_whichever_path_takes_them(
        edge: RunningEdge, http: aiohttp.ClientSession) -> None:
    segments = [f"/{TITLE}/video/v0/{n}.m4s" for n in (1, 2, 3)]
    urls = [signed(path) for path in segments]  # one token per path, as remembered after the first request
    for url in urls:
        assert (await get(http, edge.url + url))[0] == 200
    hits_before = edge.edge.stats.fast_hits
    request = (_get(urls[0]) + _get(urls[1], "Range: bytes=0-9")
               + _get(urls[2]) + _get("/healthz") + _get(urls[0], "X-Request-ID: last"))
    answers = await _exchange(edge.port, request, 5)
    assert [head.split(b" ", 2)[1] for head, _ in answers] == [b"200", b"206", b"200", b"200", b"200"]
    assert answers[0][1] == object_bytes(segments[0])
    assert answers[1][1] == object_bytes(segments[1])[:10]
    assert answers[2][1] == object_bytes(segments[2])
    assert b'"status": "ok"' in answers[3][1] or b'"status":"ok"' in answers[3][1]
    assert answers[4][1] == object_bytes(segments[0]) and b"X-Request-ID: last\r\n" in answers[4][0]
    assert edge.edge.stats.fast_hits - hits_before >= 1  # the first, at least: the rest may queue behind the range


async def test_a_large_object_reaches_a_slow_reader_whole_and_the_connection_goes_on(
        make_edge: EdgeFactory, content_root: Path, http: aiohttp.ClientSession) -> None:
    big = f"/{TITLE}/video/v1/9.m4s"
    data = os.urandom(6 * 1024 * 1024)  # far more than a socket buffer takes at once
    (content_root / big.lstrip("/")).write_bytes(data)
    edge = await make_edge()
    big_url, small_url = signed(big), signed(SEGMENT)
    assert (await get(http, edge.url + big_url))[2] == data
    assert (await get(http, edge.url + small_url))[2] == object_bytes(SEGMENT)
    request = _get(big_url) + _get(small_url) + _get(big_url)
    answers = await _exchange(edge.port, request, 3, pause_s=0.3)  # the kernel takes part; the rest waits
    assert answers[0][1] == data and answers[1][1] == object_bytes(SEGMENT) and answers[2][1] == data
    assert edge.edge.stats.fast_hits >= 1


async def test_a_client_leaving_in_the_middle_of_a_large_body_ends_its_send_cleanly(
        make_edge: EdgeFactory, content_root: Path, http: aiohttp.ClientSession) -> None:
    big = f"/{TITLE}/video/v1/8.m4s"
    data = os.urandom(6 * 1024 * 1024)
    (content_root / big.lstrip("/")).write_bytes(data)
    edge = await make_edge()
    big_url = signed(big)  # one token, remembered after the first request
    assert (await get(http, edge.url + big_url))[2] == data
    for _ in range(3):
        reader, writer = await asyncio.open_connection("127.0.0.1", edge.port)
        writer.write(_get("/healthz"))
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(0.05)
        hits = edge.edge.stats.fast_hits
        writer.write(_get(big_url))
        await reader.readexactly(64 * 1024)  # some of it, then gone while the rest waits for room
        await wait_until(lambda: edge.edge.stats.fast_hits > hits)
        assert _rest_writers() == 1  # the rest waits for room in the socket
        writer.transport.abort()
        await wait_until(lambda: _rest_writers() == 0)  # and is dropped with the connection
    # The edge goes on serving, the same object too, and no send is left behind on a closed socket.
    assert (await get(http, edge.url + big_url))[2] == data
    assert (await get(http, edge.url + signed(SEGMENT)))[0] == 200


@pytest.mark.parametrize("extra, status", [
    (("Range: bytes=0-3",), b"206"),
    (('If-None-Match: "nope"',), b"200"),
    (("Connection: close",), b"200"),
])
async def test_requests_the_fast_path_leaves_alone_get_the_full_handler(
        edge: RunningEdge, http: aiohttp.ClientSession, extra: tuple[str, ...], status: bytes) -> None:
    path = signed(SEGMENT)
    await get(http, edge.url + path)
    (head, body), = await _exchange(edge.port, _get(path, *extra), 1)
    assert head.split(b" ", 2)[1] == status and body
    assert edge.edge.stats.fast_hits == 0 and edge.edge.stats.cache_hits == 1


@pytest.mark.parametrize("allowed", [(), ("https://player.example",), ("*",)])
async def test_cross_origin_hits_are_fast_with_the_full_handlers_cors_headers(
        make_edge: EdgeFactory, http: aiohttp.ClientSession, allowed: tuple[str, ...]) -> None:
    edge = await make_edge(allowed_origins=allowed)
    url = edge.url + signed(SEGMENT)
    assert (await get(http, url))[0] == 200  # miss
    for site in ("https://player.example", "https://elsewhere.example"):
        fast_before = edge.edge.stats.fast_hits
        status, fast, body = await get(http, url, headers={"Origin": site})
        assert status == 200 and body == object_bytes(SEGMENT)
        assert edge.edge.stats.fast_hits == fast_before + 1
        status, full, _ = await get(http, url, headers={"Origin": site, "If-None-Match": '"other"'})
        assert status == 200 and edge.edge.stats.fast_hits == fast_before + 1
        assert sorted((k, v) for k, v in fast.items() if k not in VOLATILE) == sorted(
            (k, v) for k, v in full.items() if k not in VOLATILE)
        granted = allowed == ("*",) or site in allowed
        assert ("Access-Control-Allow-Origin" in fast) == granted


async def test_http_1_0_and_other_methods_get_the_full_handler(edge: RunningEdge, http: aiohttp.ClientSession) -> None:
    path = signed(SEGMENT)
    await get(http, edge.url + path)
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.port)
    writer.write(f"GET {path} HTTP/1.0\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), timeout=10)  # 1.0 without keep-alive: closed after
    writer.close()
    assert data.startswith(b"HTTP/1.") and data.endswith(object_bytes(SEGMENT))
    async with http.head(edge.url + path) as resp:
        assert resp.status == 200 and resp.headers["X-Cache"] == "HIT"
    assert edge.edge.stats.fast_hits == 0


async def test_a_revoked_login_is_refused_within_the_recheck_although_its_hits_were_fast(
        make_edge: EdgeFactory, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    store_path = tmp_path / "revocations.db"
    create_store(store_path)
    edge = await make_edge(revocations_path=store_path, revocation_recheck_s=0.2)
    url = edge.url + signed(SEGMENT, family="f-ended")
    for _ in range(3):
        assert (await get(http, url))[0] == 200
    assert edge.edge.stats.fast_hits == 2
    RevocationStore(store_path).logout(jti="any", family="f-ended", until=time.time() + 60)
    await asyncio.sleep(0.3)
    for _ in range(3):
        assert (await get(http, url))[0] == 403
    assert edge.edge.stats.fast_hits == 2


async def test_revocation_rechecks_run_in_the_background_while_hits_stay_fast(
        make_edge: EdgeFactory, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    store_path = tmp_path / "revocations.db"
    create_store(store_path)
    edge = await make_edge(revocations_path=store_path, revocation_recheck_s=0.3)
    store = edge.edge.revocations
    assert store is not None
    asked: list[float] = []
    ask = store.url_revoked

    def counted(**kwargs: Any) -> bool:
        asked.append(time.monotonic())
        return ask(**kwargs)

    store.url_revoked = counted  # type: ignore[method-assign]
    url = edge.url + signed(SEGMENT, family="f-live")
    started = time.monotonic()
    for _ in range(31):
        assert (await get(http, url))[0] == 200
        await asyncio.sleep(0.04)
    # The check came due several times; each time it was asked ahead, in the background, so the hits
    # (all but the first request, a miss) stayed on the fast path (one may miss it on a loaded machine).
    assert len(asked) >= int((time.monotonic() - started) / 0.3) >= 3
    assert edge.edge.stats.cache_hits == 30
    assert edge.edge.stats.fast_hits >= 29


async def test_a_bad_signature_is_403_and_never_fast(edge: RunningEdge, http: aiohttp.ClientSession) -> None:
    good = signed(SEGMENT)
    await get(http, edge.url + good)
    token = good.split("/")[2]
    forged = good.replace(token, token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"))
    other_key = signed(SEGMENT, key=b"another-url-signing-key-32bytes!")
    for path in (forged, other_key, signed(SEGMENT, expires_in_s=-5), good.replace(f"/{TITLE}/", "/other/")):
        assert (await get(http, edge.url + path))[0] == 403
    assert edge.edge.stats.fast_hits == 0


async def test_a_fault_in_force_applies_to_hits(edge: RunningEdge, http: aiohttp.ClientSession) -> None:
    url = edge.url + signed(SEGMENT)
    await get(http, url)
    async with http.post(edge.url + "/internal/faults", headers=INTERNAL_HEADERS,
                         json={"error_status": 503, "duration_s": 5}) as resp:
        assert resp.status < 400
    assert (await get(http, url))[0] == 503
    async with http.delete(edge.url + "/internal/faults", headers=INTERNAL_HEADERS) as resp:
        assert resp.status < 400
    assert (await get(http, url))[0] == 200
    assert edge.edge.stats.fast_hits == 1


# --- bodies in memory files, sent with sendfile ---------------------------------------------------------

def test_a_memory_file_holds_the_body_and_reads_it_in_place() -> None:
    data = os.urandom(MEMORY_FILE_MIN_BYTES + 17)
    held = MemoryFile.holding(data)
    assert held is not None and held.view == data and len(held.view) == len(data)
    assert os.pread(held.file.fileno(), 10, 5) == data[5:15]
    assert MemoryFile.holding(b"") is None


def _memory_files_open() -> int:
    fds = Path("/proc/self/fd")
    count = 0
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            count += "abrkit-edge-object" in os.readlink(fd)
    return count


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir() or not hasattr(os, "memfd_create"), reason="Linux only")
async def test_large_objects_are_memory_files_served_whole_ranged_and_conditional_and_closed_when_evicted(
        make_edge: EdgeFactory, content_root: Path, http: aiohttp.ClientSession) -> None:
    size = 200_000
    paths = [f"/{TITLE}/video/v1/{n}.m4s" for n in range(10, 20)]
    blobs = {path: os.urandom(size) for path in paths}
    for path, data in blobs.items():
        (content_root / path.lstrip("/")).write_bytes(data)
    before = _memory_files_open()
    edge = await make_edge(cache_bytes=3 * size)
    first = signed(paths[0])
    assert (await get(http, edge.url + first))[2] == blobs[paths[0]]
    cached = edge.edge.cache.peek(paths[0])
    assert cached is not None and cached.memory_file is not None
    del cached  # evicted below: nothing but the cache may hold it
    status, headers, body = await get(http, edge.url + first)  # the fast path, with sendfile
    assert status == 200 and body == blobs[paths[0]] and edge.edge.stats.fast_hits == 1
    status, headers, body = await get(http, edge.url + first, headers={"Range": "bytes=1000-1999"})
    assert status == 206 and body == blobs[paths[0]][1000:2000]
    etag = headers["ETag"]
    assert (await get(http, edge.url + first, headers={"If-None-Match": etag}))[0] == 304
    async with http.head(edge.url + first) as resp:
        assert resp.status == 200 and int(resp.headers["Content-Length"]) == size
    for path in paths:  # ten objects through a cache that holds three
        assert (await get(http, edge.url + signed(path)))[2] == blobs[path]
    gc.collect()
    assert edge.edge.cache.evictions >= 7 and edge.edge.origin.memory_files == len(edge.edge.cache) <= 3
    assert _memory_files_open() - before <= 2 * 3  # the file and its mapping's descriptor, each


async def test_memory_files_stop_at_their_descriptor_budget(make_edge: EdgeFactory, content_root: Path,
                                                            http: aiohttp.ClientSession) -> None:
    paths = [f"/{TITLE}/video/v1/{n}.m4s" for n in (30, 31)]
    for path in paths:
        (content_root / path.lstrip("/")).write_bytes(os.urandom(MEMORY_FILE_MIN_BYTES))
    edge = await make_edge()
    edge.edge.origin._memory_files_max = 1
    for path in paths:
        assert (await get(http, edge.url + signed(path)))[0] == 200
    held = [edge.edge.cache.peek(path) for path in paths]
    assert held[0] is not None and held[0].memory_file is not None
    assert held[1] is not None and held[1].memory_file is None and isinstance(held[1].body, bytes)
    url = signed(paths[1])
    assert (await get(http, edge.url + url))[0] == 200  # a new token: verified by the full handler
    status, _, body = await get(http, edge.url + url)  # a fast hit without a memory file: writev
    assert status == 200 and body == (content_root / paths[1].lstrip("/")).read_bytes()
    assert edge.edge.stats.fast_hits == 1


async def test_segment_indexes_and_manifests_stay_bytes_however_large(
        make_edge: EdgeFactory, content_root: Path, http: aiohttp.ClientSession) -> None:
    index = content_root / TITLE / "segments.json"
    document = json.loads(index.read_text())
    document["padding"] = "x" * (2 * MEMORY_FILE_MIN_BYTES)
    index.write_text(json.dumps(document))
    edge = await make_edge()
    async with http.post(edge.url + f"/internal/preposition/{TITLE}", headers=INTERNAL_HEADERS) as resp:
        assert resp.status == 200 and (await resp.json())["failed"] == 0
    held = edge.edge.cache.peek(f"/{TITLE}/segments.json")
    assert held is not None and held.memory_file is None and isinstance(held.body, bytes)


def test_the_stack_runs_its_edges_with_the_fast_path(origin: OriginProbe) -> None:
    app = create_app(EdgeConfig(edge_id="edge-0", origin_url=origin.url, url_verify_key=VERIFY_KEY))
    assert isinstance(stack_runner("edge-0", app, 5.0), EdgeRunner)
