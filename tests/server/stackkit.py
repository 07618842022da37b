"""Helpers the stack's tests share (tests/server/test_stack.py, test_serve.py, live/test_live_stack.py):
a login through the gateway, and `abrkit serve` run as a process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from tests.server.conftest import PASSWORD


async def login(session: aiohttp.ClientSession, gateway_url: str, username: str = "alice") -> dict[str, str]:
    async with session.post(f"{gateway_url}/auth/token", json={"username": username, "password": PASSWORD}) as resp:
        assert resp.status == 200
        return {"Authorization": f"Bearer {(await resp.json())['access_token']}"}


@contextmanager
def abrkit_serve(*args: str, stderr: int = subprocess.PIPE) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """`abrkit serve ARGS` as a child process, and its console (stdout) lines up to the ready line;
    killed at the end if still running."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-m", "player.cli", "serve", *args], stdout=subprocess.PIPE,
                            stderr=stderr, text=True, env=env)
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("ready"):
                break
        yield proc, lines
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
