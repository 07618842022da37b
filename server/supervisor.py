"""One supervisor for service processes: the stack's services (`abrkit serve --processes`) and an
edge's workers (`abrkit edge --workers N`). It starts them, watches them and stops them.

A child that dies unasked (a crash, the OOM killer, `kill -9`) is started again after a backoff that
grows to a bound, with one log line naming it, how it ended and the restart. A child stopped or
killed on purpose (`stop`, `kill`: shutdown, chaos faults) stays down until `start`. The children's
side is `until_stopped`: run until SIGTERM, or until the supervisor is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.context import SpawnContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("abrkit.supervisor")

READY_LINE = "ready"  # the first stdout line of a child started by `subprocess_launcher`
START_TIMEOUT_S = 60.0


@dataclass(frozen=True, kw_only=True, slots=True)
class RestartPolicy:
    """Delays between restarts of a child that keeps dying: `first_delay_s`, then times `factor`,
    at most `max_delay_s`; a child that stayed up `stable_after_s` starts from `first_delay_s` again."""

    first_delay_s: float = 0.1
    factor: float = 2.0
    max_delay_s: float = 5.0
    stable_after_s: float = 10.0

    def __post_init__(self) -> None:
        if not 0 <= self.first_delay_s <= self.max_delay_s:
            raise ValueError(f"need 0 <= first_delay_s <= max_delay_s, got {self.first_delay_s}, {self.max_delay_s}")
        if self.factor < 1:
            raise ValueError(f"factor must be >= 1, got {self.factor}")
        if self.stable_after_s < 0:
            raise ValueError(f"stable_after_s must be >= 0, got {self.stable_after_s}")

    def next_delay_s(self, delay_s: float) -> float:
        return min(self.max_delay_s, delay_s * self.factor)


class Child(Protocol):
    """A started child process, ready to serve."""

    @property
    def pid(self) -> int: ...

    @property
    def ready_message(self) -> str:
        """What it said when it was ready (e.g. `ready edge http://127.0.0.1:8201`)."""
        ...

    async def wait(self) -> int:
        """Its exit status once it has ended: the exit code, or -N if signal N ended it."""
        ...

    def send_signal(self, signum: int) -> None: ...


Launch = Callable[[], Awaitable[Child]]  # starts one child; returns once it is ready, raises if it never is


def describe_exit(status: int) -> str:
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"was killed by {name}"
    return f"exited with code {status}"


@dataclass(kw_only=True)
class _Entry:
    name: str
    launch: Launch
    child: Child | None = None
    up: bool = False  # wanted up: watched and restarted
    restarts: int = 0
    watcher: asyncio.Task[None] | None = None
    started_at_s: float = field(default_factory=time.monotonic)


class Supervisor:
    """Children by name, each started by its `Launch`; one asyncio task watches each running one."""

    def __init__(self, *, policy: RestartPolicy = RestartPolicy(), stop_timeout_s: float = 15.0) -> None:
        self.policy = policy
        self.stop_timeout_s = stop_timeout_s
        self._entries: dict[str, _Entry] = {}

    def add(self, name: str, launch: Launch) -> None:
        if name in self._entries:
            raise ValueError(f"{name!r} is supervised already")
        self._entries[name] = _Entry(name=name, launch=launch)

    @property
    def names(self) -> list[str]:
        return list(self._entries)

    def pid(self, name: str) -> int | None:
        child = self._entries[name].child
        return child.pid if child is not None else None

    def alive(self, name: str) -> bool:
        entry = self._entries[name]
        return entry.up and entry.child is not None

    def ready_message(self, name: str) -> str | None:
        child = self._entries[name].child
        return child.ready_message if child is not None else None

    def restarts(self, name: str) -> int:
        """How many times `name` was started again after dying unasked."""
        return self._entries[name].restarts

    async def start(self, name: str) -> None:
        """Start `name` (no-op if it is up) and keep it up; raises if its first start fails."""
        entry = self._entries[name]
        if entry.up:
            return
        entry.child = await entry.launch()
        entry.started_at_s = time.monotonic()
        entry.up = True
        entry.watcher = asyncio.get_running_loop().create_task(self._watch(entry), name=f"supervise-{name}")

    async def stop(self, name: str) -> None:
        """SIGTERM, then SIGKILL after `stop_timeout_s`; it stays down until `start`."""
        entry = await self._hold_down(name)
        if entry.child is not None:
            await _terminate(entry.name, entry.child, self.stop_timeout_s)
            entry.child = None

    async def kill(self, name: str) -> None:
        """SIGKILL at once; it stays down until `start`."""
        entry = await self._hold_down(name)
        if entry.child is not None:
            with contextlib.suppress(ProcessLookupError):
                entry.child.send_signal(signal.SIGKILL)
            await entry.child.wait()
            entry.child = None

    async def close(self) -> None:
        """Stop every child, the last added first."""
        for name in reversed(self._entries):
            await self.stop(name)

    async def _hold_down(self, name: str) -> _Entry:
        entry = self._entries[name]
        entry.up = False
        watcher, entry.watcher = entry.watcher, None
        if watcher is not None:
            watcher.cancel()  # a launch in progress kills its child (see the launchers)
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        return entry

    async def _watch(self, entry: _Entry) -> None:
        delay_s = self.policy.first_delay_s
        while True:
            assert entry.child is not None
            status = await entry.child.wait()
            if time.monotonic() - entry.started_at_s >= self.policy.stable_after_s:
                delay_s = self.policy.first_delay_s
            entry.restarts += 1
            log.error("service %s (pid %d) %s; restarting it in %.3g s (restart %d)", entry.name,
                      entry.child.pid, describe_exit(status), delay_s, entry.restarts)
            entry.child = None
            while entry.child is None:
                await asyncio.sleep(delay_s)
                delay_s = self.policy.next_delay_s(delay_s)
                try:
                    entry.child = await entry.launch()
                except Exception as exc:  # e.g. its port taken meanwhile: say so, try again later
                    log.error("service %s did not restart (%s); trying again in %.3g s", entry.name, exc, delay_s,
                              exc_info=not isinstance(exc, (OSError, RuntimeError)))
            entry.started_at_s = time.monotonic()
            log.warning("service %s restarted (pid %d)", entry.name, entry.child.pid)


async def start_together(starts: Sequence[Awaitable[None]]) -> None:
    """Run `starts` (e.g. `Supervisor.start` calls) at once; if one fails, cancel the others (a
    launch cancelled midway kills its child) and raise the first error. Whatever did start stays up
    for the caller to stop."""
    tasks = [asyncio.ensure_future(start) for start in starts]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _terminate(name: str, child: Child, timeout_s: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        child.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(child.wait(), timeout=timeout_s)
    except TimeoutError:
        log.warning("service %s ignored SIGTERM for %.3g s; killing it", name, timeout_s)
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGKILL)
        await child.wait()


# --- launchers -------------------------------------------------------------------------------------

class _Subprocess:
    """A child from `asyncio.create_subprocess_exec`; its stdout is drained so it never blocks on it."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self.ready_message = ""
        self.drain: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self._process.pid

    async def wait(self) -> int:
        return await self._process.wait()

    def send_signal(self, signum: int) -> None:
        if self._process.returncode is None:
            self._process.send_signal(signum)


