"""Auth service: logins and their backoff, re-hashing, refresh by login family and generation, logout,
and a revocation store that cannot be written."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import jwt
import pytest
from aiohttp.test_utils import TestClient

from server import auth
from server.config import AuthConfig, LoginBackoff, PasswordPolicy
from server.internal import internal_headers
from server.keys import ed25519_verifier
from server.passwords import dummy_hash, hash_password, needs_rehash, verify_password
from server.revocation import RevocationStore
from server.tokens import TokenError, TokenVerifier
from server.users import UserRecord, read_users, update_users
from tests.server.conftest import INTERNAL_TOKEN, PASSWORD, SIGNING_KEY, token_policy, write_users


@pytest.fixture
def auth_config(tmp_path: Path) -> AuthConfig:
    users = write_users(tmp_path / "stack.json", {"alice": ("demo",), "bob": ("*",)})
    write_users(users, {"mallory": ("demo",)}, disabled=("mallory",))
    return AuthConfig(users_path=users, tokens=token_policy(tmp_path), signing_key=SIGNING_KEY, max_body_bytes=1024)


@pytest.fixture
async def client(aiohttp_client, auth_config: AuthConfig) -> TestClient:  # type: ignore[no-untyped-def]
    return await aiohttp_client(auth.create_app(auth_config))


def verifier(config: AuthConfig) -> TokenVerifier:
    """What playback and license hold: the public key and the store."""
    return TokenVerifier(config.tokens)


def store(config: AuthConfig) -> RevocationStore:
    assert config.tokens.revocations_path is not None
    return RevocationStore(config.tokens.revocations_path)


async def login(client: TestClient, username: str = "alice", password: str = PASSWORD) -> dict:  # type: ignore[type-arg]
    resp = await client.post("/auth/token", json={"username": username, "password": password})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_login_returns_an_eddsa_bearer_token_with_all_claims(client: TestClient,
                                                                   auth_config: AuthConfig) -> None:
    body = await login(client)
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == auth_config.tokens.access_ttl_s
    assert jwt.get_unverified_header(body["access_token"])["alg"] == "EdDSA"
    claims = jwt.decode(body["access_token"], ed25519_verifier(auth_config.tokens.verify_key), algorithms=["EdDSA"],
                        audience="abrkit")
    assert {"exp", "iat", "nbf", "aud", "iss", "sub", "jti", "fam", "gen", "titles"} <= set(claims)
    assert claims["sub"] == "alice" and claims["titles"] == ["demo"] and claims["gen"] == 0


@pytest.mark.parametrize(("username", "password"), [("alice", "wrong password"), ("nobody", PASSWORD),
                                                    ("mallory", PASSWORD)])
async def test_bad_credentials_and_disabled_users_get_401(client: TestClient, username: str, password: str) -> None:
    resp = await client.post("/auth/token", json={"username": username, "password": password})
    assert resp.status == 401
    assert (await resp.json()) == {"error": "invalid username or password"}


@pytest.mark.parametrize("body", [b"not json", b"[1,2]", b'{"username": "alice"}', b'{"username": 1, "password": "x"}',
                                  b'{"username": "alice", "password": ""}', b"{" * 5000, b'"' + b"x" * 2000 + b'"'])
async def test_malformed_login_bodies_get_400(client: TestClient, body: bytes) -> None:
    resp = await client.post("/auth/token", data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert "error" in await resp.json()


async def test_users_added_while_running_can_log_in(client: TestClient, auth_config: AuthConfig) -> None:
    write_users(auth_config.users_path, {"carol": ("demo",)})
    assert (await login(client, "carol"))["access_token"]


async def test_only_the_stack_may_call_auth_when_it_has_an_internal_credential(aiohttp_client,  # type: ignore[no-untyped-def]
                                                                               auth_config: AuthConfig) -> None:
    from dataclasses import replace
    client = await aiohttp_client(auth.create_app(replace(auth_config, internal_token=INTERNAL_TOKEN)))
    body = {"username": "alice", "password": PASSWORD}
    assert (await client.post("/auth/token", json=body)).status == 403
    assert (await client.post("/auth/token", json=body, headers=internal_headers(b"x" * 32))).status == 403
    assert (await client.post("/auth/token", json=body, headers=internal_headers(INTERNAL_TOKEN))).status == 200
    assert (await client.get("/healthz")).status == 200  # liveness stays open


# --- login backoff and password hashes ---------------------------------------------------------------

async def test_a_username_that_keeps_failing_waits_longer_each_time(aiohttp_client,  # type: ignore[no-untyped-def]
                                                                    auth_config: AuthConfig) -> None:
    from dataclasses import replace
    now = [1000.0]
    config = replace(auth_config, backoff=LoginBackoff(free_failures=3, base_s=2.0, max_s=8.0))
    client = await aiohttp_client(auth.create_app(config, monotonic=lambda: now[0]))
    wrong = {"username": "alice", "password": "guess"}
    statuses = [(await client.post("/auth/token", json=wrong)).status for _ in range(4)]
    assert statuses == [401, 401, 401, 401]  # three free, the fourth starts the backoff
    right = await client.post("/auth/token", json={"username": "Alice", "password": PASSWORD})
    assert right.status == 429 and right.headers["Retry-After"] == "2"  # not even the right password now
    assert (await client.post("/auth/token", json={"username": "bob", "password": PASSWORD})).status == 200
    now[0] += 2.0
    assert (await client.post("/auth/token", json=wrong)).status == 401
    refused = await client.post("/auth/token", json=wrong)
    assert refused.status == 429 and refused.headers["Retry-After"] == "4"  # doubled
    now[0] += 4.0
    await login(client)  # a success forgets the failures
    assert (await client.post("/auth/token", json=wrong)).status == 401


async def test_unknown_usernames_back_off_like_known_ones(client: TestClient) -> None:
    statuses = [(await client.post("/auth/token", json={"username": "ghost", "password": "x"})).status
                for _ in range(7)]
    assert statuses[:5] == [401] * 5 and statuses[-1] == 429  # nothing tells an attacker the user does not exist


async def test_a_login_that_cannot_get_a_hash_slot_in_time_is_a_prompt_503(
        aiohttp_client, auth_config: AuthConfig, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import asyncio
    from dataclasses import replace
    check = auth.verify_password

    def slow_check(stored: str, password: str) -> bool:
        time.sleep(0.5)  # a hash on a busy machine
        return check(stored, password)

    monkeypatch.setattr(auth, "verify_password", slow_check)
    client = await aiohttp_client(auth.create_app(replace(auth_config, max_concurrent_hashes=1, answer_within_s=0.1,
                                                                  backoff=LoginBackoff(free_failures=1))))
    wrong = {"username": "alice", "password": "guess"}
    started = time.monotonic()
    answers = await asyncio.gather(*(client.post("/auth/token", json=wrong) for _ in range(3)))
    assert sorted(a.status for a in answers) == [401, 503, 503]
    assert all(a.headers["Retry-After"] == "1" for a in answers if a.status == 503)
    assert time.monotonic() - started < 5.0  # turned away, not queued behind the slow check
    await login(client)  # one failure is free; the turned-away guesses were not failures: no backoff


def test_the_default_scrypt_cost_is_one_of_owasps() -> None:
    # OWASP Password Storage Cheat Sheet: N=2^17 r=8 p=1, or the equal-cost 2^16/8/2, 2^15/8/3, 2^14/8/5, 2^13/8/10.
    policy = PasswordPolicy()
    assert (policy.n, policy.r, policy.p) in {(2**17, 8, 1), (2**16, 8, 2), (2**15, 8, 3), (2**14, 8, 5), (2**13, 8, 10)}
    assert hash_password("x", policy=policy).startswith(f"scrypt${policy.n}${policy.r}${policy.p}$")


def test_the_unknown_user_hash_costs_one_scrypt_of_the_policy_and_matches_nothing() -> None:
    policy = PasswordPolicy(n=2**10, r=8, p=1)
    stored = dummy_hash(policy)
    assert not needs_rehash(stored, policy)  # verifying it runs scrypt with the policy's parameters
    assert not verify_password(stored, "abrkit-no-such-user") and not verify_password(stored, "")
    assert stored != dummy_hash(policy)  # a random digest, not one any password was hashed to


async def test_an_old_hash_is_replaced_at_the_next_login(client: TestClient, auth_config: AuthConfig) -> None:
    weak = hash_password(PASSWORD, policy=PasswordPolicy(n=2**10, r=8, p=1))
    update_users(auth_config.users_path, lambda users: users.__setitem__(
        "dave", UserRecord(username="dave", password_hash=weak, titles=("demo",))))
    await login(client, "dave")
    deadline = time.monotonic() + 10
    while read_users(auth_config.users_path)["dave"].password_hash == weak:
        assert time.monotonic() < deadline, "the hash was not replaced"
        await _yield()
    assert not needs_rehash(read_users(auth_config.users_path)["dave"].password_hash, PasswordPolicy())
    await login(client, "dave")  # and the same password still works


async def _yield() -> None:
    import asyncio
    await asyncio.sleep(0.05)


# --- refresh by family and generation, logout -------------------------------------------------------

async def test_refresh_rotates_and_reuse_ends_the_whole_login(client: TestClient, auth_config: AuthConfig) -> None:
    first = await login(client)
    resp = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert resp.status == 200
    second = await resp.json()
    assert second["refresh_token"] != first["refresh_token"]
    tokens = verifier(auth_config)
    assert (await tokens.verify_access(second["access_token"])).subject == "alice"
    replay = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replay.status == 401
    with pytest.raises(TokenError, match="revoked"):  # the thief's and the victim's tokens alike
        await tokens.verify_access(second["access_token"])
    again = await client.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert again.status == 401


async def test_refreshing_does_not_grow_the_store(client: TestClient, auth_config: AuthConfig) -> None:
    tokens = await login(client)
    for _ in range(20):
        resp = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert resp.status == 200
        tokens = await resp.json()
    assert store(auth_config).counts() == {"families": 1, "tokens": 0, "subjects": 0}  # one login, one row


async def test_refresh_picks_up_new_entitlements(client: TestClient, auth_config: AuthConfig) -> None:
    tokens = await login(client)
    write_users(auth_config.users_path, {"alice": ("demo", "movie")})
    resp = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    fresh = await resp.json()
    assert verifier(auth_config).decode_access(fresh["access_token"]).titles == ("demo", "movie")


async def test_refresh_refuses_an_access_token(client: TestClient) -> None:
    body = await login(client)
    resp = await client.post("/auth/refresh", json={"refresh_token": body["access_token"]})
    assert resp.status == 401


@pytest.mark.parametrize("with_", ["access", "refresh"])
async def test_logout_with_either_token_ends_the_login_everywhere(client: TestClient, auth_config: AuthConfig,
                                                                  with_: str) -> None:
    body = await login(client)
    other_service = verifier(auth_config)  # as playback or license holds it
    assert (await other_service.verify_access(body["access_token"])).subject == "alice"
    resp = await client.post("/auth/revoke", json={"token": body[f"{with_}_token"]})
    assert resp.status == 200 and (await resp.json()) == {"revoked": True}
    with pytest.raises(TokenError, match="revoked"):
        await other_service.verify_access(body["access_token"])
    assert (await client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})).status == 401


async def test_logout_without_body_ends_the_bearer_tokens_login(client: TestClient, auth_config: AuthConfig) -> None:
    body = await login(client)
    resp = await client.post("/auth/revoke", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert resp.status == 200
    with pytest.raises(TokenError):
        await verifier(auth_config).verify_access(body["access_token"])


async def test_logout_refuses_forged_tokens(client: TestClient) -> None:
    forged = jwt.encode({"sub": "alice", "jti": "x"}, b"x" * 32, algorithm="HS256")
    resp = await client.post("/auth/revoke", json={"token": forged})
    assert resp.status == 401


async def test_a_store_that_cannot_be_written_is_503_logged_once_and_nothing_half_done(
        client: TestClient, auth_config: AuthConfig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="abrkit.revocation")
    tokens = await login(client)
    path = auth_config.tokens.revocations_path
    assert path is not None
    moved = path.with_name("elsewhere.db")
    path.rename(moved)  # gone from where the service opened it: it must not answer "not revoked"
    for _ in range(3):
        refresh = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refresh.status == 503 and int(refresh.headers["Retry-After"]) >= 1
        logout = await client.post("/auth/revoke", json={"token": tokens["access_token"]})
        assert logout.status == 503 and int(logout.headers["Retry-After"]) >= 1
    errors = [r for r in caplog.records if r.name == "abrkit.revocation" and r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert (await client.post("/auth/token", json={"username": "bob", "password": PASSWORD})).status == 200
    moved.rename(path)
    resp = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert resp.status == 200  # the failed refreshes changed nothing: the token is still the current one
    assert any("available again" in r.getMessage() for r in caplog.records if r.name == "abrkit.revocation")
