"""Signed segment URLs: the playback API signs a path prefix, edges verify it without calling auth.

A token sits in the path, `/s/<token>/<title>/<file>`, so every relative URL a player resolves
against the MPD carries it (a query string would be lost on relative resolution). The token is
`base64url(payload) "." base64url(HMAC-SHA256(key, payload))` with payload JSON
`{"p": "/<title>/", "exp": <unix s>, "sid": "<session id>"}` and grants GET/HEAD on every path
under the prefix until `exp`. Compare the CDN URL-signing schemes (CloudFront, Akamai EdgeAuth).
The same key also derives `internal_token`, the bearer of the services' `/internal/*` endpoints.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass

from server.formats.b64 import b64url_decode, b64url_encode
from server.formats.urls import SIGNED_PREFIX

MAX_TOKEN_CHARS = 1024
INTERNAL_TOKEN_CONTEXT = b"abrkit-edge-internal"


class SignatureError(ValueError):
    """A missing, malformed, tampered, expired or out-of-scope URL signature."""


@dataclass(frozen=True, kw_only=True, slots=True)
class UrlGrant:
    """What a valid token allows: paths under `path_prefix` until `expires_at` (unix seconds)."""

    path_prefix: str
    expires_at: int
    session_id: str


def _b64decode(text: str) -> bytes:
    try:
        return b64url_decode(text)
    except ValueError:
        raise SignatureError("token is not valid base64url") from None


def sign(key: bytes, grant: UrlGrant) -> str:
    """The token for `grant`."""
    if len(key) < 16:
        raise ValueError("URL signing key must be at least 16 bytes")
    payload = json.dumps({"p": grant.path_prefix, "exp": grant.expires_at, "sid": grant.session_id},
                         separators=(",", ":"), sort_keys=True).encode()
    mac = hmac.new(key, payload, hashlib.sha256).digest()
    return f"{b64url_encode(payload)}.{b64url_encode(mac)}"


def verify(key: bytes, token: str, *, now: float) -> UrlGrant:
    """The grant a token carries, or `SignatureError` saying why it is not acceptable."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise SignatureError("missing or oversized URL token")
    payload_b64, dot, mac_b64 = token.partition(".")
    if not dot:
        raise SignatureError("malformed URL token")
    payload = _b64decode(payload_b64)
    expected = hmac.new(key, payload, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, _b64decode(mac_b64)):
        raise SignatureError("URL signature does not match")
    try:
        fields = json.loads(payload)
        grant = UrlGrant(path_prefix=str(fields["p"]), expires_at=int(fields["exp"]), session_id=str(fields["sid"]))
    except (ValueError, KeyError, TypeError):
        raise SignatureError("malformed URL token payload") from None
    if now >= grant.expires_at:
        raise SignatureError("URL token expired")
    return grant


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


def check_path(key: bytes, path: str, *, now: float) -> tuple[UrlGrant, str]:
    """Verify a signed request path; returns the grant and the content path it may fetch."""
    token, content_path = split_signed_path(path)
    if "\x00" in content_path or any(part in (".", "..") for part in content_path.split("/")):
        raise SignatureError("path not allowed")
    grant = verify(key, token, now=now)
    if not content_path.startswith(grant.path_prefix):
        raise SignatureError("URL token does not cover this path")
    return grant, content_path


def internal_token(url_signing_key: bytes) -> str:
    """The bearer secret of the services' `/internal/*` endpoints (edge heartbeats to the playback API;
    fault injection and pre-positioning on an edge). Derived from the URL-signing key under its own
    context, so holding it does not let anyone sign URLs."""
    return b64url_encode(hmac.new(url_signing_key, INTERNAL_TOKEN_CONTEXT, hashlib.sha256).digest())
