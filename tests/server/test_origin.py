"""The origin, tested through a real listening socket: files, caching headers, ranges, and refusals."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from server.content import ContentKind, classify, list_titles, resolve_content_path
from server.origin import OriginConfig, create_app

if TYPE_CHECKING:
    from tests.conftest import PackagedTitles

IMMUTABLE = "public, max-age=31536000, immutable"


@pytest.fixture
async def origin(aiohttp_client, packaged: PackagedTitles) -> TestClient:
    return await aiohttp_client(create_app(OriginConfig(content_root=packaged.content_root)))


async def raw_get(client: TestClient, target: str) -> tuple[int, bytes]:
    """Sends a request line exactly as given (no client-side normalisation of ../ or %xx)."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode("latin-1"))
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    await writer.wait_closed()
    status = int(response.split(b" ", 2)[1])
    return status, response


async def test_manifest_is_served_with_dash_type_and_short_cache(origin: TestClient, packaged: PackagedTitles) -> None:
    response = await origin.get("/clip/manifest.mpd")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/dash+xml"
    assert response.headers["Cache-Control"] == "public, max-age=2"
    assert await response.read() == (packaged.clear.title_dir / "manifest.mpd").read_bytes()


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/clip/video/v216p/init.mp4", "video/mp4"),
        ("/clip/video/v540p/3.m4s", "video/iso.segment"),
        ("/clip/audio/a128k/init.mp4", "audio/mp4"),
        ("/clipenc/audio/a128k/1.m4s", "video/iso.segment"),
    ],
)
async def test_media_files_are_immutable_with_validators(
    origin: TestClient, packaged: PackagedTitles, path: str, content_type: str
) -> None:
    response = await origin.get(path)
    assert response.status == 200
    assert response.headers["Content-Type"] == content_type
    assert response.headers["Cache-Control"] == IMMUTABLE
    assert response.headers["ETag"] and response.headers["Last-Modified"]
    body = await response.read()
    assert body == (packaged.content_root / path.lstrip("/")).read_bytes()
    assert int(response.headers["Content-Length"]) == len(body)


async def test_sidecar_is_served_as_json(origin: TestClient) -> None:
    response = await origin.get("/clip/segments.json")
    assert response.status == 200 and response.headers["Content-Type"] == "application/json"
    assert (await response.json())["title"] == "clip"


async def test_head_returns_headers_without_body(origin: TestClient, packaged: PackagedTitles) -> None:
    path = packaged.clear.title_dir / "video" / "v360p" / "1.m4s"
    response = await origin.head("/clip/video/v360p/1.m4s")
    assert response.status == 200
    assert int(response.headers["Content-Length"]) == path.stat().st_size
    assert response.headers["Content-Type"] == "video/iso.segment"
    assert await response.read() == b""


@pytest.mark.parametrize(
    ("range_header", "start", "end"),
    [("bytes=0-99", 0, 99), ("bytes=100-", 100, None), ("bytes=-10", -10, None), ("bytes=5-5", 5, 5)],
)
async def test_byte_ranges_return_206_with_content_range(
    origin: TestClient, packaged: PackagedTitles, range_header: str, start: int, end: int | None
) -> None:
    data = (packaged.clear.title_dir / "video" / "v216p" / "2.m4s").read_bytes()
    size = len(data)
    first = start if start >= 0 else size + start
    last = end if end is not None else size - 1
    response = await origin.get("/clip/video/v216p/2.m4s", headers={"Range": range_header})
    assert response.status == 206
    assert response.headers["Content-Range"] == f"bytes {first}-{last}/{size}"
    assert await response.read() == data[first : last + 1]


async def test_unsatisfiable_range_is_416(origin: TestClient, packaged: PackagedTitles) -> None:
    size = (packaged.clear.title_dir / "video" / "v216p" / "1.m4s").stat().st_size
    response = await origin.get("/clip/video/v216p/1.m4s", headers={"Range": f"bytes={size}-"})
    assert response.status == 416
    assert response.headers["Content-Range"] == f"bytes */{size}"


async def test_conditional_get_with_matching_etag_is_304(origin: TestClient) -> None:
    first = await origin.get("/clip/video/v216p/1.m4s")
    etag = first.headers["ETag"]
    await first.read()
    again = await origin.get("/clip/video/v216p/1.m4s", headers={"If-None-Match": etag})
    assert again.status == 304
    assert await again.read() == b""
    stale = await origin.get("/clip/video/v216p/1.m4s", headers={"If-None-Match": '"other"'})
    assert stale.status == 200


