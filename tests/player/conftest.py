"""Helpers shared by the player tests: content and an ABR that answer exactly what a test scripts, a
longer packaged title, and our servers on free ports (a whole stack, or the origin alone)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web

from abr.types import Decision, Ladder, Observation
from server.config import StackConfig
from server.origin import OriginConfig
from server.origin import create_app as origin_app
from server.packager import PackageConfig, package_source, parse_ladder
from server.packaging.demo import DemoClipConfig
from server.packaging.source import DemoSource
from server.stack import RunningStack, start_stack_with_demo_user
from tests.conftest import built_once_per_run

LONG_TITLE = "long"


class FixedContent:
    def __init__(self, ladder: Ladder, count: int) -> None:
        self.ladder = ladder
        self.segment_count = count

    def upcoming(self, segment_index: int, count: int) -> tuple[tuple[int, ...], ...]:
        rows = range(segment_index, min(segment_index + count, self.segment_count))
        return tuple(tuple(int(b * self.ladder.segment_duration_s / 8) for b in self.ladder.bitrates_bps) for _ in rows)


class Scripted:
    """Returns the scripted decisions in order and remembers what it saw."""

    name = "scripted"

    def __init__(self, *decisions: Decision) -> None:
        self.decisions = list(decisions)
        self.seen: list[Observation] = []

    def decide(self, obs: Observation) -> Decision:
        self.seen.append(obs)
        return self.decisions.pop(0) if self.decisions else Decision(quality=0, reason="default")


@pytest.fixture(scope="session")
def long_content(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 40 s, 10-segment clear title (`LONG_TITLE`) at low resolution: long enough for ABR behaviour to show.
    Packaged straight from the demo clip: no MP4 in between (the file input path is tested with `packaged`), at
    12 frames/s since no test decodes it (segment sizes follow the ladder's bitrates; half the frames halve the
    encode, the fixture's cost)."""
    return built_once_per_run(tmp_path_factory, "long", _package_long)


def _package_long(base: Path) -> Path:
    content = base / "content"
    clip = DemoClipConfig(duration_s=40.0, width=640, height=360, frame_rate=12)
    package_source(DemoSource(clip), content / LONG_TITLE,
                   PackageConfig(ladder=parse_ladder("144p:200k,216p:450k,288p:800k,360p:1400k"), preset="veryfast"),
                   title=LONG_TITLE)
    return content


@contextlib.asynccontextmanager
async def running_stack(tmp_path: Path, content_root: Path, **overrides: object) -> AsyncIterator[tuple[RunningStack, str]]:
    """An embedded stack serving `content_root` on free ports: (the stack, the demo user's password)."""
    config = StackConfig(config_path=tmp_path / "stack" / "stack.json", content_root=content_root, port=0,
                         access_log=False, heartbeat_s=0.25)
    config = replace(config, **overrides)  # type: ignore[arg-type]
    async with start_stack_with_demo_user(config) as (stack, credentials):
        yield stack, credentials.password


@contextlib.asynccontextmanager
async def serving_app(app: web.Application) -> AsyncIterator[str]:
    """`app` on a free port of 127.0.0.1 for the duration; yields its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def serving_origin(content: Path) -> contextlib.AbstractAsyncContextManager[str]:
    """Our origin serving `content` (no stack in front)."""
    return serving_app(origin_app(OriginConfig(content_root=content, port=0)))
