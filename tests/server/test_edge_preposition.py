"""Pre-positioning part of a title (`?renditions=..&segments=N`), as a placement plan asks an edge to."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from server.edge import RunningEdge
from tests.server.edgekit import INTERNAL_HEADERS, TITLE, OriginProbe, cli_edge, get, signed, title_paths

# The edge tests' fixtures (tests/server/conftest.py): a real origin (instrumented) and edges in front of it.


async def test_a_selection_warms_only_those_renditions_and_their_first_segments(
        edge: RunningEdge, origin: OriginProbe, http: aiohttp.ClientSession) -> None:
    async with http.post(edge.url + f"/internal/preposition/{TITLE}?renditions=v1,a0&segments=2", headers=INTERNAL_HEADERS) as resp:
        assert resp.status == 200
        counts = await resp.json()
    wanted = [f"/{TITLE}/manifest.mpd", f"/{TITLE}/video/v1/init.mp4", f"/{TITLE}/video/v1/1.m4s",
              f"/{TITLE}/video/v1/2.m4s", f"/{TITLE}/audio/a0/init.mp4", f"/{TITLE}/audio/a0/1.m4s",
              f"/{TITLE}/audio/a0/2.m4s"]
    assert (counts["objects"], counts["fetched"], counts["failed"]) == (len(wanted), len(wanted), 0)
    cached = set(edge.edge.cache.keys())
    assert set(wanted) <= cached
    assert cached - set(wanted) == {f"/{TITLE}/segments.json"}  # read to list the objects
    for path in title_paths():
        if path not in wanted:
            status, headers, _ = await get(http, edge.url + signed(path))
            assert (status, headers["X-Cache"]) == (200, "MISS"), path


async def test_segments_beyond_the_title_are_capped_and_no_query_still_warms_everything(
        edge: RunningEdge, http: aiohttp.ClientSession) -> None:
    async with http.post(edge.url + f"/internal/preposition/{TITLE}?segments=99", headers=INTERNAL_HEADERS) as resp:
        assert (await resp.json())["objects"] == len(title_paths())
    async with http.post(edge.url + f"/internal/preposition/{TITLE}", headers=INTERNAL_HEADERS) as resp:
        assert (await resp.json())["already_cached"] == len(title_paths())


@pytest.mark.parametrize(("query", "status", "says"), [
    ("renditions=", 400, "renditions"),
    ("renditions=v1,../x", 400, "renditions"),
    ("segments=0", 400, "segments"),
    ("segments=two", 400, "segments"),
    ("segments=-1", 400, "segments"),
    ("renditions=v1,v9", 404, "no rendition v9"),
])
async def test_a_bad_selection_is_a_clear_error_and_fetches_nothing(
        edge: RunningEdge, origin: OriginProbe, http: aiohttp.ClientSession, query: str, status: int,
        says: str) -> None:
    async with http.post(edge.url + f"/internal/preposition/{TITLE}?{query}", headers=INTERNAL_HEADERS) as resp:
        assert resp.status == status
        assert says in (await resp.json())["error"]
    assert not [p for p in origin.gets if p.endswith((".m4s", ".mp4"))]


async def test_workers_forward_the_selection_to_their_siblings(origin: OriginProbe, tmp_path: Path,
                                                               http: aiohttp.ClientSession) -> None:
    async with cli_edge(origin, tmp_path) as (_, url):
        async with http.post(url + f"/internal/preposition/{TITLE}?renditions=v0&segments=1", headers=INTERNAL_HEADERS) as resp:
            counts = await resp.json()
    # Each of the two workers warms the MPD, v0's init and its first segment, and nothing else.
    assert (counts["workers"], counts["fetched"], counts["failed"]) == (2, 6, 0)
    assert origin.gets[f"/{TITLE}/video/v0/2.m4s"] == 0 and origin.gets[f"/{TITLE}/video/v1/1.m4s"] == 0
