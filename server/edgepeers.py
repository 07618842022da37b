"""What an edge says to its peers: the sibling workers of its group (`WorkerGroup`: control ports,
shared load, asking them all the same) and the steering API (heartbeats, received by
server/playback.py). Both go out on the edge's own client session."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from server.edgemetrics import EdgeStats

FANOUT_HEADER = "X-Abrkit-Fanout"  # on a request from a sibling: answer for this worker only

log = logging.getLogger("abrkit.edge")


@dataclass(frozen=True, kw_only=True)
class WorkerGroup:
    """What the worker processes of one edge share: each one's control port and active-request count.

    Each worker has its own cache; pre-positioning and `/metrics` fan out to the siblings through
    their control ports (loopback), and worker 0 alone sends heartbeats, with the summed load.
    """

    index: int
    control_ports: Any  # multiprocessing.Array("i", workers), 0 until that worker is up
    active_requests: Any  # multiprocessing.Array("i", workers)

    def siblings(self) -> list[int]:
        return [port for i, port in enumerate(self.control_ports) if i != self.index and port]

    def total_active(self) -> int:
        return int(sum(self.active_requests))

    async def ask_siblings(self, session: aiohttp.ClientSession, method: str, path: str, *,
                           headers: Mapping[str, str], timeout: aiohttp.ClientTimeout) -> list[dict[str, Any]]:
        """Ask every sibling (over its loopback control port) the same; their JSON answers, {} for
        one that did not answer (logged)."""
        headers = {**headers, FANOUT_HEADER: "0"}

        async def ask(port: int) -> dict[str, Any]:
            try:
                async with session.request(method, f"http://127.0.0.1:{port}{path}", headers=headers,
                                           timeout=timeout) as resp:
                    answer = await resp.json()
                    return answer if isinstance(answer, dict) else {}
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.warning("worker on control port %d did not answer %s: %s", port, path, exc)
                return {}

        return list(await asyncio.gather(*(ask(port) for port in self.siblings())))


async def send_heartbeats(session: aiohttp.ClientSession, *, edge_id: str, steering_url: str,
                          headers: Mapping[str, str], interval_s: float, beat: Callable[[], dict[str, Any] | None],
                          stats: EdgeStats, clock: Callable[[], float] = time.monotonic,
                          sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
    """POST `beat()` (None: nothing to report yet) with `headers` (the internal credential) to the
    steering API every `interval_s`, until cancelled. A failure is counted and logged once per outage,
    and its end once; it never stops.

    Beats keep to a fixed schedule (one every `interval_s` from the first), not `interval_s` after
    each answer: steering drops an edge silent for `missed_heartbeats` intervals, so a beat whose POST
    took most of an interval (a loaded machine, a busy steering API) must not push the next one past
    that window. A beat that overran whole slots is sent at once and the missed slots are skipped,
    never sent in a burst."""
    target = f"{steering_url}/internal/edges/heartbeat"
    timeout = aiohttp.ClientTimeout(total=max(0.5, min(5.0, 2 * interval_s)))
    failing = False
    due_s = clock()
    while True:
        report = beat()
        if report is not None:
            problem: str | None = None
            try:
                async with session.post(target, json=report, headers=headers, timeout=timeout) as resp:
                    if resp.status >= 300:
                        problem = f"answered {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if problem is not None:
                stats.heartbeat_failures += 1
                if not failing:
                    log.warning("edge %s: heartbeat to %s failed (%s); retrying every %.3g s, "
                                "logging again when it recovers", edge_id, target, problem, interval_s)
                failing = True
            elif failing:
                log.info("edge %s: heartbeats to %s accepted again", edge_id, target)
                failing = False
        now_s = clock()
        due_s = max(due_s + interval_s, now_s)  # the next slot; after an overrun, now
        await sleep(due_s - now_s)
