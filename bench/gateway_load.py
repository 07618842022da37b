"""Gateway load test: many concurrent sessions' worth of token, playback and license calls plus
segment traffic against the whole stack (one process per service), for a bounded time.

Each simulated session is one user (so each stays below the per-client rate limit): log in (first
session) or refresh its token (later ones), ask the playback API for edges, get the ClearKey
license, fetch the MPD and then video+audio segments from the first edge at a player's pace, and
start over. The sessions run in separate load-generator processes. Afterwards one client bursts far
above its rate limit: every refusal must be a clean 429 with Retry-After. Reported: sustained
requests/s, p50/p99 per endpoint, errors, and the RSS of every service process sampled each second
(growth = last minus first after warm-up; goal: flat), with the load average and CPU time.

    python bench/gateway_load.py [--duration-s 60] [--sessions 40] [--workers 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import aiohttp

from server.config import RateLimitPolicy, StackConfig
from server.formats.b64 import b64url_encode
from server.packager import PackageConfig, package, parse_ladder
from server.packaging.demo import DemoClipConfig, write_demo_source
from server.passwords import hash_password
from server.stack import init_stack_config, start_stack
from server.users import UserRecord, update_users

TITLE = "load"
PASSWORD = "load-test-password"
ENDPOINTS = ("auth/token", "auth/refresh", "playback", "license", "manifest", "segment")


@dataclass(frozen=True, kw_only=True, slots=True)
class LoadConfig:
    """One load run. Rates are per simulated session; `pace_s` is the wall time between segments."""

    gateway_url: str
    users: tuple[str, ...]
    duration_s: float
    segments_per_session: int = 12
    pace_s: float = 0.25
    timeout_s: float = 10.0


async def _session_loop(config: LoadConfig, user: str, stop_at: float, results: dict[str, list]) -> None:
    """One user's back-to-back sessions until `stop_at` (monotonic)."""
    timeout = aiohttp.ClientTimeout(total=config.timeout_s)
    gateway = config.gateway_url
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async def call(endpoint: str, method: str, url: str, **kwargs: object) -> tuple[int, bytes]:
            started = time.perf_counter()
            try:
                async with http.request(method, url, **kwargs) as resp:  # type: ignore[arg-type]
                    body = await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                results["errors"].append(f"{endpoint}: {type(exc).__name__}")
                return 0, b""
            results[endpoint].append(((time.perf_counter() - started) * 1000, status))
            return status, body

        refresh: str | None = None
        while time.monotonic() < stop_at:
            if refresh is None:
                status, body = await call("auth/token", "POST", f"{gateway}/auth/token",
                                          json={"username": user, "password": PASSWORD})
            else:
                status, body = await call("auth/refresh", "POST", f"{gateway}/auth/refresh",
                                          json={"refresh_token": refresh})
            if status != 200:
                refresh = None
                await asyncio.sleep(1.0)
                continue
            tokens = json.loads(body)
            refresh = tokens["refresh_token"]
            auth = {"Authorization": f"Bearer {tokens['access_token']}"}
            status, body = await call("playback", "POST", f"{gateway}/playback/{TITLE}", headers=auth)
            if status != 200:
                await asyncio.sleep(1.0)
                continue
            steering = json.loads(body)
            manifest_url = steering["manifest_urls"][0]
            status, mpd = await call("manifest", "GET", manifest_url)
            if status != 200:
                continue
            kids = sorted(set(re.findall(rb'default_KID="([0-9a-fA-F-]{36})"', mpd)))
            kid_b64 = [b64url_encode(bytes.fromhex(k.decode().replace("-", ""))) for k in kids]
            await call("license", "POST", steering["license_url"], headers=auth,
                       json={"kids": kid_b64, "type": "temporary"})
            reps = re.findall(rb'<Representation id="([^"]+)"', mpd)
            video = [r.decode() for r in reps if r.startswith(b"v")] or ["v1"]
            audio = [r.decode() for r in reps if r.startswith(b"a")]
            for index in range(config.segments_per_session):
                if time.monotonic() >= stop_at:
                    break
                number = index % 5 + 1
                rep = video[index % len(video)]
                urls = [urljoin(manifest_url, f"video/{rep}/{number}.m4s")]
                if audio:
                    urls.append(urljoin(manifest_url, f"audio/{audio[0]}/{number}.m4s"))
                await asyncio.gather(*(call("segment", "GET", u) for u in urls))
                await asyncio.sleep(config.pace_s)


