"""ClearKey license service: exactly the entitled keys, every error case, audit without key material, CORS."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from server import license
from server.config import LicenseConfig, TokenPolicy
from server.keys import ed25519_public
from server.revocation import RevocationStore
from server.tokens import TokenIssuer
from tests.server.conftest import SIGNING_KEY, fake_title, issue, token_policy

ORIGIN = "http://player.example:3000"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def content(tmp_path: Path) -> dict[str, dict[bytes, bytes]]:
    root = tmp_path / "content"
    return {"demo": fake_title(root, "demo"), "premium": fake_title(root, "premium")}


@pytest.fixture
def policy(tmp_path: Path) -> TokenPolicy:
    return token_policy(tmp_path)


@pytest.fixture
async def client(aiohttp_client, tmp_path: Path, policy: TokenPolicy, content) -> TestClient:  # type: ignore[no-untyped-def]
    config = LicenseConfig(content_root=tmp_path / "content", tokens=policy, allowed_origins=(ORIGIN,), max_kids=64,
                           rescan_interval_s=0.0)
    return await aiohttp_client(license.create_app(config))


def bearer(policy: TokenPolicy, titles: tuple[str, ...] = ("demo",)) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue(policy, 'alice', titles)}"}


async def test_returns_exactly_the_requested_keys(client: TestClient, policy: TokenPolicy, content) -> None:  # type: ignore[no-untyped-def]
    keys = content["demo"]
    kid = next(iter(keys))
    resp = await client.post("/license", json={"kids": [b64(kid)], "type": "temporary"}, headers=bearer(policy))
    assert resp.status == 200
    body = await resp.json()
    assert body == {"keys": [{"kty": "oct", "kid": b64(kid), "k": b64(keys[kid])}], "type": "temporary"}
    assert resp.headers["Cache-Control"] == "no-store"


async def test_returns_every_requested_key_of_an_entitled_title(client: TestClient, policy: TokenPolicy,
                                                                content) -> None:  # type: ignore[no-untyped-def]
    keys = content["demo"]
    kids = [b64(k) for k in keys] + [b64(next(iter(keys)))]  # a duplicate is answered once
    resp = await client.post("/license", json={"kids": kids}, headers=bearer(policy))
    body = await resp.json()
    assert {(k["kid"], k["k"]) for k in body["keys"]} == {(b64(kid), b64(key)) for kid, key in keys.items()}
    assert len(body["keys"]) == len(keys)


async def test_wildcard_entitlement_covers_every_title(client: TestClient, policy: TokenPolicy, content) -> None:  # type: ignore[no-untyped-def]
    kid = next(iter(content["premium"]))
    resp = await client.post("/license", json={"kids": [b64(kid)]}, headers=bearer(policy, ("*",)))
    assert resp.status == 200


async def test_key_of_a_title_not_entitled_is_refused_with_403(client: TestClient, policy: TokenPolicy,
                                                               content) -> None:  # type: ignore[no-untyped-def]
    kids = [b64(next(iter(content["demo"]))), b64(next(iter(content["premium"])))]
    resp = await client.post("/license", json={"kids": kids}, headers=bearer(policy))
    assert resp.status == 403
    body = await resp.json()
    assert body["titles"] == ["premium"] and "keys" not in body


async def test_unknown_kid_is_404(client: TestClient, policy: TokenPolicy) -> None:
    resp = await client.post("/license", json={"kids": [b64(b"\x01" * 16)]}, headers=bearer(policy))
    assert resp.status == 404
    assert (await resp.json())["kids"] == [b64(b"\x01" * 16)]


async def test_titles_packaged_after_start_are_found(client: TestClient, policy: TokenPolicy, tmp_path: Path) -> None:
    keys = fake_title(tmp_path / "content", "late")
    resp = await client.post("/license", json={"kids": [b64(next(iter(keys)))]}, headers=bearer(policy, ("late",)))
    assert resp.status == 200


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Basic YWxpY2U6cHc="}, {"Authorization": "Bearer "}, {"Authorization": "Bearer not-a-jwt"},
])
async def test_missing_or_malformed_token_is_401(client: TestClient, content, headers: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    resp = await client.post("/license", json={"kids": [b64(next(iter(content["demo"])))]}, headers=headers)
    assert resp.status == 401
    assert "WWW-Authenticate" in resp.headers


async def test_expired_forged_and_revoked_tokens_are_401(client: TestClient, policy: TokenPolicy, content,  # type: ignore[no-untyped-def]
                                                         tmp_path: Path) -> None:
    kid = b64(next(iter(content["demo"])))
    expired = TokenIssuer(policy, SIGNING_KEY, clock=lambda: 1_000_000.0).issue("alice", ("demo",)).access_token
    other = b"f" * 32  # a key that is not auth's
    forged = issue(token_policy(tmp_path / "other", verify_key=ed25519_public(other)), "alice", ("*",), signing_key=other)
    revoked = TokenIssuer(policy, SIGNING_KEY).issue("alice", ("demo",))
    assert policy.revocations_path is not None
    RevocationStore(policy.revocations_path).revoke_token(revoked.claims.jti, until=revoked.claims.expires_at)
    for token in (expired, forged, revoked.access_token):
        resp = await client.post("/license", json={"kids": [kid]}, headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 401, token


@pytest.mark.parametrize("body", [
    b"not json", b"[]", b'"kids"', b"{}", b'{"kids": []}', b'{"kids": "AAAAAAAAAAAAAAAAAAAAAA"}', b'{"kids": [1]}',
    b'{"kids": [null]}', b'{"kids": ["!!!!!!!!!!!!!!!!!!!!!!"]}', b'{"kids": ["AAAA"]}',
    b'{"kids": ["AAAAAAAAAAAAAAAAAAAAAAAA"]}', b'{"kids": ["AAAAAAAAAAAAAAAAAAAAAB"]}',
    b'{"kids": ["AAAAAAAAAAAAAAAAAAAAAA"], "type": "persistent-license"}',
    b'{"kids": ["AAAAAAAAAAAAAAAAAAAAAA"], "type": 1}',
    b'{"kids": [' + b",".join([b'"AAAAAAAAAAAAAAAAAAAAAA"'] * 65) + b"]}",
    b'{"kids": ["' + b"A" * 20_000 + b'"]}',
    b"[" * 10_000,
], ids=lambda b: b[:40].decode(errors="replace"))
async def test_malformed_requests_are_400(client: TestClient, policy: TokenPolicy, body: bytes) -> None:
    resp = await client.post("/license", data=body, headers={**bearer(policy), "Content-Type": "application/json"})
    assert resp.status == 400
    assert "error" in await resp.json()


async def test_padded_base64url_kids_are_accepted(client: TestClient, policy: TokenPolicy, content) -> None:  # type: ignore[no-untyped-def]
    kid = next(iter(content["demo"]))
    resp = await client.post("/license", json={"kids": [b64(kid) + "=="]}, headers=bearer(policy))
    assert resp.status == 200


async def test_audit_log_names_user_and_kid_but_never_a_key(client: TestClient, policy: TokenPolicy, content,  # type: ignore[no-untyped-def]
                                                            caplog: pytest.LogCaptureFixture) -> None:
    keys = content["demo"]
    kid = next(iter(keys))
    with caplog.at_level(logging.DEBUG):
        resp = await client.post("/license", json={"kids": [b64(kid)]}, headers=bearer(policy))
        assert resp.status == 200
    audit = [r.getMessage() for r in caplog.records if r.name == "abrkit.audit"]
    assert any(kid.hex() in line and '"sub":"alice"' in line and '"granted"' in line for line in audit)
    everything = "\n".join(r.getMessage() for r in caplog.records)
    for key in (k for title in content.values() for k in title.values()):
        assert key.hex() not in everything and b64(key) not in everything


async def test_cors_preflight_and_exposed_headers_for_allowed_origin(client: TestClient, policy: TokenPolicy,
                                                                     content) -> None:  # type: ignore[no-untyped-def]
    pre = await client.options("/license", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                                                    "Access-Control-Request-Headers": "authorization,content-type"})
    assert pre.status == 204
    assert pre.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Authorization" in pre.headers["Access-Control-Allow-Headers"]
    resp = await client.post("/license", json={"kids": [b64(next(iter(content["demo"])))]},
                             headers={**bearer(policy), "Origin": ORIGIN})
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "X-Request-ID" in resp.headers["Access-Control-Expose-Headers"]
    denied = await client.options("/license", headers={"Origin": "http://evil.example",
                                                       "Access-Control-Request-Method": "POST"})
    assert denied.status == 403 and "Access-Control-Allow-Origin" not in denied.headers


def test_license_request_parser_dedupes_in_order() -> None:
    a, b = b"\x01" * 16, b"\x02" * 16
    assert license.parse_license_request({"kids": [b64(b), b64(a), b64(b)]}, max_kids=4) == [b, a]


async def test_a_live_channel_entitles_to_the_keys_of_the_title_it_loops(aiohttp_client, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                         policy: TokenPolicy, content) -> None:
    config = LicenseConfig(content_root=tmp_path / "content", tokens=policy, rescan_interval_s=0.0,
                           live_titles={"live": "demo"})
    live_client = await aiohttp_client(license.create_app(config))
    demo_kid, premium_kid = next(iter(content["demo"])), next(iter(content["premium"]))
    granted = await live_client.post("/license", json={"kids": [b64(demo_kid)]}, headers=bearer(policy, ("live",)))
    assert granted.status == 200
    refused = await live_client.post("/license", json={"kids": [b64(premium_kid)]}, headers=bearer(policy, ("live",)))
    assert refused.status == 403 and (await refused.json())["titles"] == ["premium"]


async def test_without_the_channel_a_channel_name_entitles_to_nothing(client: TestClient, policy: TokenPolicy,  # type: ignore[no-untyped-def]
                                                                      content) -> None:
    kid = next(iter(content["demo"]))
    resp = await client.post("/license", json={"kids": [b64(kid)]}, headers=bearer(policy, ("live",)))
    assert resp.status == 403
