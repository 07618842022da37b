"""Tokens: EdDSA issue and verify, claims and time, revocation by token, family and user, and hostile
input of every kind (forged, tampered, arbitrary Unicode and bytes): always one `TokenError`."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.keys import ed25519_private
from server.revocation import RevocationStore
from server.tokens import TokenError, TokenIssuer, TokenVerifier
from tests.server.conftest import SIGNING_KEY, token_policy

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _claims(**changes: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {"iss": "abrkit-auth", "aud": "abrkit", "sub": "alice", "iat": now, "nbf": now,
                                 "exp": now + 600, "jti": "j1", "titles": ["demo"]}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(claims: dict[str, object], alg: str = "none") -> str:
    return f"{_b64(json.dumps({'alg': alg, 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}."


KEY = ed25519_private(SIGNING_KEY)
OTHER = ed25519_private(b"z" * 32)


def _eddsa(claims: dict[str, object], key: object = KEY) -> str:
    return jwt.encode(claims, key, algorithm="EdDSA")  # type: ignore[arg-type]


HOSTILE = {
    "alg none": lambda: _unsigned(_claims()),
    "alg none with a signature": lambda: _unsigned(_claims())[:-1] + ".x",
    "HS256 with the public key as secret": lambda: jwt.encode(_claims(), b"public key bytes" * 2, algorithm="HS256"),
    "wrong key": lambda: _eddsa(_claims(), OTHER),
    "wrong audience": lambda: _eddsa(_claims(aud="other")),
    "refresh audience": lambda: _eddsa(_claims(aud="abrkit:refresh")),
    "wrong issuer": lambda: _eddsa(_claims(iss="evil")),
    "expired": lambda: _eddsa(_claims(exp=int(time.time()) - 60)),
    "nbf in future": lambda: _eddsa(_claims(nbf=int(time.time()) + 600)),
    "iat in future": lambda: _eddsa(_claims(iat=int(time.time()) + 600)),
    "no jti": lambda: _eddsa(_claims(jti=None)),
    "no exp": lambda: _eddsa(_claims(exp=None)),
    "titles not a list": lambda: _eddsa(_claims(titles="demo")),
    "gen negative": lambda: _eddsa(_claims(gen=-1)),
    "gen a string": lambda: _eddsa(_claims(gen="1")),
    "exp infinite": lambda: _eddsa(_claims(exp=1e400)),
    "header not an object": lambda: _b64(b"[1]") + "." + _b64(b"{}") + ".abc",
    "header not JSON": lambda: _b64(b"\xff\xfe") + "." + _b64(b"{}") + ".abc",
    "lone surrogate": lambda: "\ud800",
    "surrogates in segments": lambda: "\udcff.\udcfe.\udcfd",
    "non-ASCII letters": lambda: "é.é.é",
    "NUL": lambda: "a\x00.b.c",
    "padding": lambda: "eyJhbGciOiJFZERTQSJ9==.e30.abc",
    "spaces": lambda: "eyJh bGci.e30.abc",
    "two segments": lambda: "eyJhbGciOiJFZERTQSJ9.e30",
    "empty signature": lambda: "eyJhbGciOiJFZERTQSJ9.e30.",
    "garbage": lambda: "not.a.token",
    "empty": lambda: "",
    "huge": lambda: "a" * 100_000,
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_verifier_refuses_hostile_tokens_with_one_error(tmp_path: Path, name: str) -> None:
    tokens = TokenVerifier(token_policy(tmp_path))
    token = HOSTILE[name]()
    # A logout may name an expired or future token, and a refresh token is one to `decode_refresh`.
    fine_elsewhere = name in ("refresh audience", "expired", "nbf in future", "iat in future")
    for check in (tokens.decode_access,) if fine_elsewhere else (tokens.decode_access, tokens.decode_refresh,
                                                                  tokens.inspect):
        with pytest.raises(TokenError):
            check(token)


@FUZZ
@given(token=st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("utf-8", "surrogateescape")))
def test_any_string_at_all_is_a_token_error_or_a_token(tmp_path: Path, token: str) -> None:
    tokens = TokenVerifier(token_policy(tmp_path))
    for check in (tokens.decode_access, tokens.decode_refresh, tokens.inspect):
        with pytest.raises(TokenError):
            check(token)


@FUZZ
@given(position=st.integers(min_value=0), replacement=st.characters())
def test_a_token_changed_anywhere_to_any_character_is_refused(tmp_path: Path, position: int, replacement: str) -> None:
    policy = token_policy(tmp_path)
    good = TokenIssuer(policy, SIGNING_KEY).issue("alice", ("demo",)).access_token
    position %= len(good)
    tampered = good[:position] + replacement + good[position + 1:]
    tokens = TokenVerifier(policy)
    try:
        claims = tokens.decode_access(tampered)
    except TokenError:
        return
    # Only base64url's unused trailing bits (a segment's last character) can change without changing the bytes.
    assert claims == tokens.decode_access(good) and _segments(tampered) == _segments(good)


def _segments(token: str) -> list[bytes]:
    return [base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)) for part in token.split(".")]


def test_verifier_rejects_a_tampered_payload(tmp_path: Path) -> None:
    policy = token_policy(tmp_path)
    good = TokenIssuer(policy, SIGNING_KEY).issue("alice", ("demo",)).access_token
    header, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["titles"] = ["*"]
    tampered = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    tokens = TokenVerifier(policy)
    assert tokens.decode_access(good).titles == ("demo",)
    with pytest.raises(TokenError):
        tokens.decode_access(tampered)


def test_only_the_signing_key_of_the_policy_can_issue(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not match"):
        TokenIssuer(token_policy(tmp_path), b"z" * 32)


def test_verifier_accepts_small_clock_skew_but_not_expiry_on_an_injected_clock(tmp_path: Path) -> None:
    now = [1_000_000.0]
    policy = token_policy(tmp_path, leeway_s=5.0, access_ttl_s=60)
    token = TokenIssuer(policy, SIGNING_KEY, clock=lambda: now[0]).issue("alice", ("demo",)).access_token
    tokens = TokenVerifier(policy, clock=lambda: now[0])
    now[0] -= 3  # the verifier's clock is a little behind the issuer's
    assert tokens.decode_access(token).subject == "alice"
    now[0] += 3 + 60 + 4
    assert tokens.decode_access(token).subject == "alice"  # within leeway
    now[0] += 2
    with pytest.raises(TokenError, match="expired"):
        tokens.decode_access(token)


async def test_subject_stamps_reject_earlier_tokens_only(tmp_path: Path) -> None:
    now = [time.time()]
    policy = token_policy(tmp_path)
    issuer = TokenIssuer(policy, SIGNING_KEY, clock=lambda: now[0])
    tokens = TokenVerifier(policy, clock=lambda: now[0])
    old = issuer.issue("alice", ("demo",)).access_token
    now[0] += 0.5
    assert policy.revocations_path is not None
    RevocationStore(policy.revocations_path).stamp_subject("alice", until=now[0] + 60, at=now[0])
    now[0] += 0.5
    new = issuer.issue("alice", ("demo",)).access_token
    with pytest.raises(TokenError, match="revoked"):
        await tokens.verify_access(old)
    assert (await tokens.verify_access(new)).subject == "alice"
