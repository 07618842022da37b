"""Fixtures shared by the research tests: Pensieve's envivio video from the shared data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from player.video import Video, load_video


@pytest.fixture(scope="session")
def envivio(shared_dir: Path) -> Video:
    """Pensieve's 48-segment envivio video (4 s segments, six rungs)."""
    return load_video(shared_dir / "video/pensieve-envivio")
