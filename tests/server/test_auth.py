"""Auth service and tokens: logins, refresh rotation and reuse detection, revocation, hostile tokens."""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from pathlib import Path

import jwt
import pytest
from aiohttp.test_utils import TestClient

from server import auth
from server.auth import RevocationStore, TokenError, TokenService, hash_password, verify_password
from server.config import AuthConfig, load_or_create_secrets
from tests.server.conftest import PASSWORD, token_policy, write_users


@pytest.fixture
def auth_config(tmp_path: Path) -> AuthConfig:
    users = write_users(tmp_path / "stack.json", {"alice": ("demo",), "bob": ("*",)})
    write_users(users, {"mallory": ("demo",)}, disabled=("mallory",))
    return AuthConfig(users_path=users, tokens=token_policy(tmp_path), max_body_bytes=1024)


@pytest.fixture
async def client(aiohttp_client, auth_config: AuthConfig) -> TestClient:  # type: ignore[no-untyped-def]
    return await aiohttp_client(auth.create_app(auth_config))


async def login(client: TestClient, username: str = "alice", password: str = PASSWORD) -> dict:  # type: ignore[type-arg]
    resp = await client.post("/auth/token", json={"username": username, "password": password})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_login_returns_a_bearer_token_with_all_claims(client: TestClient, auth_config: AuthConfig) -> None:
    body = await login(client)
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == auth_config.tokens.access_ttl_s
    claims = jwt.decode(body["access_token"], auth_config.tokens.signing_key, algorithms=["HS256"], audience="abrkit")
    assert {"exp", "iat", "nbf", "aud", "iss", "sub", "jti", "titles"} <= set(claims)
    assert claims["sub"] == "alice" and claims["titles"] == ["demo"]
    assert jwt.get_unverified_header(body["access_token"])["alg"] == "HS256"


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


async def test_refresh_rotates_and_reuse_revokes_the_whole_family(client: TestClient,
                                                                   auth_config: AuthConfig) -> None:
    first = await login(client)
    resp = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert resp.status == 200
    second = await resp.json()
    assert second["refresh_token"] != first["refresh_token"]
    tokens = TokenService(auth_config.tokens)
    assert tokens.verify_access(second["access_token"]).subject == "alice"
    replay = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replay.status == 401
    with pytest.raises(TokenError, match="revoked"):  # the thief's and the victim's tokens alike
        TokenService(auth_config.tokens).verify_access(second["access_token"])
    again = await client.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert again.status == 401


async def test_refresh_refuses_an_access_token(client: TestClient) -> None:
    body = await login(client)
    resp = await client.post("/auth/refresh", json={"refresh_token": body["access_token"]})
    assert resp.status == 401


async def test_revoke_rejects_the_token_everywhere_it_is_verified(client: TestClient, auth_config: AuthConfig) -> None:
    body = await login(client)
    other_service = TokenService(auth_config.tokens)  # as the gateway, playback or license would hold it
    assert other_service.verify_access(body["access_token"]).subject == "alice"
    resp = await client.post("/auth/revoke", json={"token": body["access_token"]})
    assert resp.status == 200 and (await resp.json()) == {"revoked": True}
    with pytest.raises(TokenError, match="revoked"):
        other_service.verify_access(body["access_token"])


