"""The demo stack in a process of its own, for the window's cold start.

`abrkit play` with no argument plays the demo title from a local stack. Started inside the player,
the stack's imports (the services, the packager's demo check) and its work (scrypt for the demo
user, serving the first requests) share one interpreter lock with the window and the decoder; in
its own process they run on the other core, in parallel with the window opening. The parent starts
`python -m player.desktop.demostack` first thing (`DemoStackProcess.start`, before importing the
player), and the player thread reads the gateway and the demo credentials from its first stdout
line once it needs them. The child stops when its stdin closes (the parent exited or stopped it).

This module imports only the standard library at the top (the parent pays nothing for it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import IO

from player.errors import CliError

STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True, kw_only=True, slots=True)
class DemoStackAddress:
    """Where the child's stack serves, and the demo user's credentials (generated, kept in the
    stack's 0600 secrets file)."""

    gateway_url: str
    username: str
    password: str = field(repr=False)


class DemoStackProcess:
    """The child process serving the demo stack; `ready()` blocks until it serves (or failed)."""

    def __init__(self, *, protocol: str = "auto") -> None:
        self.protocol = protocol
        self._process: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None
        self._address: DemoStackAddress | None = None

    def start(self) -> DemoStackProcess:
        if self._process is None:
            # stderr to a file, not a pipe: nobody reads it while the stack runs, and a full pipe
            # would block the child; its tail goes into the error if the stack fails.
            self._stderr = tempfile.TemporaryFile("w+", prefix="abrkit-demostack-")
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            self._process = subprocess.Popen(
                [sys.executable, "-m", "player.desktop.demostack"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=self._stderr, text=True, env=env)
        return self

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def ready(self) -> DemoStackAddress:
        """The stack's address once it serves (blocking; call it off the UI thread)."""
        if self._address is not None:
            return self._address
        process = self.start()._process
        assert process is not None and process.stdout is not None
        line = process.stdout.readline()
        try:
            data = json.loads(line) if line else None
            self._address = DemoStackAddress(gateway_url=data["gateway_url"], username=data["username"],
                                             password=data["password"])
        except (ValueError, TypeError, KeyError):
            self.stop()
            raise CliError(f"the local demo stack did not start: {self._stderr_tail() or 'no output'}") from None
        return self._address

    def stop(self) -> None:
        """Close the child's stdin (it shuts its services down) and wait; kill it if it hangs."""
        process = self._process
        if process is None:
            return
        if process.stdin is not None and not process.stdin.closed:
            try:
                process.stdin.close()
            except OSError:
                pass
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        lines = [line.strip() for line in self._stderr.read().splitlines() if line.strip()]
        return lines[-1][-400:] if lines else ""


async def _serve() -> None:
    import asyncio

    from server.config import StackConfig, default_cache_dir
    from server.stack import ensure_demo_title, start_stack_with_demo_user

    root = default_cache_dir()
    content = root / "content"
    # Serially: running the title check and the demo user's scrypt on threads beside the services'
    # start measured no faster on 2 loaded cores (the window's process holds the other one).
    ensure_demo_title(content)
    config = StackConfig(config_path=root / "play-stack" / "stack.json", content_root=content, port=0,
                         access_log=False)
    async with start_stack_with_demo_user(config) as (stack, credentials):
        print(json.dumps({"gateway_url": stack.gateway_url, "username": credentials.username,
                          "password": credentials.password}), flush=True)
        # Serve until the parent closes our stdin (it stopped us, or it exited).
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def main() -> int:
    import asyncio

    try:
        asyncio.run(_serve())
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the boundary: the parent shows this line
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
