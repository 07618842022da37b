"""Cache-hit throughput of one edge against nginx serving the same files, in the same run.

32 concurrent keep-alive clients (wrk, with a Lua script rotating over 200 objects) for 1 MB and
100 kB objects. nginx (Debian package, as many workers as the edge has) serves the files from disk
and is also the edge's origin; the edge is warmed by pre-positioning, so every measured request is a
cache hit with all features on: signature check, revocation checks per token (a revocation store),
metrics, CMCD (a `CMCD` query parameter on every request, its `bl` and `mtp` changing as a player's
do) and the JSON access log (to a file). nginx and wrk are installed with apt-get when missing (as
root).

`--before REV` also runs the edge of git revision REV (checked out in a temporary worktree) in the
same rounds, so the table gives before and after ratios against the same nginx runs. Besides req/s
ratios it prints each server's CPU time per request (user and system) and wrk's, nginx's CPU per
request over the edge's, and the CPU-bound ratio (nginx + its wrk over the edge + its wrk: what a
quiet machine gives when server and client keep the cores busy; steadier than req/s on a shared
machine), how many hits each edge's fast path answered (server/edgefast.py, from /metrics) and the
load average. `--full-path` measures the edge's full handler instead (a revalidation header).

    python bench/edge_throughput.py [--duration-s 10] [--workers 1 2] [--sizes 1000000 100000] [--before REV]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from server.internal import internal_headers
from server.keys import ed25519_public
from server.revocation import create_store
from server.urlsign import UrlGrant, sign, signed_path

OBJECTS = 200
CONNECTIONS = 32
KEY = bytes(range(32))  # the playback API's URL-signing seed; the edge gets its public half
INTERNAL_TOKEN = bytes(range(100, 132))
# A player's CMCD (query form) with a buffer length and a measured throughput that change from request
# to request (rounded to 100 as CTA-5004 asks), so that no server sees one payload over and over.
CMCD_QUERY = "?CMCD=bl%%3D%d%%2Cbr%%3D3200%%2Cmtp%%3D%d%%2Cot%%3Dv%%2Csid%%3D%%226e2fb550-c457-11e9%%22"
NGINX_CONF = """\
worker_processes {workers};
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    access_log {tmp}/nginx-access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    types {{ application/dash+xml mpd; video/iso.segment m4s; video/mp4 mp4; application/json json; }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        root {root};
    }}
}}
"""
WRK_SCRIPT = """\
local paths = {{{paths}}}
local cmcd = "{cmcd}"
local counter = 0
local thread_offset = 0
local threads = 0
function setup(thread)
  thread:set("thread_offset", threads * 97)
  threads = threads + 1