@pytest.mark.parametrize(
    "path",
    [
        "/nope/manifest.mpd",  # unknown title
        "/clip/video/v999p/init.mp4",  # unknown rendition
        "/clip/video/v216p/4.m4s",  # past the last segment
        "/clip/video/v216p/0.m4s",  # numbering starts at 1
        "/clip/manifest.xml",
        "/clipenc/keys.json",  # the key store
        "/clip/.abrkit-demo.json",
        "/clip/video/v216p/.hidden.m4s",
        "/clip",
        "/",
    ],
)
async def test_unknown_or_private_paths_are_404(origin: TestClient, path: str) -> None:
    response = await origin.get(path)
    assert response.status == 404


@pytest.mark.parametrize(
    "target",
    [
        "/clip/../clipenc/keys.json",
        "/clipenc/video/../keys.json",
        "/clipenc/%2e%2e/clipenc/keys.json",
        "/clipenc/video/%2e%2e/keys.json",
        "/clipenc/video/v216p/..%2f..%2fkeys.json",
        "/clipenc/%252e%252e%252fkeys.json",
        "/clipenc/video%252f..%252fkeys.json",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/clip/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "//etc/passwd",
        "/clip//etc/passwd",
        "/clip/%2Fetc%2Fpasswd",
        "/clipenc/keys.json%00.mpd",
        "/clipenc/manifest.mpd%00",
        "/clipenc/video%5c..%5ckeys.json",
    ],
)
async def test_path_traversal_is_refused(origin: TestClient, packaged: PackagedTitles, target: str) -> None:
    status, response = await raw_get(origin, target)
    assert status in (400, 404), (target, status)
    secret = packaged.encrypted.title_dir.joinpath("keys.json").read_text()
    key = secret.split('"key": "')[1][:32]
    assert key.encode() not in response and b"root:" not in response


async def test_symlinks_leading_outside_the_root_are_refused(aiohttp_client, tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.mpd").write_text("<secret/>")
    (outside / "manifest.mpd").write_text("<elsewhere/>")
    (root / "evil").mkdir(parents=True)
    os.symlink(outside / "secret.mpd", root / "evil" / "manifest.mpd")
    os.symlink(outside, root / "linked")  # a whole title directory pointing out of the root
    (root / "ok").mkdir()
    (root / "ok" / "manifest.mpd").write_text("<MPD/>")
    client = await aiohttp_client(create_app(OriginConfig(content_root=root)))
    assert (await client.get("/evil/manifest.mpd")).status == 404
    assert (await client.get("/linked/manifest.mpd")).status == 404
    assert (await client.get("/ok/manifest.mpd")).status == 200


async def test_other_methods_are_not_allowed(origin: TestClient) -> None:
    assert (await origin.post("/clip/manifest.mpd", data=b"x")).status == 405
    assert (await origin.delete("/clip/manifest.mpd")).status == 405


async def test_healthz_reports_ok_and_title_count(origin: TestClient) -> None:
    response = await origin.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok", "titles": 2}


def test_origin_config_validates(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a directory"):
        OriginConfig(content_root=tmp_path / "missing")
    with pytest.raises(ValueError, match="port"):
        OriginConfig(content_root=tmp_path, port=70000)
    with pytest.raises(ValueError, match="max-age"):
        OriginConfig(content_root=tmp_path, manifest_max_age_s=-1)


@pytest.mark.parametrize(
    ("relative", "kind"),
    [
        ("manifest.mpd", ContentKind.MANIFEST),
        ("segments.json", ContentKind.SIDECAR),
        ("video/v216p/init.mp4", ContentKind.INIT),
        ("audio/a128k/12.m4s", ContentKind.SEGMENT),
        ("keys.json", None),
        ("video/v216p/../init.mp4", None),
        ("video/../../keys.json", None),
        ("/etc/passwd", None),
        ("video/v216p/init.mp4\x00", None),
        ("text/v216p/1.m4s", None),
        ("video/v216p/01.m4s", None),
    ],
)
def test_layout_names_classify_strictly(relative: str, kind: ContentKind | None) -> None:
    found = classify(relative)
    assert (found[0] if found else None) == kind


def test_content_resolution_is_shared_and_lists_titles(packaged: PackagedTitles) -> None:
    root = packaged.content_root
    found = resolve_content_path(root, "clip", "video/v216p/1.m4s")
    assert found is not None and found.immutable and found.content_type == "video/iso.segment"
    assert resolve_content_path(root, "..", "clip/manifest.mpd") is None
    assert resolve_content_path(root, "clipenc", "keys.json") is None
    assert list_titles(root) == ["clip", "clipenc"]


async def test_standalone_app_serves_over_a_real_port(packaged: PackagedTitles, unused_tcp_port: int) -> None:
    port = unused_tcp_port
    runner = web.AppRunner(create_app(OriginConfig(content_root=packaged.content_root, port=port)))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"HEAD /clip/manifest.mpd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.read(), timeout=10)
        writer.close()
        assert head.startswith(b"HTTP/1.1 200") and b"application/dash+xml" in head
    finally:
        await runner.cleanup()