def subprocess_launcher(name: str, argv: Sequence[str], *, listen: Callable[[], socket.socket],
                        log_path: Path | None = None, stdin_data: bytes | None = None,
                        start_timeout_s: float = START_TIMEOUT_S) -> Launch:
    """Start `argv --fd N` with the socket `listen()` gives (bound and listening) as fd N: ready when
    its first stdout line starts with `ready`. Its stderr is appended to `log_path` (None: inherited);
    its stdin reads `stdin_data` (e.g. its secrets) then EOF (None: /dev/null). Our copy of the socket
    is closed once the child holds it, so a dead child refuses connections."""

    async def launch() -> Child:
        sock = listen()
        try:
            fd = sock.fileno()
            with contextlib.ExitStack() as files:
                stderr = files.enter_context(log_path.open("ab")) if log_path is not None else None
                process = await asyncio.create_subprocess_exec(
                    *argv, "--fd", str(fd), pass_fds=(fd,),
                    stdin=asyncio.subprocess.DEVNULL if stdin_data is None else asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE, stderr=stderr, start_new_session=True)
        finally:
            sock.close()
        child = _Subprocess(process)
        assert process.stdout is not None
        try:
            if stdin_data is not None:
                assert process.stdin is not None
                process.stdin.write(stdin_data)
                with contextlib.suppress(ConnectionError):  # it died at once: said below
                    await process.stdin.drain()
                process.stdin.close()
            try:
                line = await asyncio.wait_for(process.stdout.readline(), timeout=start_timeout_s)
            except TimeoutError:
                line = b""
            child.ready_message = line.decode(errors="replace").strip()
            if not child.ready_message.startswith(READY_LINE):
                raise RuntimeError(f"service {name} did not start (exit code {process.returncode}); "
                                   f"see {log_path or 'its log above'}")
        except BaseException:  # cancelled too: never leave a half-started child behind
            await _kill_now(child)
            raise
        child.drain = asyncio.get_running_loop().create_task(_drain(process.stdout))
        return child

    return launch


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass


