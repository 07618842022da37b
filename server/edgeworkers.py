"""Run one edge on its own (`abrkit edge`): in this process, or as N supervised worker processes
sharing one port (SO_REUSEPORT), each with its own cache. See docs/EDGE.md, "Several workers".
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any

from aiohttp import web

from server.config import EdgeConfig
from server.edge import start_edge
from server.edgepeers import WorkerGroup
from server.observability import LogDestination, configure_logging, flush_access_log
from server.supervisor import Supervisor, reserve_port, spawn_launcher, start_together, until_stopped

log = logging.getLogger("abrkit.edge")


def serve(config: EdgeConfig, *, ready: Callable[[str], None] | None = None,
          access_log_path: LogDestination = None) -> int:
    """Run the edge until SIGINT/SIGTERM: one process, or `config.workers` processes on one port.

    With several workers this process only supervises (server/supervisor.py): it reserves the port,
    starts the workers (spawned, each with its own cache and a loopback control port), starts a worker
    that dies again (with a log line saying so), and stops them all at the end. `ready(url)` is called
    once every worker is listening. Every process logs as `configure_logging(access_log_path)` says
    (the JSON access log to that file, "-" for stderr, None for none).
    """
    configure_logging(access_log_path)
    if config.workers == 1:
        return asyncio.run(_run_single(config, ready))
    return asyncio.run(_supervise(config, ready, access_log_path))


async def _run_single(config: EdgeConfig, ready: Callable[[str], None] | None) -> int:
    running = await start_edge(config)
    try:
        if ready is not None:
            ready(running.url)
        await until_stopped()
    finally:
        await running.stop()
        flush_access_log()
    return 0


def _worker_name(config: EdgeConfig, index: int) -> str:
    return f"edge {config.edge_id} worker {index}"


async def _supervise(config: EdgeConfig, ready: Callable[[str], None] | None, access_log_to: LogDestination) -> int:
    # Bound (not listening) with SO_REUSEPORT, so that the port stays ours until the workers bind it too.
    reservation = reserve_port(config.host, config.port)
    config = replace(config, port=reservation.getsockname()[1])
    ctx = multiprocessing.get_context("spawn")
    control_ports = ctx.Array("i", config.workers, lock=False)
    active = ctx.Array("i", config.workers, lock=False)
    supervisor = Supervisor(stop_timeout_s=15.0)
    for index in range(config.workers):
        def forget_predecessor(index: int = index) -> None:
            # A worker killed outright left its control port and load behind: not a sibling any more.
            control_ports[index] = 0
            active[index] = 0

        supervisor.add(_worker_name(config, index), spawn_launcher(
            ctx, _worker_name(config, index), _worker_main,
            (config, index, control_ports, active, os.getpid(), access_log_to), before=forget_predecessor))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        try:
            await start_together([supervisor.start(name) for name in supervisor.names])
        except RuntimeError as exc:
            log.error("edge %s: a worker failed to start: %s", config.edge_id, exc)
            return 1
        finally:
            reservation.close()
        if ready is not None and not stop.is_set():
            ready(supervisor.ready_message(supervisor.names[0]) or "")
        await stop.wait()
        return 0
    finally:
        await supervisor.close()


def _worker_main(config: EdgeConfig, index: int, control_ports: Any, active: Any, parent_pid: int,
                 access_log_to: LogDestination, ready: Connection) -> None:
    configure_logging(access_log_to)
    group = WorkerGroup(index=index, control_ports=control_ports, active_requests=active)
    asyncio.run(_run_worker(config, group, parent_pid, ready))


async def _run_worker(config: EdgeConfig, group: WorkerGroup, parent_pid: int, ready: Connection) -> None:
    running = await start_edge(config, group=group, reuse_port=True)
    control = web.TCPSite(running.runner, "127.0.0.1", 0)
    await control.start()
    group.control_ports[group.index] = control.port
    ready.send(running.url)
    ready.close()
    try:
        await until_stopped(parent_pid=parent_pid, ignore_sigint=True)
    finally:
        group.control_ports[group.index] = 0
        await running.stop()
        flush_access_log()
