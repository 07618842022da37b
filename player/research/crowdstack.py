"""The service side of a flash-crowd run: a private content root, a processes-mode stack with the
viewers' accounts, signing them in, pre-positioning, and the counters the services expose.

Nothing here plays: `player.research.crowd` composes it with the crowd's client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import aiohttp

from player.errors import CliError
from server.config import StackConfig
from server.formats.names import MANIFEST_NAME, is_valid_title
from server.stack import RunningStack, ensure_demo_user, init_stack_config, start_stack
from server.users import UserRecord, read_users, update_users

# --- content -----------------------------------------------------------------------------------------


def link_tree(source: Path, target: Path) -> None:
    """`source`'s files under `target`, hard-linked where the file system allows (else copied)."""
    for path in sorted(source.rglob("*")):
        if path.name.startswith("."):
            continue
        dest = target / path.relative_to(source)
        if path.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, dest)
        except OSError:
            shutil.copy2(path, dest)


def prepare_content(root: Path, titles: Mapping[str, Path]) -> Path:
    """A content root at `root` holding each packaged title directory under its new name."""
    for name, source in titles.items():
        if not is_valid_title(name):
            raise CliError(f"{name!r} is not a valid title name")
        if not (source / MANIFEST_NAME).is_file():
            raise CliError(f"{source}: not a packaged title (no {MANIFEST_NAME})")
        if (root / name).exists():
            shutil.rmtree(root / name)
        link_tree(source, root / name)
    return root


# --- the stack and its accounts ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class CrowdStackConfig:
    """The stack a crowd runs against: one process per service, default policies (what a deployment
    starts with: the gateway's rate limit, bulkheads and breakers are what the crowd measures)."""

    content_root: Path
    work_dir: Path  # the stack file and its secrets
    log_dir: Path  # each service's log, `<service>.log` (the origin's is read for requests per segment)
    edges: int = 2
    edge_cache_bytes: int = 256 * 1024 * 1024
    heartbeat_s: float = 0.5
    accounts: tuple[str, ...] = ()
    host: str = "127.0.0.1"  # an address Dask workers on other machines can reach, for a crowd spread over them

    def __post_init__(self) -> None:
        if self.edges < 1:
            raise ValueError("a crowd needs at least one edge")


@dataclass(frozen=True, kw_only=True, slots=True)
class CrowdStack:
    stack: RunningStack
    password: str = field(repr=False)  # every account's (the demo user's, whose hash they share)


def add_accounts(config: StackConfig, usernames: Sequence[str]) -> str:
    """The viewers' accounts, entitled to every title, sharing the demo user's password (one scrypt
    hash for all: making a thousand accounts costs nothing). Returns that password."""
    credentials = ensure_demo_user(config)
    password_hash = read_users(config.config_path)[credentials.username].password_hash
    records = {name: UserRecord(username=name, password_hash=password_hash, titles=("*",)) for name in usernames}
    update_users(config.config_path, lambda users: users.update(records))
    return credentials.password


@contextlib.asynccontextmanager
async def crowd_stack(config: CrowdStackConfig) -> AsyncIterator[CrowdStack]:
    stack_config = StackConfig(config_path=config.work_dir / "stack" / "stack.json", content_root=config.content_root,
                               host=config.host, port=0, edges=config.edges, processes=True, heartbeat_s=config.heartbeat_s,
                               edge_cache_bytes=config.edge_cache_bytes, access_log=True)
    init_stack_config(stack_config)
    password = add_accounts(stack_config, config.accounts)
    async with start_stack(stack_config, log_dir=config.log_dir) as stack:
        yield CrowdStack(stack=stack, password=password)


async def sign_in(http: aiohttp.ClientSession, gateway_url: str, usernames: Iterable[str], password: str, *,
                  concurrency: int = 4, patience_s: float = 300.0) -> dict[str, str]:
    """Access tokens of `usernames`, as devices signed in before the evening: a few logins at a
    time, waiting out 429/503 as `Retry-After` says."""
    gate = asyncio.Semaphore(concurrency)
    deadline = time.monotonic() + patience_s

    async def one(username: str) -> tuple[str, str]:
        async with gate:
            while True:
                async with http.post(f"{gateway_url}/auth/token",
                                     json={"username": username, "password": password}) as resp:
                    body = await resp.read()
                    if resp.status == 200:
                        return username, str(json.loads(body)["access_token"])
                    retry_s = _retry_after_s(resp.headers.get("Retry-After"))
                if resp.status not in (429, 503) or time.monotonic() + retry_s > deadline:
                    raise CliError(f"signing in {username} failed: HTTP {resp.status} {body[:200]!r}")
                await asyncio.sleep(retry_s)

    return dict(await asyncio.gather(*(one(name) for name in dict.fromkeys(usernames))))


