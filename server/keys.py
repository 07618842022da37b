"""The stack's keys: what `secrets.json` holds, their public halves, and which service gets which.

Access tokens are signed by auth alone and segment URLs by the playback API alone, each with its own
Ed25519 key (RFC 8032); every other service gets only the public half, which verifies but cannot
sign. The internal credential (32 random bytes) is what the gateway and the edges present to the
internal services (origin, auth, playback, license) and to every `/internal/*` endpoint.
`secrets_for(kind, secrets)` is the one table of who holds what (docs/SECURITY.md).
"""

from __future__ import annotations

import json
import secrets as _secrets
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from server.config import MIN_KEY_BYTES
from server.formats.b64 import b64url_encode
from server.privatefiles import check_private, file_lock, write_private

ED25519_KEY_BYTES = 32


def ed25519_private(seed: bytes) -> Ed25519PrivateKey:
    """The Ed25519 signing key of a 32-byte seed (RFC 8032 section 5.1.5)."""
    if len(seed) != ED25519_KEY_BYTES:
        raise ValueError(f"an Ed25519 private key is {ED25519_KEY_BYTES} bytes, got {len(seed)}")
    return Ed25519PrivateKey.from_private_bytes(seed)


def ed25519_public(seed: bytes) -> bytes:
    """The 32 raw bytes of the public key of `seed`."""
    return ed25519_private(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def ed25519_verifier(public: bytes) -> Ed25519PublicKey:
    if len(public) != ED25519_KEY_BYTES:
        raise ValueError(f"an Ed25519 public key is {ED25519_KEY_BYTES} bytes, got {len(public)}")
    return Ed25519PublicKey.from_public_bytes(public)


def internal_credential(token: bytes) -> str:
    """The header value that carries the internal credential (base64url of its bytes)."""
    return b64url_encode(token)


@dataclass(frozen=True, kw_only=True, slots=True)
class Secrets:
    """Every key of one stack installation (never printed: repr hides them). Only the process that
    starts the stack reads them all; each service gets `secrets_for` its kind."""

    jwt_signing_key: bytes = field(repr=False)  # Ed25519 seed: signs access and refresh tokens (auth)
    url_signing_key: bytes = field(repr=False)  # Ed25519 seed: signs segment URLs (playback)
    internal_token: bytes = field(repr=False)  # the internal credential
    demo_password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name in ("jwt_signing_key", "url_signing_key"):
            ed25519_private(getattr(self, name))  # raises if not a valid seed
        if len(self.internal_token) < MIN_KEY_BYTES:
            raise ValueError(f"internal_token must be at least {MIN_KEY_BYTES} bytes")

    @property
    def jwt_verify_key(self) -> bytes:
        return ed25519_public(self.jwt_signing_key)

    @property
    def url_verify_key(self) -> bytes:
        return ed25519_public(self.url_signing_key)


@dataclass(frozen=True, kw_only=True, slots=True)
class ServiceSecrets:
    """What one service process holds: the internal credential, and only the keys its kind needs."""

    internal_token: bytes = field(repr=False)
    jwt_signing_key: bytes | None = field(default=None, repr=False)
    jwt_verify_key: bytes | None = None
    url_signing_key: bytes | None = field(default=None, repr=False)
    url_verify_key: bytes | None = None

    def require(self, name: str) -> bytes:
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"this service was not given {name}")
        return value

    def to_json(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name).hex() for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_json(cls, data: Any) -> ServiceSecrets:
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ValueError("service secrets must be a JSON object of hex strings")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown service secrets {sorted(unknown)}")
        return cls(**{name: bytes.fromhex(value) for name, value in data.items()})


# Which key each kind of service holds besides the internal credential (docs/SECURITY.md).
NEEDS: dict[str, tuple[str, ...]] = {
    "origin": (),
    "edge": ("url_verify_key",),
    "auth": ("jwt_signing_key", "jwt_verify_key"),
    "playback": ("jwt_verify_key", "url_signing_key"),
    "license": ("jwt_verify_key",),
    "gateway": ("jwt_verify_key",),
}


def secrets_for(kind: str, secrets: Secrets) -> ServiceSecrets:
    """The secrets a service of `kind` gets (origin, edge, auth, playback, license, gateway)."""
    if kind not in NEEDS:
        raise ValueError(f"unknown service kind {kind!r}")
    return ServiceSecrets(internal_token=secrets.internal_token,
                          **{name: getattr(secrets, name) for name in NEEDS[kind]})


# --- the secrets file -------------------------------------------------------------------------------

_KEYS = {"jwt_signing_key", "url_signing_key", "internal_token"}


def _fresh() -> dict[str, str]:
    return {"jwt_signing_key": _secrets.token_hex(32), "url_signing_key": _secrets.token_hex(32),
            "internal_token": _secrets.token_hex(32)}


def load_or_create_secrets(path: Path) -> Secrets:
    """The secrets in `path`, generated (CSPRNG) and written with mode 0600 if it does not exist, and
    completed with fresh keys for any it lacks (one a newer version needs, or one removed to rotate it)."""
    if not path.exists() or not _KEYS <= set(_read(path)):
        with file_lock(path):
            data = _read(path) if path.exists() else {}
            if not path.exists() or not _KEYS <= set(data):
                write_private(path, json.dumps({**_fresh(), **data}, indent=2) + "\n")
    return load_secrets(path)


def _read(path: Path) -> dict[str, Any]:
    check_private(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise ValueError(f"{path}: not a valid secrets file (not JSON)") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a valid secrets file (not an object)")
    return data


def load_secrets(path: Path) -> Secrets:
    data = _read(path)
    try:
        return Secrets(jwt_signing_key=bytes.fromhex(data["jwt_signing_key"]),
                       url_signing_key=bytes.fromhex(data["url_signing_key"]),
                       internal_token=bytes.fromhex(data["internal_token"]),
                       demo_password=data.get("demo_password"))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not a valid secrets file ({exc.__class__.__name__})") from None


def store_demo_password(path: Path, password: str) -> None:
    """Keep the generated demo password beside the keys so every `abrkit serve` can print it."""
    with file_lock(path):
        data = _read(path)
        data["demo_password"] = password
        write_private(path, json.dumps(data, indent=2) + "\n")