end
function request()
  counter = counter + 1
  local bl = ((counter * 7) % 300) * 100
  local mtp = 1000 + ((counter * 13) % 500) * 100
  return wrk.format("GET", paths[((counter + thread_offset) % #paths) + 1] .. string.format(cmcd, bl, mtp))
end
"""


@dataclass(frozen=True, kw_only=True, slots=True)
class Result:
    server: str
    size_bytes: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us_per_request: float  # the server's processes (user + system), from /proc
    user_us_per_request: float  # of which in user mode (Python, nginx's own code)
    sys_us_per_request: float  # of which in the kernel (system calls: reads, writes, sendfile)
    client_us_per_request: float  # wrk's CPU time (user + system): the other half of a CPU-bound run

    @property
    def mb_per_s(self) -> float:
        return self.requests_per_s * self.size_bytes / 1e6


def ensure_tools() -> None:
    missing = [tool for tool, binary in (("nginx", "nginx"), ("wrk", "wrk"))
               if shutil.which(binary) is None and not Path(f"/usr/sbin/{binary}").exists()]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        sys.exit(f"edge_throughput: needs {' and '.join(missing)}; install the Debian packages "
                 f"(apt-get install {' '.join(missing)}) or run this as root to let it install them")
    print(f"installing {' '.join(missing)} with apt-get ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    packages = ["nginx-light" if tool == "nginx" else tool for tool in missing]
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_title(root: Path, title: str, size_bytes: int) -> list[str]:
    """A title of OBJECTS segments of `size_bytes` in the packager's layout; the content paths."""
    rep = root / title / "video" / "r1"
    rep.mkdir(parents=True)
    block = os.urandom(size_bytes)
    paths = []
    for n in range(1, OBJECTS + 1):
        # Distinct bytes per object, so a server returning the wrong one would show in the sizes/ETags.
        (rep / f"{n}.m4s").write_bytes(n.to_bytes(4, "big") + block[4:])
        paths.append(f"/{title}/video/r1/{n}.m4s")
    (rep / "init.mp4").write_bytes(b"\0" * 1024)
    (root / title / "manifest.mpd").write_text("<MPD/>\n")
    (root / title / "segments.json").write_text(json.dumps(
        {"video": [{"id": "r1", "segment_sizes_bytes": [size_bytes] * OBJECTS}], "audio": []}))
    return paths


def wait_http(url: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1.0):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def process_tree_cpu_s(root_pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process and all its descendants so far (Linux /proc)."""
    children: dict[int, list[int]] = {}
    times: dict[int, tuple[float, float]] = {}
    tick_hz = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        children.setdefault(int(fields[1]), []).append(pid)
        times[pid] = (int(fields[11]) / tick_hz, int(fields[12]) / tick_hz)
    user, system, todo = 0.0, 0.0, [root_pid]
    while todo:
        pid = todo.pop()
        pid_user, pid_system = times.get(pid, (0.0, 0.0))
        user, system = user + pid_user, system + pid_system
        todo.extend(children.get(pid, []))
    return user, system


def run_wrk(base_url: str, paths: list[str], tmp: Path, duration_s: float, label: str, size_bytes: int,
            server_pid: int, headers: tuple[str, ...] = ()) -> Result:
    script = tmp / f"rotate-{label}.lua"
    script.write_text(WRK_SCRIPT.format(paths=", ".join(f'"{p}"' for p in paths), cmcd=CMCD_QUERY))
    # Warm-up pass (connections, caches, CPU frequency), then the measured run.
    extra = [arg for header in headers for arg in ("-H", header)]
    subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", "-d2s", "-s", str(script), *extra, base_url],
                   check=True, capture_output=True)
    cpu_before = process_tree_cpu_s(server_pid)
    client_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{duration_s:g}s", "--latency", "-s", str(script),
                          *extra, base_url], check=True, capture_output=True, text=True).stdout
    cpu_after = process_tree_cpu_s(server_pid)
    client_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    user_us, sys_us = ((after - before) / max(total, 1) * 1e6 for after, before in zip(cpu_after, cpu_before))
    client_us = ((client_after.ru_utime + client_after.ru_stime - client_before.ru_utime - client_before.ru_stime)
                 / max(total, 1) * 1e6)
    errors = sum(int(m) for m in re.findall(r"Non-2xx or 3xx responses:\s+(\d+)", out))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    return Result(server=label, size_bytes=size_bytes, requests_per_s=rps, p50_ms=_latency_ms(out, "50%"),
                  p99_ms=_latency_ms(out, "99%"), errors=errors, cpu_us_per_request=user_us + sys_us,
                  user_us_per_request=user_us, sys_us_per_request=sys_us, client_us_per_request=client_us)


def _latency_ms(out: str, pct: str) -> float:
    match = re.search(rf"^\s+{re.escape(pct)}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    if match is None:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def start_nginx(tmp: Path, root: Path, workers: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(workers=workers, tmp=tmp, port=port, root=root))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/")
    except BaseException:
        stop(proc)
        raise
    return proc, port


def start_edge(tmp: Path, origin_url: str, workers: int, cache_bytes: int,
               access_log: bool, tree: Path, label: str) -> tuple[subprocess.Popen[str], str]:
    """`abrkit edge` of the source tree `tree` (run from it, so that its packages are the ones imported)."""
    port = free_port()
    key_file = tmp / "url-verify.key"
    key_file.write_text(ed25519_public(KEY).hex())
    token_file = tmp / "internal.token"
    token_file.write_text(INTERNAL_TOKEN.hex())
    revocations = tmp / "revocations.db"
    create_store(revocations)
    log_name = f"edge-access-{label.replace(' ', '-').replace('@', '-')}.log"
    cmd = [sys.executable, "-m", "player", "edge", "--origin", origin_url, "--port", str(port),
           "--workers", str(workers), "--cache-mb", str(cache_bytes / 2**20 + 16), "--key-file", str(key_file),
           "--internal-token-file", str(token_file), "--revocations", str(revocations),
           "--access-log", str(tmp / log_name) if access_log else "off", "--edge-id", "bench"]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=tree, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "ready at" not in line:
        proc.kill()
        raise RuntimeError(f"edge did not start: {line!r}")
    return proc, line.split("ready at ")[1].split()[0]


def stop(proc: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def preposition(edge_url: str, title: str) -> dict[str, object]:
    request = urllib.request.Request(f"{edge_url}/internal/preposition/{title}", method="POST",
                                     headers=internal_headers(INTERNAL_TOKEN))
    with urllib.request.urlopen(request, timeout=120) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def checkout(repo: Path, rev: str, into: Path, cleanup: contextlib.ExitStack) -> Path:
    """A detached git worktree of `repo` at `rev` in `into`, removed again by `cleanup`."""
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", "--quiet", str(into), rev], check=True)
    cleanup.callback(subprocess.run, ["git", "-C", str(repo), "worktree", "remove", "--force", str(into)],
                     check=False)
    return into


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved rounds (nginx, then each edge); medians are reported")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1],
                        help="edge worker counts to measure (default: 1 and the number of CPUs)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 100_000], help="object sizes, bytes")
    parser.add_argument("--no-edge-access-log", action="store_true",
                        help="run the edges without their JSON access log (to see what it costs)")
    parser.add_argument("--full-path", action="store_true",
                        help="send every request with an If-None-Match that matches nothing (a revalidation "
                             "answered 200), which the edge's fast path leaves to aiohttp: measures the full handler")
    parser.add_argument("--before", metavar="REV",
                        help="also run the edge of this git revision (e.g. main), for before/after ratios")
    args = parser.parse_args()
    ensure_tools()
    print(f"load average (1, 5, 15 min) at the start: {', '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    results: list[tuple[int, Result]] = []
    here = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="abrkit-edge-bench-") as tmp_name, contextlib.ExitStack() as procs:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)  # nginx workers run as an unprivileged user when started as root
        root = tmp / "content"
        titles = {size: write_title(root, f"t{size}", size) for size in args.sizes}
        trees = [("", here)]
        if args.before:
            trees.insert(0, (f"@{args.before}", checkout(here, args.before, tmp / "before", procs)))
        # As many nginx workers as the (largest) edge has processes: one each per core by default.
        nginx, nginx_port = start_nginx(tmp, root, max(args.workers))
        procs.callback(stop, nginx)
        servers: list[tuple[str, str, int, list[str] | None]] = [("nginx", f"http://127.0.0.1:{nginx_port}", nginx.pid,
                                                                  None)]
        # A grant bound to a login, so that every token is also checked against the revocation store.
        token = sign(KEY, UrlGrant(path_prefix="/", expires_at=int(time.time()) + 3600, session_id="bench",
                                   subject="bench-user", family="bench-login", issued_at=time.time()))
        for suffix, tree in trees:
            for workers in sorted(set(args.workers)):
                label = f"edge x{workers}{suffix}"
                edge, edge_url = start_edge(tmp, servers[0][1], workers, sum(OBJECTS * s for s in args.sizes),
                                            access_log=not args.no_edge_access_log, tree=tree, label=label)
                procs.callback(stop, edge)
                for size in args.sizes:
                    # Every worker is warmed: pre-positioning fans out to all of them.
                    warmed = preposition(edge_url, f"t{size}")
                    if warmed["failed"] or warmed["workers"] != workers:
                        raise RuntimeError(f"pre-positioning failed: {warmed}")
                servers.append((label, edge_url, edge.pid, []))
        for round_index in range(args.repeats):
            for size in args.sizes:
                for label, url, pid, _ in servers:
                    paths = titles[size] if label == "nginx" else [signed_path(token, p) for p in titles[size]]
                    result = run_wrk(url, paths, tmp, args.duration_s, label, size, pid,
                                     ('If-None-Match: "never"',) if args.full_path else ())
                    results.append((round_index, result))
                    print(f"round {round_index + 1}: {label:<8} {size:>8} B  {result.requests_per_s:8.0f} req/s",
                          flush=True)
        fast_paths = {label: fast_path_share(url) for label, url, _, _ in servers[1:]}
    report(results, "signature and revocation checks, metrics (no access log, so no CMCD parsing)"
           if args.no_edge_access_log
           else "signature and revocation checks, metrics, CMCD, JSON access log to a file")
    for label, share in fast_paths.items():
        print(f"{label}: {share}")
    print(f"load average (1, 5, 15 min) at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


def fast_path_share(edge_url: str) -> str:
    """How many of an edge's cache hits its fast path answered (server/edgefast.py), from /metrics."""
    with urllib.request.urlopen(f"{edge_url}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    values = dict(re.findall(r"^abrkit_(edge_cache_(?:fast_)?hits_total) (\d+)", text, re.MULTILINE))
    if "edge_cache_fast_hits_total" not in values:
        return "no fast path (an edge before it)"
    hits, fast = int(values["edge_cache_hits_total"]), int(values["edge_cache_fast_hits_total"])
    return f"fast path answered {fast} of {hits} cache hits ({fast / max(hits, 1):.1%})"


def report(results: list[tuple[int, Result]], features: str) -> None:
    """Medians over rounds; each ratio is the median of (edge / nginx) within the same round."""
    nginx = {(r, res.size_bytes): res for r, res in results if res.server == "nginx"}
    keys = sorted({(res.size_bytes, res.server) for _, res in results}, key=lambda k: (-k[0], k[1] != "nginx", k[1]))
    print(f"\nCache-hit throughput: {CONNECTIONS} connections, {OBJECTS} objects round-robin, "
          f"{os.cpu_count()} CPUs shared with wrk; medians of {len({r for r, _ in results})} interleaved rounds")
    width = max(9, *(len(server) for _, server in keys))
    print(f"{'server':<{width}} {'object':>7} {'req/s':>8} {'MB/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
          f"{'CPU us/req':>10} {'user':>5} {'sys':>5} {'wrk':>5} {'vs nginx':>8} {'CPU vs nginx':>12} {'CPU-bound':>9}")
    for size, server in keys:
        runs = [(r, res) for r, res in results if res.size_bytes == size and res.server == server]
        ratio = statistics.median(res.requests_per_s / nginx[(r, size)].requests_per_s for r, res in runs)
        # nginx's CPU time per request over this server's: steadier than req/s on a shared machine.
        cpu_ratio = statistics.median(nginx[(r, size)].cpu_us_per_request / max(res.cpu_us_per_request, 1e-9)
                                      for r, res in runs)
        # The ratio a quiet machine would give if server and wrk shared its CPUs fully busy (both
        # runs CPU-bound): nginx's CPU per request plus its wrk's, over this server's plus its wrk's.
        bound_ratio = statistics.median(
            (nginx[(r, size)].cpu_us_per_request + nginx[(r, size)].client_us_per_request)
            / max(res.cpu_us_per_request + res.client_us_per_request, 1e-9) for r, res in runs)
        label = f"{size / 1e6:g} MB" if size >= 1_000_000 else f"{size / 1e3:g} kB"
        rps = statistics.median(res.requests_per_s for _, res in runs)
        print(f"{server:<{width}} {label:>7} {rps:>8.0f} {rps * size / 1e6:>7.0f} "
              f"{statistics.median(res.p50_ms for _, res in runs):>7.2f} "
              f"{statistics.median(res.p99_ms for _, res in runs):>7.2f} {sum(res.errors for _, res in runs):>6} "
              f"{statistics.median(res.cpu_us_per_request for _, res in runs):>10.0f} "
              f"{statistics.median(res.user_us_per_request for _, res in runs):>5.0f} "
              f"{statistics.median(res.sys_us_per_request for _, res in runs):>5.0f} "
              f"{statistics.median(res.client_us_per_request for _, res in runs):>5.0f} "
              f"{ratio:>7.2f}x {cpu_ratio:>11.2f}x {bound_ratio:>8.2f}x")
    print(f"edge features on: {features}; goals: >= 0.9x nginx at 1 MB, >= 0.5x at 100 kB")
    befores = sorted({server for _, server in keys if "@" in server})
    for before in befores:
        after = before.split("@")[0]
        for size in sorted({size for size, _ in keys}, reverse=True):
            ratios = []
            for label in (before, after):
                runs = [(r, res) for r, res in results if res.size_bytes == size and res.server == label]
                ratios.append(statistics.median(res.requests_per_s / nginx[(r, size)].requests_per_s for r, res in runs))
            print(f"{after} {size / 1e3:g} kB: {ratios[0]:.2f}x nginx before ({before}), {ratios[1]:.2f}x after, "
                  f"{ratios[1] / ratios[0]:.2f}x speed-up")


if __name__ == "__main__":
    sys.exit(main())
