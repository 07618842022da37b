"""`abrkit shape` as a user runs it: a shaped relay in a subprocess, one error line for bad input."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.conftest import REPO_ROOT
from tests.player.conftest import serving_app


async def _shape_command(trace: Path, upstream_port: int) -> asyncio.subprocess.Process:
    """`abrkit shape` in a subprocess, listening on any free port."""
    return await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "player", "shape", "--trace", str(trace), "--listen", "127.0.0.1:0"],
        *["--upstream", f"127.0.0.1:{upstream_port}"],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def test_cli_bad_trace_is_one_error_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad_trace"
    bad.write_text("0 1.0\n1 fast\n")
    proc = await _shape_command(bad, 9)
    _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 2
    assert len(lines) == 1 and f"{bad}:2" in lines[0], lines


async def test_cli_relays_shaped_traffic_and_stops_on_sigint(tmp_path: Path) -> None:
    async def small(request: web.Request) -> web.Response:
        return web.Response(body=b"ok")

    app = web.Application()
    app.router.add_get("/small", small)
    trace = tmp_path / "flat.json"
    trace.write_text('[{"duration_ms": 1000, "bandwidth_kbps": 20000, "latency_ms": 50}]')
    async with serving_app(app) as upstream:
        proc = await _shape_command(trace, int(upstream.rsplit(":", 1)[1]))
        try:
            assert proc.stdout is not None
            ready = (await asyncio.wait_for(proc.stdout.readline(), timeout=30)).decode()
            assert "listening on 127.0.0.1:" in ready
            port = int(ready.split("listening on 127.0.0.1:")[1].split()[0])
            async with aiohttp.ClientSession() as http:
                started = time.monotonic()
                async with http.get(f"http://127.0.0.1:{port}/small") as response:
                    first_byte_s = time.monotonic() - started
                    assert await response.read() == b"ok"
            assert first_byte_s >= 0.050  # the trace's latency, not the loopback's
            proc.send_signal(signal.SIGINT)
            _, err = await asyncio.wait_for(proc.communicate(), timeout=10)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 0
    assert "Traceback" not in err.decode()
    assert "stopped after 1 connections" in err.decode()
