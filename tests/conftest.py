"""Shared fixtures: the read-only data folder `../shared`, small traces and ladders, and one short
packaged demo title (clear and encrypted) used by the server and player tests."""

from __future__ import annotations

import fcntl
import hashlib
import os
import pickle
import shutil
import tempfile
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from abr.types import Ladder
from netsim import synthetic
from netsim.trace import Trace
from server.packager import PackageConfig, PackageResult, Rung, package, parse_ladder
from server.packaging.demo import DemoClipConfig, write_demo_source

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"


# -- parallel runs (pytest-xdist; `make test` runs two workers): wall-clock tests run alone --

_LOCK_DIR_ENV = "ABRKIT_TEST_LOCK_DIR"


def pytest_configure(config: pytest.Config) -> None:
    """The xdist controller makes the folder of the workers' run lock (they inherit the variable)."""
    if not hasattr(config, "workerinput") and config.getoption("dist", "no") != "no":
        os.environ[_LOCK_DIR_ENV] = tempfile.mkdtemp(prefix="abrkit-test-lock-")


def pytest_unconfigure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput") and _LOCK_DIR_ENV in os.environ:
        shutil.rmtree(os.environ.pop(_LOCK_DIR_ENV), ignore_errors=True)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    """Under pytest-xdist, a test marked `wallclock` (it compares timing against the wall clock: the shaper's
    fidelity, emulation against simulation, time warp) runs while no other worker runs a test: it waits for
    the test in progress elsewhere to end, and the other workers wait for it, so it sees the machine as a
    one-process run would. Every other test holds the run's lock shared; a turnstile in front of it gives a
    waiting wall-clock test precedence over the other workers' next tests. Setup and teardown are inside the
    lock (stacks start and stop there). Outside xdist this does nothing."""
    lock_dir = os.environ.get(_LOCK_DIR_ENV) if hasattr(item.config, "workerinput") else None
    if lock_dir is None:
        yield
        return
    alone = item.get_closest_marker("wallclock") is not None
    with open(Path(lock_dir) / "turnstile", "a+b") as turnstile, open(Path(lock_dir) / "run", "a+b") as lock:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            if not alone:
                fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            if alone:
                fcntl.flock(turnstile, fcntl.LOCK_UN)


T = TypeVar("T")


def built_once_per_run(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], T]) -> T:
    """`build(folder)` for a session fixture whose content every process of the run may share (it is only
    read). In one process: built into a fresh temporary folder. Under pytest-xdist: the first worker to ask
    builds it into the run's common temporary folder while holding a lock, and the others, once it is done,
    load the same result (pickled beside it) instead of building it again."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return build(tmp_path_factory.mktemp(name))
    folder = tmp_path_factory.getbasetemp().parent / f"shared-{name}"
    with open(f"{folder}.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = Path(f"{folder}.pickle")
        if done.exists():
            return pickle.loads(done.read_bytes())  # written by this run's own worker
        shutil.rmtree(folder, ignore_errors=True)  # a worker that failed while building left it half made
        folder.mkdir()
        value = build(folder)
        done.write_bytes(pickle.dumps(value))
        return value


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
    return built_once_per_run(tmp_path_factory, "packaged", _package_titles)


def _package_titles(base: Path) -> PackagedTitles:
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
