"""The edge's access rules: URLs of an ended login or a changed user are refused within the recheck,
a revocation store that cannot answer is 503, and `/internal/*` needs the internal credential from
any peer."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from server.edge import RunningEdge
from server.internal import INTERNAL_HEADER, internal_headers
from server.revocation import RevocationStore, create_store
from tests.server.edgekit import INTERNAL_HEADERS, SEGMENT, TITLE, EdgeFactory, OriginProbe, get, signed


async def test_urls_of_an_ended_login_or_a_changed_user_are_refused_within_the_recheck(
        make_edge: EdgeFactory, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    store_path = tmp_path / "revocations.db"
    create_store(store_path)
    edge = await make_edge(revocations_path=store_path, revocation_recheck_s=0.2)
    ended, changed, other = signed(SEGMENT, family="f-ended"), signed(SEGMENT, subject="bob"), signed(SEGMENT)
    for path in (ended, changed, other):
        assert (await get(http, edge.url + path))[0] == 200
    store = RevocationStore(store_path)
    store.logout(jti="any", family="f-ended", until=time.time() + 60)
    store.stamp_subject("bob", until=time.time() + 60, access_only=True)  # e.g. his entitlements changed
    await asyncio.sleep(0.3)
    assert (await get(http, edge.url + ended))[0] == 403
    assert (await get(http, edge.url + changed))[0] == 403
    assert (await get(http, edge.url + other))[0] == 200  # nobody else's
    assert (await get(http, edge.url + signed(SEGMENT, subject="bob")))[0] == 200  # signed after the change


async def test_an_unreadable_revocation_store_is_503_never_a_segment(make_edge: EdgeFactory,
                                                                      http: aiohttp.ClientSession,
                                                                      tmp_path: Path) -> None:
    store_path = tmp_path / "revocations.db"
    create_store(store_path)
    edge = await make_edge(revocations_path=store_path, revocation_recheck_s=0.05)
    assert (await get(http, edge.url + signed(SEGMENT)))[0] == 200
    store_path.unlink()
    await asyncio.sleep(0.1)
    status, headers, _ = await get(http, edge.url + signed(SEGMENT))
    assert status == 503 and int(headers["Retry-After"]) >= 1


@pytest.mark.parametrize("path, method", [("/internal/stats", "GET"), (f"/internal/preposition/{TITLE}", "POST"),
                                          ("/internal/faults", "POST")])
async def test_internal_endpoints_need_the_credential_even_from_loopback(
        make_edge: EdgeFactory, http: aiohttp.ClientSession, path: str, method: str) -> None:
    edge = await make_edge()
    for headers in ({}, {"Authorization": "Bearer x"}, internal_headers(b"w" * 32)):
        async with http.request(method, edge.url + path, headers=headers, json={"delay_s": 1}) as resp:
            assert resp.status == 403
    closed = await make_edge(internal_token=None)  # an edge given no credential opens to none
    async with http.request(method, closed.url + path, headers=INTERNAL_HEADERS, json={"delay_s": 1}) as resp:
        assert resp.status == 403
    async with http.request(method, edge.url + path, headers=INTERNAL_HEADERS, json={"delay_s": 0.01}) as resp:
        assert resp.status < 400


async def test_the_origin_gets_the_internal_credential(edge: RunningEdge, origin: OriginProbe,
                                                       http: aiohttp.ClientSession) -> None:
    assert (await get(http, edge.url + signed(SEGMENT)))[0] == 200
    assert origin.credentials and set(origin.credentials) == {INTERNAL_HEADERS[INTERNAL_HEADER]}
