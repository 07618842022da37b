"""Shared fixtures: the read-only data folder `../shared`, small traces and ladders, and one short
packaged demo title (clear and encrypted) used by the server and player tests."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from abr.types import Ladder
from netsim import synthetic
from netsim.trace import Trace
from server.packager import PackageConfig, PackageResult, Rung, package, parse_ladder
from server.packaging.demo import DemoClipConfig, write_demo_source

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session", autouse=True)
def _scrypt_computed_once_per_input() -> Iterator[None]:
    """scrypt is a pure function that costs ~0.3 s of CPU at the stack's OWASP policy, and the suite repeats
    inputs: every embedded stack hashes its demo user's fresh password, and every login by that user verifies
    the same password, salt and parameters again. Each distinct input is computed once by the real
    `hashlib.scrypt` and its digest reused, so every hash and verification is scrypt's own answer (a wrong
    password is a different input and is computed). Services in other processes hash for real."""
    real = hashlib.scrypt
    digests: dict[tuple[bytes, bytes, int, int, int, int], bytes] = {}
    lock = threading.Lock()

    def scrypt(password: bytes, *, salt: bytes, n: int, r: int, p: int, maxmem: int = 0, dklen: int = 64) -> bytes:
        key = (bytes(password), bytes(salt), n, r, p, dklen)
        with lock:
            digest = digests.get(key)
        if digest is None:
            digest = real(password, salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=dklen)
            with lock:
                digests[key] = digest
        return digest

    hashlib.scrypt = scrypt  # type: ignore[assignment]
    try:
        yield
    finally:
        hashlib.scrypt = real


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """`../shared` next to the repository; tests that need it skip with a reason where it is absent."""
    if not (SHARED_DIR / "traces").is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DIR} (traces, videos, reference results)")
    return SHARED_DIR


@pytest.fixture
def ladder() -> Ladder:
    """Pensieve's six-rung ladder, 4 s segments."""
    return Ladder(bitrates_bps=(300_000, 750_000, 1_200_000, 1_850_000, 2_850_000, 4_300_000), segment_duration_s=4.0)


@pytest.fixture
def constant_trace() -> Trace:
    return synthetic.constant(3e6, duration_s=100.0)


@pytest.fixture
def step_trace() -> Trace:
    return synthetic.step([4e6, 1e6, 8e6], step_s=10.0)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# -- one short demo title, packaged once clear and once encrypted (server and player tests) --

TEST_LADDER = "216p:300k,360p:700k,540p:1400k"
TEST_CLIP = DemoClipConfig(duration_s=10.0, width=960, height=540, frame_rate=24)
CLEAR_TITLE = "clip"
ENCRYPTED_TITLE = "clipenc"


@dataclass(frozen=True)
class PackagedTitles:
    clip: DemoClipConfig
    ladder: tuple[Rung, ...]
    source: Path  # the demo clip as an MP4 file: packaging goes through the file input path
    content_root: Path  # holds the two titles below
    clear: PackageResult
    encrypted: PackageResult

    @property
    def frame_count(self) -> int:
        return self.clip.frame_count

    @property
    def gop_frames(self) -> int:
        return 4 * self.clip.frame_rate  # default 4 s segments


@pytest.fixture(scope="session")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> PackagedTitles:
    base = tmp_path_factory.mktemp("packaged")
    source = write_demo_source(base / "clip.mp4", TEST_CLIP)
    content = base / "content"
    # veryfast keeps the suite quick; rate control and GOP handling are the same as the default.
    config = PackageConfig(ladder=parse_ladder(TEST_LADDER), preset="veryfast")
    clear = package(source, content / CLEAR_TITLE, config)
    encrypted = package(
        source,
        content / ENCRYPTED_TITLE,
        PackageConfig(ladder=config.ladder, preset="veryfast", encrypt=True),
        title=ENCRYPTED_TITLE,
    )
    return PackagedTitles(
        clip=TEST_CLIP, ladder=config.ladder or (), source=source, content_root=content, clear=clear,
        encrypted=encrypted,
    )


@pytest.fixture
def restored_registry() -> Iterator[None]:
    """Algorithms a test registers (plugins, entry points) are gone after it: later tests that walk
    every registered algorithm see the built-ins only."""
    import sys

    from abr import registry

    saved = dict(registry._REGISTRY)
    modules = set(sys.modules)
    try:
        yield
    finally:
        registry._REGISTRY.clear()
        registry._REGISTRY.update(saved)
        for name in set(sys.modules) - modules:
            if name.startswith("abrkit_plugin_") or name.startswith("ep_plugin"):
                del sys.modules[name]