def _retry_after_s(value: str | None) -> float:
    try:
        return min(30.0, max(0.1, float(value))) if value else 1.0
    except ValueError:
        return 1.0


async def preposition(http: aiohttp.ClientSession, stack: RunningStack, title: str) -> list[dict[str, object]]:
    """Push `title` to every edge (`POST /internal/preposition/{title}`); their answers."""
    results = []
    for url in stack.edge_urls:
        async with http.post(f"{url}/internal/preposition/{quote(title, safe='')}", headers=stack.internal_headers(),
                             timeout=aiohttp.ClientTimeout(total=300)) as resp:
            body = await resp.json()
            if resp.status != 200:
                raise CliError(f"pre-positioning {title} on {url} failed: {body}")
            results.append({k: body.get(k) for k in ("objects", "fetched", "already_cached", "failed")})
    return results


# --- what the services count ----------------------------------------------------------------------


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_prometheus(text: str, *, namespace: str = "abrkit_") -> Samples:
    """`{(metric name, sorted labels): value}` from the Prometheus text format (0.0.4); names lose
    the services' `namespace` prefix (they are declared without it: `edge_cache_hits_total`)."""
    samples: Samples = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, brace, rest = head.partition("{")
        labels: list[tuple[str, str]] = []
        if brace:
            for item in rest.rstrip("}").split(","):
                key, eq, raw = item.partition("=")
                if eq:
                    labels.append((key.strip(), raw.strip().strip('"')))
        try:
            samples[(name.strip().removeprefix(namespace), tuple(sorted(labels)))] = float(value)
        except ValueError:
            continue
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name` over every label set that has `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (n, ls), v in samples.items():
        if n == name:
            key = dict(ls).get(label, "")
            out[key] = out.get(key, 0.0) + v
    return out


def diff(after: Samples, before: Samples) -> Samples:
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


async def scrape(http: aiohttp.ClientSession, stack: RunningStack) -> dict[str, Samples]:
    """`/metrics` of every edge (summed) and of the gateway: {"edges": ..., "gateway": ...}."""
    async def one(url: str) -> Samples:
        try:
            async with http.get(f"{url}/metrics", headers=stack.internal_headers(),
                                timeout=aiohttp.ClientTimeout(total=10)) as resp:
                return parse_prometheus(await resp.text()) if resp.status == 200 else {}
        except (aiohttp.ClientError, TimeoutError):
            return {}

    edges = await asyncio.gather(*(one(url) for url in stack.edge_urls))
    summed: Samples = {}
    for samples in edges:
        for key, value in samples.items():
            summed[key] = summed.get(key, 0.0) + value
    return {"edges": summed, "gateway": await one(stack.gateway_url)}


def service_cpu_s(stack: RunningStack) -> dict[str, float]:
    """CPU seconds (user + system) each service process has used so far (Linux /proc; processes mode)."""
    out: dict[str, float] = {}
    for name in stack.service_names:
        pid = stack.pid(name)
        if pid is None:
            continue
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            continue
    return out


def origin_requests(log_path: Path | None, title: str, since_epoch: float, until_epoch: float) -> dict[str, int] | None:
    """From the origin's JSON access log: GETs of `title`'s media segments in the window, and how
    many distinct segments they were for. None without a log."""
    if log_path is None or not log_path.is_file():
        return None
    prefix = f"/{title}/"
    requests = 0
    distinct: set[str] = set()
    with log_path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.startswith("{") or prefix not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            path = entry.get("path", "")
            if (entry.get("method") == "GET" and isinstance(path, str) and path.startswith(prefix)
                    and path.endswith(".m4s") and since_epoch <= float(entry.get("ts", 0.0)) <= until_epoch):
                requests += 1
                distinct.add(path)
    return {"requests": requests, "segments": len(distinct)}
