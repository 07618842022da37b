"""Signed segment URLs: the playback API signs a path prefix, edges verify it without calling auth.

A token sits in the path, `/s/<token>/<title>/<file>`, so every relative URL a player resolves
against the MPD carries it (a query string would be lost on relative resolution). The token is
`base64url(payload) "." base64url(Ed25519 signature of payload)` with payload JSON
`{"p": "/<title>/", "exp": <unix s>, "sid": <session>, "sub": <user>, "fam": <login>, "iat": <unix s>}`
and grants GET/HEAD on every path under the prefix until `exp`. Only the playback API holds the
private key; edges hold the public one, so a compromised edge cannot mint URLs. `sub`, `fam` and
`iat` bind the URL to the login that asked for it: edges refuse it once that login is revoked or the
user changed (server/revocation.py). With regions (server/regions.py), `"rg"` is the client region
steering placed the session in: the edge emulates its RTT to that region. Compare the CDN URL-signing schemes (CloudFront, Akamai EdgeAuth).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature

from server.formats.b64 import b64url_decode, b64url_encode
from server.formats.urls import SIGNED_PREFIX
from server.keys import ed25519_private, ed25519_verifier

MAX_TOKEN_CHARS = 1024
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


class SignatureError(ValueError):
    """A missing, malformed, tampered, expired or out-of-scope URL signature."""


@dataclass(frozen=True, kw_only=True, slots=True)
class UrlGrant:
    """What a valid token allows: paths under `path_prefix` until `expires_at` (unix seconds), for
    session `session_id` of login `family` of `subject`, signed at `issued_at` (unix seconds)."""

    path_prefix: str
    expires_at: int
    session_id: str
    subject: str = ""
    family: str = ""
    issued_at: float = 0.0
    region: str = ""  # the client region steering placed the session in ("": the stack has no regions)


class UrlSigner:
    """Signs grants with the Ed25519 seed `key` (the playback API's)."""

    def __init__(self, key: bytes) -> None:
        self._key = ed25519_private(key)

    def sign(self, grant: UrlGrant) -> str:
        fields = {"p": grant.path_prefix, "exp": grant.expires_at, "sid": grant.session_id,
                  "sub": grant.subject, "fam": grant.family, "iat": grant.issued_at}
        if grant.region:
            fields["rg"] = grant.region
        payload = json.dumps(fields, separators=(",", ":"), sort_keys=True).encode()
        return f"{b64url_encode(payload)}.{b64url_encode(self._key.sign(payload))}"


class UrlVerifier:
    """Verifies tokens with the Ed25519 public key `key` (what edges hold)."""

    def __init__(self, key: bytes) -> None:
        self._key = ed25519_verifier(key)

    def verify(self, token: str, *, now: float) -> UrlGrant:
        """The grant a token carries, or `SignatureError` saying why it is not acceptable."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise SignatureError("missing or oversized URL token")
        if not _TOKEN_SHAPE.fullmatch(token):
            raise SignatureError("malformed URL token")
        payload_b64, _, signature_b64 = token.partition(".")
        try:
            payload, signature = b64url_decode(payload_b64), b64url_decode(signature_b64)
        except ValueError:
            raise SignatureError("token is not valid base64url") from None
        try:
            self._key.verify(signature, payload)
        except InvalidSignature:
            raise SignatureError("URL signature does not match") from None
        try:
            fields = json.loads(payload)
            grant = UrlGrant(path_prefix=str(fields["p"]), expires_at=int(fields["exp"]),
                             session_id=str(fields["sid"]), subject=str(fields.get("sub", "")),
                             family=str(fields.get("fam", "")), issued_at=float(fields.get("iat", 0.0)),
                             region=str(fields.get("rg", ""))[:32])
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
            raise SignatureError("malformed URL token payload") from None
        if not math.isfinite(grant.issued_at):
            raise SignatureError("malformed URL token payload")
        if now >= grant.expires_at:
            raise SignatureError("URL token expired")
        return grant

    def check_path(self, path: str, *, now: float) -> tuple[UrlGrant, str]:
        """Verify a signed request path; returns the grant and the content path it may fetch."""
        token, content_path = split_signed_path(path)
        check_content_path(content_path)
        grant = self.verify(token, now=now)
        if not content_path.startswith(grant.path_prefix):
            raise SignatureError("URL token does not cover this path")
        return grant, content_path


def sign(key: bytes, grant: UrlGrant) -> str:
    """The token for `grant`, signed with the Ed25519 seed `key`."""
    return UrlSigner(key).sign(grant)


def verify(key: bytes, token: str, *, now: float) -> UrlGrant:
    """`UrlVerifier(key).verify(token, now=now)` with the public key `key`."""
    return UrlVerifier(key).verify(token, now=now)


def check_path(key: bytes, path: str, *, now: float) -> tuple[UrlGrant, str]:
    return UrlVerifier(key).check_path(path, now=now)


def check_content_path(content_path: str) -> None:
    if "\x00" in content_path or any(part in (".", "..") for part in content_path.split("/")):
        raise SignatureError("path not allowed")


def signed_path(token: str, path: str) -> str:
    """`/s/<token>/<title>/<file>` for the content path `/<title>/<file>`."""
    if not path.startswith("/"):
        raise ValueError(f"content path must start with '/': {path!r}")
    return f"{SIGNED_PREFIX}{token}{path}"


def split_signed_path(path: str) -> tuple[str, str]:
    """(token, content path) from `/s/<token>/<rest>`; `SignatureError` if the path is not signed."""
    if not path.startswith(SIGNED_PREFIX):
        raise SignatureError("URL is not signed")
    token, slash, rest = path[len(SIGNED_PREFIX):].partition("/")
    if not slash or not token:
        raise SignatureError("URL is not signed")
    return token, "/" + rest