class _Spawned:
    """A child from `multiprocessing` (spawn); its sentinel says when it ended."""

    def __init__(self, process: BaseProcess) -> None:
        self._process = process
        self.ready_message = ""
        self._ended: asyncio.Future[None] | None = None

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    async def wait(self) -> int:
        if self._ended is None:  # one reader of the sentinel however many wait
            self._ended = asyncio.ensure_future(_readable(self._process.sentinel))
        await asyncio.shield(self._ended)
        self._process.join()
        assert self._process.exitcode is not None
        return self._process.exitcode

    def send_signal(self, signum: int) -> None:
        if self._process.exitcode is None:
            os.kill(self.pid, signum)


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(fd)


def spawn_launcher(ctx: SpawnContext, name: str, target: Callable[..., None], args: tuple[Any, ...], *,
                   before: Callable[[], None] | None = None, start_timeout_s: float = START_TIMEOUT_S) -> Launch:
    """Start `target(*args, ready)` in a spawned process; it is ready once it calls
    `ready.send(message)` (a str: its `ready_message`). `before()` runs before every start (e.g. to clear what a
    dead predecessor left in shared memory)."""

    async def launch() -> Child:
        if before is not None:
            before()
        reader, writer = ctx.Pipe(duplex=False)
        process = ctx.Process(target=target, args=(*args, writer), name=name)
        child = _Spawned(process)
        try:
            process.start()
            writer.close()  # the child holds the only writer: its death reads as EOF
            await asyncio.wait_for(_readable(reader.fileno()), timeout=start_timeout_s)
            try:
                child.ready_message = str(reader.recv())
            except EOFError:
                raise RuntimeError(f"{name} exited before it was ready") from None
        except TimeoutError:
            await _kill_now(child)
            raise RuntimeError(f"{name} was not ready within {start_timeout_s:.3g} s") from None
        except BaseException:
            if process.pid is not None:
                await _kill_now(child)
            raise
        finally:
            writer.close()
            reader.close()
        return child

    return launch


async def _kill_now(child: Child) -> None:
    with contextlib.suppress(ProcessLookupError):
        child.send_signal(signal.SIGKILL)
    await child.wait()


# --- the children's side ---------------------------------------------------------------------------

async def until_stopped(*, parent_pid: int | None = None, ignore_sigint: bool = False) -> None:
    """Return on SIGTERM (and SIGINT unless `ignore_sigint`: a supervisor that shares the terminal
    gets Ctrl-C too and decides), or once this process is orphaned: `parent_pid` is no longer its
    parent (the supervisor was killed)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, (lambda: None) if ignore_sigint else stop.set)
    while not stop.is_set():
        if parent_pid is not None and os.getppid() != parent_pid:
            log.warning("the supervisor (pid %d) is gone; stopping", parent_pid)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.5)


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound (not listening) to host:port with SO_REUSEPORT: the port stays ours, and
    workers binding it with SO_REUSEPORT too share it. Close it once they listen."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock
