"""Helpers shared by the server tests: keys, token policies and issuers, users files, fake titles with key stores."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from server.config import TokenPolicy
from server.keys import ed25519_public
from server.passwords import hash_password
from server.revocation import create_store
from server.tokens import TokenIssuer
from server.users import UserRecord, update_users

PASSWORD = "correct horse battery"
SIGNING_KEY = b"k" * 32  # the tests' Ed25519 seed for tokens (auth's key)
URL_KEY = b"u" * 32  # ... and for segment URLs (the playback API's key)
INTERNAL_TOKEN = b"i" * 32
_HASH_CACHE: dict[str, str] = {}


def token_policy(tmp_path: Path, **changes: object) -> TokenPolicy:
    """The policy every service of a test verifies with, its revocation store created in `tmp_path`."""
    store = tmp_path / "revocations.db"
    create_store(store)
    settings: dict[str, object] = {"verify_key": ed25519_public(SIGNING_KEY), "revocations_path": store, **changes}
    return TokenPolicy(**settings)  # type: ignore[arg-type]


def issue(policy: TokenPolicy, subject: str = "alice", titles: tuple[str, ...] = ("demo",), *,
          signing_key: bytes = SIGNING_KEY) -> str:
    """An access token as auth would issue it."""
    return TokenIssuer(policy, signing_key).issue(subject, titles).access_token


def password_hash(password: str = PASSWORD) -> str:
    """scrypt is slow on purpose: hash each test password once per session."""
    if password not in _HASH_CACHE:
        _HASH_CACHE[password] = hash_password(password)
    return _HASH_CACHE[password]


def write_users(path: Path, users: dict[str, tuple[str, ...]], *, disabled: tuple[str, ...] = ()) -> Path:
    """A users file: every user has password `PASSWORD` and the given titles."""
    def add(existing: dict[str, UserRecord]) -> None:
        for name, titles in users.items():
            existing[name] = UserRecord(username=name, password_hash=password_hash(), titles=titles,
                                        disabled=name in disabled)
    update_users(path, add)
    return path


def fake_title(root: Path, title: str, *, tracks: tuple[str, ...] = ("video", "audio")) -> dict[bytes, bytes]:
    """A title directory with a manifest and a 0600 keys.json (one key per track); returns kid -> key."""
    directory = root / title
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "manifest.mpd").write_text("<MPD/>\n")
    keys = {secrets.token_bytes(16): secrets.token_bytes(16) for _ in tracks}
    entries = [{"kid": kid.hex(), "key": key.hex(), "tracks": [track]} for (kid, key), track in zip(keys.items(), tracks)]
    fd = os.open(directory / "keys.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"title": title, "keys": entries}, out)
    return keys
