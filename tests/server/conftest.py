"""Helpers shared by the server tests: keys, token policies and issuers, users files, fake titles with key stores;
and the edge tests' fixtures (a fake title, an instrumented origin, edges in front of it: tests/server/edgekit.py)."""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.config import TokenPolicy
from server.edge import EdgeConfig, RunningEdge, start_edge
from server.keys import ed25519_public
from server.passwords import hash_password
from server.revocation import create_store
from server.tokens import TokenIssuer
from server.users import UserRecord, update_users
from tests.server.edgekit import (
    INTERNAL,
    LICENSE_URL,
    MANIFEST,
    REPS,
    SEGMENT_BYTES,
    SEGMENTS_PER_REP,
    TITLE,
    VERIFY_KEY,
    EdgeFactory,
    OriginProbe,
    object_bytes,
    start_origin,
    title_paths,
)

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


# -- the edge tests' fixtures (tests/server/test_edge*.py) ------------------------------------------

@pytest.fixture
def content_root(tmp_path: Path) -> Path:
    root = tmp_path / "content"
    for path in title_paths()[1:]:
        file = root / path.lstrip("/")
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(object_bytes(path))
    (root / TITLE / "manifest.mpd").write_text(MANIFEST)
    (root / TITLE / "segments.json").write_text(json.dumps({
        kind: [{"id": rep, "segment_sizes_bytes": [SEGMENT_BYTES] * SEGMENTS_PER_REP} for rep in reps]
        for kind, reps in REPS.items()}))
    return root


@pytest.fixture
async def origin(content_root: Path) -> AsyncIterator[OriginProbe]:
    probe = await start_origin(content_root)
    yield probe
    probe.gate.set()
    await probe.stop()


@pytest.fixture
async def make_edge(origin: OriginProbe) -> AsyncIterator[EdgeFactory]:
    running: list[RunningEdge] = []

    async def factory(**overrides: Any) -> RunningEdge:
        settings: dict[str, Any] = {"edge_id": "edge-test", "origin_url": origin.url, "url_verify_key": VERIFY_KEY,
                                    "internal_token": INTERNAL, "license_url": LICENSE_URL, "origin_timeout_s": 5.0}
        settings.update(overrides)
        edge = await start_edge(EdgeConfig(**settings))
        running.append(edge)
        return edge

    yield factory
    origin.gate.set()
    for edge in running:
        await edge.stop()


@pytest.fixture
async def edge(make_edge: EdgeFactory) -> RunningEdge:
    return await make_edge()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(record.getMessage()))


@pytest.fixture
def access_lines() -> Any:
    logger = logging.getLogger("abrkit.access")
    handler, level = _Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(level)
