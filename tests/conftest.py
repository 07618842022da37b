"""Shared fixtures: the read-only data folder `../shared` (traces, videos, reference results)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from abr.types import Ladder
from netsim import synthetic
from netsim.trace import Trace

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"


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
