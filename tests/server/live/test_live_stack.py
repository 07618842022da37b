"""The live channel in the whole stack: the playback API steers to it, an edge serves its dynamic
MPD with the edge's own UTCTiming URL, and FFmpeg (a player that is not ours) reads the live MPD
through the edge and fetches its segments. `abrkit serve --live` refuses a title that cannot loop."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import aiohttp
import pytest

from server.config import RateLimitPolicy, StackConfig, save_stack_config
from server.formats.dash import MPD_NS
from server.stack import start_stack
from tests.conftest import CLEAR_TITLE, ENCRYPTED_TITLE
from tests.server.conftest import write_users
from tests.server.stackkit import login


@pytest.fixture
def live_config(tmp_path: Path, packaged) -> StackConfig:  # type: ignore[no-untyped-def]
    config = StackConfig(config_path=tmp_path / "state" / "stack.json", content_root=packaged.content_root, port=0,
                         heartbeat_s=0.2, access_log=False, shutdown_timeout_s=2.0, edges=1,
                         rate_limit=RateLimitPolicy(rate_per_s=100, burst=100), live_title=CLEAR_TITLE,
                         low_latency=True)
    save_stack_config(config)
    write_users(config.config_path, {"alice": ("live", CLEAR_TITLE), "bob": (ENCRYPTED_TITLE,)})
    return config


async def test_playback_steers_to_the_live_channel_and_the_edge_serves_it(live_config: StackConfig) -> None:
    async with start_stack(live_config) as stack, aiohttp.ClientSession() as session:
        assert stack.config.live_start_s is not None  # fixed once for every service
        headers = await login(session, stack.gateway_url)
        async with session.post(f"{stack.gateway_url}/playback/live", headers=headers) as resp:
            assert resp.status == 200
            play = await resp.json()
        assert play["live"] is True and play["hls_urls"][0].endswith("/live/master.m3u8")
        async with session.get(play["manifest_urls"][0]) as resp:
            assert resp.status == 200
            root = ET.fromstring(await resp.read())
        assert root.get("type") == "dynamic"
        timing = root.find(f"{{{MPD_NS}}}UTCTiming")
        assert timing is not None and timing.get("value") == stack.edge_urls[0] + "/time"
        bob = await login(session, stack.gateway_url, "bob")
        async with session.post(f"{stack.gateway_url}/playback/live", headers=bob) as resp:
            assert resp.status == 403  # entitlement by the channel's name
        async with session.post(f"{stack.gateway_url}/playback/{CLEAR_TITLE}", headers=headers) as resp:
            assert resp.status == 200 and "live" not in await resp.json()  # the source stays on demand


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg (Debian package; .ci/run installs it)")
async def test_ffmpeg_reads_the_live_mpd_through_the_edge(live_config: StackConfig, tmp_path: Path) -> None:
    # Started 30 s ago: a full time-shift window of segments for FFmpeg to join at once.
    config = dataclasses.replace(live_config, low_latency=False, live_start_s=float(int(time.time()) - 30))
    async with start_stack(config) as stack, aiohttp.ClientSession() as session:
        headers = await login(session, stack.gateway_url)
        async with session.post(f"{stack.gateway_url}/playback/live", headers=headers) as resp:
            play = await resp.json()
        out = tmp_path / "live.mp4"
        # FFmpeg's DASH demuxer: dynamic MPD, $Number$ from the wall clock, segments from the edge.
        command = ["ffmpeg", "-v", "error", "-y", "-i", play["manifest_urls"][0], "-map", "0:v:0", "-t", "3",
                   "-c", "copy", str(out)]
        proc = await _run(command)
        assert proc.returncode == 0, proc.stderr[-2000:]
        probe = subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-select_streams", "v:0", "-show_entries",
                                "stream=nb_read_packets", "-of", "csv=p=0", str(out)], capture_output=True, text=True)
        assert int(probe.stdout.strip()) >= 24  # at least a second of the channel's video


async def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    import asyncio
    proc = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=90)
    return subprocess.CompletedProcess(command, proc.returncode or 0, stdout.decode(), stderr.decode())


def test_abrkit_serve_live_refuses_a_title_it_cannot_find(tmp_path: Path, packaged) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.run([sys.executable, "-m", "player.cli", "serve", "--content", str(packaged.content_root),
                           "--config", str(tmp_path / "stack.json"), "--port", "0", "--live-title", "nosuch"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "nosuch" in proc.stderr and "not packaged" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "player.cli", "serve", "--content", str(packaged.content_root),
                           "--config", str(tmp_path / "stack.json"), "--port", "0", "--live"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--live needs --live-title" in proc.stderr


def test_abrkit_serve_and_origin_refuse_a_bad_channel_speed(tmp_path: Path, packaged) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.run([sys.executable, "-m", "player.cli", "serve", "--content", str(packaged.content_root),
                           "--config", str(tmp_path / "stack.json"), "--port", "0", "--live-title", CLEAR_TITLE,
                           "--speed", "0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "live_speed must be in [0.01, 1000]" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "player.cli", "origin", "--content", str(packaged.content_root),
                           "--speed", "10"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--speed runs a live channel's clock" in proc.stderr


def test_serve_speed_flag_sets_the_stacks_channel_clock(tmp_path: Path, packaged) -> None:  # type: ignore[no-untyped-def]
    from server.commands.serve import _live_overrides
    from server.stack import live_config

    args = type("Args", (), {"live": True, "live_title": CLEAR_TITLE, "low_latency": False, "live_channel": None,
                             "chunk_s": None, "speed": 10.0})()
    base = StackConfig(config_path=tmp_path / "s.json", content_root=packaged.content_root)
    config = dataclasses.replace(base, **{k: v for k, v in _live_overrides(args, base, False).items() if v is not None},
                                 live_start_s=1000.0)
    channel = live_config(config)
    assert channel is not None and channel.speed == 10.0 and channel.clock_origin_s == 1000.0
