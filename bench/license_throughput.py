"""License service throughput: requests/s and p50/p99 latency at 32 concurrent connections, one process.

The service runs in its own process (one event loop, access and audit logs on, written to a file);
the load comes from `wrk` (Debian package, installed if missing) in another process, one thread,
keep-alive connections, each request a full ClearKey license request for two KIDs with a bearer
token. Goal (issue 4): >= 5,000 requests/s and p99 <= 10 ms.

    python bench/license_throughput.py [--duration-s 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from server.config import LicenseConfig, TokenPolicy
from server.formats.b64 import b64url_encode
from server.keys import ed25519_public
from server.revocation import create_store
from server.tokens import TokenIssuer

GOAL_RPS = 5000
GOAL_P99_MS = 10.0
KEY = b"bench-signing-key-".ljust(32, b"k")


def _make_content(root: Path) -> list[bytes]:
    title = root / "bench"
    title.mkdir(parents=True)
    kids = [os.urandom(16) for _ in range(2)]
    entries = [{"kid": kid.hex(), "key": os.urandom(16).hex(), "tracks": [t]} for kid, t in zip(kids, ("video", "audio"))]
    fd = os.open(title / "keys.json", os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"title": "bench", "keys": entries}, out)
    (title / "manifest.mpd").write_text("<MPD/>")
    return kids


def _policy(state: Path) -> TokenPolicy:
    create_store(state / "revocations.db")
    return TokenPolicy(verify_key=ed25519_public(KEY), revocations_path=state / "revocations.db")


def serve(state: Path, port: int) -> None:
    """The server process: the license app on 127.0.0.1:port, logs to state/service.log."""
    import logging

    from aiohttp import web

    from server import license
    from server.observability import JsonAccessLogger, access_log

    handler = logging.FileHandler(state / "service.log")
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in ("abrkit.access", "abrkit.audit", "abrkit.license"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    app = license.create_app(LicenseConfig(content_root=state / "content", tokens=_policy(state)))
    web.run_app(app, host="127.0.0.1", port=port, access_log=access_log,
                access_log_class=JsonAccessLogger.for_service("license"), print=None)


def serve_bare(port: int) -> None:
    """Baseline: a bare aiohttp handler answering a fixed JWKS (no token, no parsing, no logs)."""
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"keys": [], "type": "temporary"})

    app = web.Application()
    app.router.add_post("/license", handler)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk not found: installing the Debian package...", file=sys.stderr)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "wrk"], check=False, stdout=subprocess.DEVNULL)
    found = shutil.which("wrk")
    if not found:
        subprocess.run([*sudo, "apt-get", "update", "-qq"], check=False, stdout=subprocess.DEVNULL)
        subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL)
        found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is not installed and could not be installed")
    return found


_LUA = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = {auth}
"""


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("license service exited early")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("license service did not start")


def _check_one(port: int, body: str, token: str) -> None:
    import aiohttp

    async def once() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{port}/license", data=body,
                                    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}) as r:
                got = await r.json()
                if r.status != 200 or len(got.get("keys", [])) != 2:
                    raise SystemExit(f"license request failed: {r.status} {got}")

    asyncio.run(once())


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--serve", nargs=2, metavar=("STATE", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--serve-bare", metavar="PORT", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), int(args.serve[1]))
        return 0
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return 0

    wrk = _ensure_wrk()
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        kids = _make_content(state / "content")
        token = TokenIssuer(_policy(state), KEY).issue("bench-user", ("bench",)).access_token
        body = json.dumps({"kids": [b64url_encode(k) for k in kids], "type": "temporary"})
        script = state / "license.lua"
        script.write_text(_LUA.format(body=json.dumps(body), auth=json.dumps(f"Bearer {token}")))
        results = {}
        for name, argv in (("bare aiohttp handler", ["--serve-bare"]), ("license service", ["--serve", str(state)])):
            port = _free_port()
            server = subprocess.Popen([sys.executable, __file__, *argv, str(port)])
            try:
                _wait_listening(port, server)
                if name == "license service":
                    _check_one(port, body, token)
                url = f"http://127.0.0.1:{port}/license"
                subprocess.run([wrk, "-t1", "-c", str(args.connections), "-d", "2s", "-s", str(script), url],
                               check=True, capture_output=True)  # warm-up
                cpu_before = _cpu_s(server.pid)
                out = subprocess.run([wrk, "-t1", "-c", str(args.connections), "-d", f"{args.duration_s}s",
                                      "--latency", "-s", str(script), url], check=True, capture_output=True,
                                     text=True).stdout
                cpu_used_s = _cpu_s(server.pid) - cpu_before
            finally:
                server.terminate()
                server.wait(timeout=15)
            results[name] = _parse_wrk(out, cpu_used_s)
        audit_lines = sum(1 for line in (state / "service.log").open() if '"event":"license"' in line)
    print(f"{args.connections} connections, {args.duration_s} s each, server: 1 process; load: wrk, 1 thread, "
          f"another process; {os.cpu_count()} cores")
    for name, r in results.items():
        print(f"  {name:<21} {r['rps']:>8,.0f} req/s   p50 {r['p50_ms']:6.2f} ms   p99 {r['p99_ms']:6.2f} ms   "
              f"server CPU {r['cpu_us_per_req']:6.1f} us/req (= {r['rps_per_core']:,.0f} req/s per busy core)   "
              f"non-2xx {r['non_2xx']}")
    lic = results["license service"]
    print(f"  license service / bare handler: {lic['rps'] / results['bare aiohttp handler']['rps']:.2f}x;"
          f" audit lines written: {audit_lines:,}")
    ok = lic["rps"] >= GOAL_RPS and lic["p99_ms"] <= GOAL_P99_MS and not lic["non_2xx"]
    print(f"  goal (>= {GOAL_RPS:,} req/s, p99 <= {GOAL_P99_MS:g} ms):", "met" if ok else "NOT met")
    return 0


def _parse_wrk(out: str, cpu_used_s: float) -> dict[str, float]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    cpu_per_req_s = cpu_used_s / max(1, total)
    return {"rps": rps, "p50_ms": _ms(re.search(r"50%\s+(\S+)", out).group(1)),  # type: ignore[union-attr]
            "p99_ms": _ms(re.search(r"99%\s+(\S+)", out).group(1)),  # type: ignore[union-attr]
            "non_2xx": int(errors.group(1)) if errors else 0, "cpu_us_per_req": cpu_per_req_s * 1e6,
            "rps_per_core": 1.0 / cpu_per_req_s if cpu_per_req_s else float("inf")}

if __name__ == "__main__":
    sys.exit(main())