async def test_revoke_without_body_revokes_the_bearer_token(client: TestClient, auth_config: AuthConfig) -> None:
    body = await login(client)
    resp = await client.post("/auth/revoke", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert resp.status == 200
    with pytest.raises(TokenError):
        TokenService(auth_config.tokens).verify_access(body["access_token"])


async def test_revoke_refuses_forged_tokens(client: TestClient) -> None:
    forged = jwt.encode({"sub": "alice", "jti": "x"}, b"x" * 32, algorithm="HS256")
    resp = await client.post("/auth/revoke", json={"token": forged})
    assert resp.status == 401


# --- hostile tokens ------------------------------------------------------------------------------

def _claims(**changes: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {"iss": "abrkit-auth", "aud": "abrkit", "sub": "alice", "iat": now, "nbf": now,
                                 "exp": now + 600, "jti": "j1", "titles": ["demo"]}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(claims: dict[str, object]) -> str:
    return f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}."


KEY = b"k" * 32


@pytest.mark.parametrize(("name", "make"), [
    ("alg none", lambda: _unsigned(_claims())),
    ("HS512", lambda: jwt.encode(_claims(), KEY, algorithm="HS512")),
    ("wrong key", lambda: jwt.encode(_claims(), b"z" * 32, algorithm="HS256")),
    ("wrong audience", lambda: jwt.encode(_claims(aud="other"), KEY, algorithm="HS256")),
    ("refresh audience", lambda: jwt.encode(_claims(aud="abrkit:refresh"), KEY, algorithm="HS256")),
    ("wrong issuer", lambda: jwt.encode(_claims(iss="evil"), KEY, algorithm="HS256")),
    ("expired", lambda: jwt.encode(_claims(exp=int(time.time()) - 60), KEY, algorithm="HS256")),
    ("nbf in future", lambda: jwt.encode(_claims(nbf=int(time.time()) + 600), KEY, algorithm="HS256")),
    ("iat in future", lambda: jwt.encode(_claims(iat=int(time.time()) + 600), KEY, algorithm="HS256")),
    ("no jti", lambda: jwt.encode(_claims(jti=None), KEY, algorithm="HS256")),
    ("no exp", lambda: jwt.encode(_claims(exp=None), KEY, algorithm="HS256")),
    ("titles not a list", lambda: jwt.encode(_claims(titles="demo"), KEY, algorithm="HS256")),
    ("garbage", lambda: "not.a.token"),
    ("empty", lambda: ""),
    ("huge", lambda: "a" * 100_000),
])
# Forging HS512 with our 32-byte key is the point of one case: PyJWT's key-length warning is expected.
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_verifier_rejects_hostile_tokens(tmp_path: Path, name: str, make) -> None:  # type: ignore[no-untyped-def]
    tokens = TokenService(token_policy(tmp_path))
    with pytest.raises(TokenError):
        tokens.verify_access(make())


def test_verifier_rejects_a_tampered_payload(tmp_path: Path) -> None:
    tokens = TokenService(token_policy(tmp_path))
    good = tokens.issue("alice", ("demo",)).access_token
    header, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["titles"] = ["*"]
    tampered = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    assert tokens.verify_access(good).titles == ("demo",)
    with pytest.raises(TokenError):
        tokens.verify_access(tampered)


def test_verifier_accepts_small_clock_skew_but_not_expiry_on_an_injected_clock(tmp_path: Path) -> None:
    now = [1_000_000.0]
    tokens = TokenService(token_policy(tmp_path, leeway_s=5.0, access_ttl_s=60), clock=lambda: now[0])
    token = tokens.issue("alice", ("demo",)).access_token
    now[0] -= 3  # the verifier's clock is a little behind the issuer's
    assert tokens.verify_access(token).subject == "alice"
    now[0] += 3 + 60 + 4
    assert tokens.verify_access(token).subject == "alice"  # within leeway
    now[0] += 2
    with pytest.raises(TokenError, match="expired"):
        tokens.verify_access(token)


def test_subject_revocation_rejects_earlier_tokens_only(tmp_path: Path) -> None:
    now = [1_000_000.0]
    policy = token_policy(tmp_path)
    tokens = TokenService(policy, clock=lambda: now[0])
    old = tokens.issue("alice", ("demo",)).access_token
    now[0] += 0.5
    RevocationStore(policy.revocations_path, clock=lambda: now[0]).revoke_subject("alice")
    now[0] += 0.5
    new = tokens.issue("alice", ("demo",)).access_token
    with pytest.raises(TokenError, match="revoked"):
        tokens.verify_access(old)
    assert tokens.verify_access(new).subject == "alice"


# --- passwords and secrets -------------------------------------------------------------------------

def test_password_hashes_are_salted_scrypt_and_verify() -> None:
    first, second = hash_password("s3cret-pass"), hash_password("s3cret-pass")
    assert first.startswith("scrypt$") and first != second
    assert verify_password(first, "s3cret-pass")
    assert not verify_password(first, "s3cret-pasS")
    assert not verify_password("scrypt$broken", "s3cret-pass")


def test_secrets_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "state" / "secrets.json"
    first = load_or_create_secrets(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_secrets(path).jwt_signing_key == first.jwt_signing_key
    assert len(first.jwt_signing_key) >= 32 and first.jwt_signing_key != first.url_signing_key
    shown = repr(first) + str(first)  # what a log line or a traceback would print
    for key in (first.jwt_signing_key, first.url_signing_key):
        assert key.hex() not in shown and repr(key)[2:-1] not in shown  # neither as hex nor as bytes


def test_a_secrets_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    load_or_create_secrets(path)
    os.chmod(path, 0o644)
    with pytest.raises(ValueError, match="chmod 600"):
        load_or_create_secrets(path)
