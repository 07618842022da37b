"""A live channel over the session's packaged test clip (10 s, 4 s segments: a loop of two)."""

from __future__ import annotations

import time

import pytest

from server.live.channel import LiveChannel, LiveConfig
from tests.conftest import CLEAR_TITLE, ENCRYPTED_TITLE, PackagedTitles


def make_channel(packaged: PackagedTitles, *, start_s: float | None = None, encrypted: bool = False,
                 **changes: object) -> LiveChannel:
    config = LiveConfig(source_title=ENCRYPTED_TITLE if encrypted else CLEAR_TITLE,
                        availability_start_s=time.time() if start_s is None else start_s, **changes)  # type: ignore[arg-type]
    return LiveChannel(config, packaged.content_root)


@pytest.fixture
def channel(packaged: PackagedTitles) -> LiveChannel:
    return make_channel(packaged, start_s=1_000_000.0, low_latency=True)
