"""The process supervisor (server/supervisor.py) with real child processes."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from server.supervisor import (
    RestartPolicy,
    Supervisor,
    describe_exit,
    spawn_launcher,
    start_together,
    subprocess_launcher,
    until_stopped,
)

FAST = RestartPolicy(first_delay_s=0.01, factor=2.0, max_delay_s=0.04, stable_after_s=60.0)
# A service in miniature: says it is ready, then runs until SIGTERM (or exits with its first argument).
CHILD = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("ready child", flush=True)
if sys.argv[1] != "serve":
    sys.exit(int(sys.argv[1]))
while True:
    time.sleep(1)
"""


def listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def child(argument: str = "serve") -> list[str]:
    return [sys.executable, "-c", CHILD, argument]


async def eventually(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_child_killed_unasked_is_started_again_and_the_log_says_so(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="abrkit.supervisor")
    supervisor = Supervisor(policy=FAST)
    supervisor.add("svc", subprocess_launcher("svc", child(), listen=listener))
    await supervisor.start("svc")
    try:
        first = supervisor.pid("svc")
        assert first is not None and supervisor.ready_message("svc") == "ready child"
        os.kill(first, signal.SIGKILL)
        await eventually(lambda: supervisor.pid("svc") not in (None, first))
        assert supervisor.alive("svc") and supervisor.restarts("svc") == 1
        messages = [r.getMessage() for r in caplog.records if r.name == "abrkit.supervisor"]
        assert any(f"service svc (pid {first}) was killed by SIGKILL; restarting it" in m for m in messages)
        assert any(f"service svc restarted (pid {supervisor.pid('svc')})" in m for m in messages)
    finally:
        await supervisor.close()
    assert not supervisor.alive("svc")


@pytest.mark.parametrize("how", ["kill", "stop"])
async def test_a_child_taken_down_on_purpose_stays_down_until_started(how: str) -> None:
    supervisor = Supervisor(policy=FAST)
    supervisor.add("svc", subprocess_launcher("svc", child(), listen=listener))
    await supervisor.start("svc")
    try:
        pid = supervisor.pid("svc")
        assert pid is not None
        await getattr(supervisor, how)("svc")
        assert not alive(pid) and not supervisor.alive("svc") and supervisor.pid("svc") is None
        await asyncio.sleep(5 * FAST.max_delay_s)
        assert supervisor.pid("svc") is None and supervisor.restarts("svc") == 0
        await supervisor.start("svc")
        assert supervisor.alive("svc") and supervisor.pid("svc") != pid
    finally:
        await supervisor.close()


async def test_restarts_back_off_up_to_the_bound(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="abrkit.supervisor")
    supervisor = Supervisor(policy=FAST)
    supervisor.add("crashy", subprocess_launcher("crashy", child("3"), listen=listener))
    await supervisor.start("crashy")
    try:
        await eventually(lambda: supervisor.restarts("crashy") >= 5)
    finally:
        await supervisor.close()
    died = [r.getMessage() for r in caplog.records if "exited with code 3" in r.getMessage()]
    delays = [float(re.search(r"restarting it in (\S+) s", m).group(1)) for m in died]  # type: ignore[union-attr]
    assert delays[:5] == [0.01, 0.02, 0.04, 0.04, 0.04]


async def test_a_child_that_never_says_ready_fails_its_first_start() -> None:
    supervisor = Supervisor(policy=FAST)
    supervisor.add("mute", subprocess_launcher("mute", [sys.executable, "-c", "import sys; sys.exit(4)"],
                                               listen=listener))
    with pytest.raises(RuntimeError, match="mute did not start"):
        await supervisor.start("mute")
    assert not supervisor.alive("mute")


async def test_when_one_of_several_fails_to_start_the_others_are_not_left_behind(tmp_path: Path) -> None:
    pid_file = tmp_path / "slow.pid"
    slow = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(30); print('ready')"
    supervisor = Supervisor(policy=FAST)
    supervisor.add("slow", subprocess_launcher("slow", [sys.executable, "-c", slow], listen=listener))
    supervisor.add("mute", subprocess_launcher("mute", [sys.executable, "-c", "import time; time.sleep(0.5)"],
                                               listen=listener))
    with pytest.raises(RuntimeError, match="mute did not start"):
        await start_together([supervisor.start("slow"), supervisor.start("mute")])
    pid = int(pid_file.read_text())
    await eventually(lambda: not alive(pid))  # killed, and reaped: no process is left running
    assert not supervisor.alive("slow") and not supervisor.alive("mute")


def _spawned(ready: Connection) -> None:
    ready.send("ready spawned")
    ready.close()

    async def main() -> None:
        await until_stopped(parent_pid=os.getppid())

    asyncio.run(main())


async def test_spawned_children_are_supervised_the_same_way(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="abrkit.supervisor")
    ctx = multiprocessing.get_context("spawn")
    starts: list[int] = []
    supervisor = Supervisor(policy=FAST)
    supervisor.add("worker", spawn_launcher(ctx, "worker", _spawned, (), before=lambda: starts.append(1)))
    await supervisor.start("worker")
    try:
        first = supervisor.pid("worker")
        assert first is not None and supervisor.ready_message("worker") == "ready spawned"
        os.kill(first, signal.SIGKILL)
        await eventually(lambda: supervisor.pid("worker") not in (None, first))
        assert len(starts) == 2
        assert any("service worker" in r.getMessage() and "killed by SIGKILL" in r.getMessage()
                   for r in caplog.records)
        second = supervisor.pid("worker")
        assert second is not None
    finally:
        await supervisor.close()
    assert not alive(second)  # SIGTERM reached until_stopped: a clean exit


@pytest.mark.parametrize(("status", "text"), [(0, "exited with code 0"), (2, "exited with code 2"),
                                              (-9, "was killed by SIGKILL"), (-15, "was killed by SIGTERM")])
def test_describe_exit_names_the_code_or_the_signal(status: int, text: str) -> None:
    assert describe_exit(status) == text


@pytest.mark.parametrize("settings", [{"first_delay_s": -1}, {"first_delay_s": 9, "max_delay_s": 1},
                                      {"factor": 0.5}, {"stable_after_s": -1}])
def test_restart_policy_rejects_bad_values(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RestartPolicy(**settings)
