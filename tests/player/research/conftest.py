"""Fixtures shared by the research tests: Pensieve's envivio video from the shared data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from netsim.trace import Trace
from player.video import Video, load_video


@pytest.fixture(scope="session")
def envivio(shared_dir: Path) -> Video:
    """Pensieve's 48-segment envivio video (4 s segments, six rungs)."""
    return load_video(shared_dir / "video/pensieve-envivio")


@pytest.fixture(scope="module")
def video_10() -> Video:
    """The bundled Envivio video cut to 10 segments (short training and rollout tests)."""
    from player.bundled import ENVIVIO_DIR

    return load_video(ENVIVIO_DIR).truncated(10)


@pytest.fixture(scope="module")
def traces_4() -> list[Trace]:
    """The first four bundled Norway traces."""
    from netsim.formats import load_traces
    from player.bundled import TRACES_DIR

    return load_traces([TRACES_DIR])[:4]