def _worker(config: LoadConfig, start_at: float, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """A load-generator process: one session loop per user, results back through `queue`."""
    results: dict[str, list] = {name: [] for name in (*ENDPOINTS, "errors")}

    async def main() -> None:
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        stop_at = time.monotonic() + config.duration_s
        await asyncio.gather(*(_session_loop(config, user, stop_at, results) for user in config.users))

    cpu0 = time.process_time()
    asyncio.run(main())
    queue.put((results, time.process_time() - cpu0))


def _rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _cpu_s(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _burst(gateway: str, user: str, count: int) -> dict[str, object]:
    """One client far above its bucket: every refusal must be a 429 with Retry-After."""
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{gateway}/auth/token", json={"username": user, "password": PASSWORD}) as resp:
            token = (await resp.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}"}

        async def one() -> tuple[int, bool]:
            async with http.post(f"{gateway}/playback/{TITLE}", headers=headers) as resp:
                await resp.read()
                return resp.status, "Retry-After" in resp.headers

        answers = await asyncio.gather(*(one() for _ in range(count)))
    statuses: dict[int, int] = {}
    for status, _ in answers:
        statuses[status] = statuses.get(status, 0) + 1
    clean = all(status == 200 or (status == 429 and has_retry) for status, has_retry in answers)
    return {"requests": count, "statuses": statuses, "clean": clean}


def _package(root: Path) -> Path:
    source = write_demo_source(root / "src.mp4", DemoClipConfig(duration_s=20.0, width=384, height=216))
    package(source, root / "content" / TITLE,
            PackageConfig(ladder=parse_ladder("144p:200k,216p:500k"), preset="veryfast", encrypt=True), title=TITLE)
    return root / "content"


async def run(args: argparse.Namespace) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="abrkit-load-"))
    content = await asyncio.to_thread(_package, work)
    rate = RateLimitPolicy()  # the defaults a deployment starts with
    # Every simulated session logs in from this one address: the per-address login budget (meant for
    # one guessing client) would throttle them all, so it is lifted here.
    config = StackConfig(config_path=work / "stack" / "stack.json", content_root=content, port=0, edges=2,
                         processes=True, heartbeat_s=0.5, access_log=True, rate_limit=rate,
                         login_rate_limit=RateLimitPolicy(rate_per_s=1000, burst=1000))
    init_stack_config(config)
    users = [f"load{i}" for i in range(args.sessions)] + ["burst"]
    password_hash = hash_password(PASSWORD)
    update_users(config.config_path, lambda u: u.update(
        {name: UserRecord(username=name, password_hash=password_hash, titles=("*",)) for name in users}))
    load_before = os.getloadavg()
    async with start_stack(config, log_dir=work / "logs") as stack:
        pids = {name: stack.pid(name) for name in stack.service_names}
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        start_at = time.monotonic() + 3.0  # spawned workers import aiohttp first
        per_worker = [users[i:-1:args.workers] for i in range(args.workers)]
        procs = [ctx.Process(target=_worker, args=(LoadConfig(gateway_url=stack.gateway_url, users=tuple(chunk),
                                                              duration_s=args.duration_s), start_at, queue))
                 for chunk in per_worker if chunk]
        for p in procs:
            p.start()
        cpu_start = {name: _cpu_s(pid) for name, pid in pids.items() if pid}
        rss: dict[str, list[int]] = {name: [] for name in pids}
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        t0 = time.monotonic()
        while time.monotonic() - t0 < args.duration_s + 1:
            for name, pid in pids.items():
                value = _rss_kb(pid) if pid else None
                if value is not None:
                    rss[name].append(value)
            await asyncio.sleep(1.0)
        gathered = [await asyncio.to_thread(queue.get, True, args.duration_s + 120) for _ in procs]
        for p in procs:
            p.join(30)
        cpu_end = {name: _cpu_s(pid) for name, pid in pids.items() if pid}
        load_after = os.getloadavg()
        burst = await _burst(stack.gateway_url, "burst", count=4 * rate.burst)
    merged: dict[str, list] = {name: [] for name in (*ENDPOINTS, "errors")}
    for results, _ in gathered:
        for key, values in results.items():
            merged[key].extend(values)
    endpoints = {}
    total = 0
    bad = 0
    for name in ENDPOINTS:
        samples = merged[name]
        latencies = [ms for ms, _ in samples]
        statuses: dict[str, int] = {}
        for _, status in samples:
            statuses[str(status)] = statuses.get(str(status), 0) + 1
        total += len(samples)
        bad += sum(count for status, count in statuses.items() if not status.startswith("2"))
        endpoints[name] = {"requests": len(samples), "rps": round(len(samples) / args.duration_s, 1),
                           "p50_ms": round(_percentile(latencies, 0.5), 2),
                           "p99_ms": round(_percentile(latencies, 0.99), 2), "statuses": statuses}
    warm = int(min(5, max(0, args.duration_s // 6)))
    memory = {name: {"first_kb": v[warm] if len(v) > warm else None, "last_kb": v[-1] if v else None,
                     "max_kb": max(v) if v else None,
                     "growth_kb": (v[-1] - v[warm]) if len(v) > warm else None,
                     # a leak keeps growing; a cache or pool filling up levels off in the first half
                     "second_half_growth_kb": (v[-1] - v[len(v) // 2]) if v else None} for name, v in rss.items()}
    cpu = {name: round((cpu_end.get(name) or 0) - (cpu_start.get(name) or 0), 2) for name in pids}
    return {
        "duration_s": args.duration_s, "sessions": args.sessions, "workers": len(procs),
        "rate_limit": {"rate_per_s": rate.rate_per_s, "burst": rate.burst},
        "requests": total, "rps": round(total / args.duration_s, 1), "non_2xx": bad,
        "transport_errors": len(merged["errors"]), "error_kinds": sorted(set(merged["errors"]))[:10],
        "endpoints": endpoints, "over_limit_burst": burst, "rss": memory, "service_cpu_s": cpu,
        "generator_cpu_s": round(sum(c for _, c in gathered), 2),
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in load_after],
        "cpus": os.cpu_count(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--sessions", type=int, default=40, help="concurrent simulated sessions (one user each)")
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    print(f"{result['requests']} requests in {args.duration_s:g} s: {result['rps']} req/s sustained, "
          f"{result['non_2xx']} non-2xx, {result['transport_errors']} transport errors "
          f"({result['sessions']} sessions, {result['workers']} generator processes, {result['cpus']} CPUs, "
          f"load average {result['loadavg_before'][0]} -> {result['loadavg_after'][0]})")
    print(f"{'endpoint':<14}{'requests':>9}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}  statuses")
    for name, e in result["endpoints"].items():  # type: ignore[union-attr]
        print(f"{name:<14}{e['requests']:>9}{e['rps']:>8}{e['p50_ms']:>9}{e['p99_ms']:>9}  {e['statuses']}")
    burst = result["over_limit_burst"]
    print(f"over the limit: {burst['requests']} requests at once from one client -> {burst['statuses']} "  # type: ignore[index]
          f"({'clean 429s with Retry-After' if burst['clean'] else 'NOT clean'})")  # type: ignore[index]
    print("service RSS (KiB, after warm-up -> end) and CPU s:")
    for name, m in result["rss"].items():  # type: ignore[union-attr]
        print(f"  {name:<9} {m['first_kb']} -> {m['last_kb']} (growth {m['growth_kb']}, in the second half "
              f"{m['second_half_growth_kb']}, max {m['max_kb']}), "
              f"CPU {result['service_cpu_s'][name]} s")  # type: ignore[index]
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    ok = result["non_2xx"] == 0 and result["transport_errors"] == 0 and burst["clean"]  # type: ignore[index]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
