"""Start the whole stack: origin, N edges, auth, playback, license and gateway.

Embedded (default): every service is an aiohttp app on its own site in the running event loop.
Processes (`StackConfig.processes`): one OS process per service (`python -m server.run SERVICE`), so
a single edge can be killed. Either way the listening sockets are bound here first, so every
service knows every other's URL before any starts, and there is no port race. The gateway and the
edges listen on `host`, the others on `internal_host`; each service gets only its own secrets
(`server.keys.secrets_for`: over its stdin in processes mode), and the revocation store is created
here before any service opens it.

    async with start_stack(config) as stack:
        stack.gateway_url, stack.edge_urls, await stack.kill_edge(0), ...
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import math
import secrets as _secrets
import socket
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from aiohttp import web

from server.config import (
    AuthConfig,
    BackendConfig,
    EdgeConfig,
    GatewayConfig,
    LicenseConfig,
    PlaybackConfig,
    StackConfig,
    TokenPolicy,
    save_stack_config,
    stack_config_to_json,
)
from server.faults import FAULTS_PATH
from server.formats.urls import url_host
from server.internal import internal_headers
from server.keys import Secrets, ServiceSecrets, load_or_create_secrets, load_secrets, secrets_for, store_demo_password
from server.live.channel import LiveChannel, LiveConfig
from server.observability import IDLE_TIMEOUT_S, configure_logging, service_runner
from server.passwords import hash_password
from server.privatefiles import file_lock
from server.regions import RegionsConfig, load_regions
from server.revocation import create_store
from server.supervisor import Supervisor, start_together, subprocess_launcher
from server.urlsign import UrlGrant, sign, signed_path
from server.users import UserRecord, read_users, update_users

log = logging.getLogger("abrkit.stack")

DEMO_USERNAME = "demo"


# --- naming and addresses --------------------------------------------------------------------------

def service_names(config: StackConfig) -> list[str]:
    """Start order (stopped in reverse): origin and playback before the edges that use them, the gateway last."""
    return ["origin", "playback", *(f"edge-{i}" for i in range(config.edges)), "auth", "license", "gateway"]


def service_kind(name: str) -> str:
    return "edge" if name.startswith("edge-") else name


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (0 = any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def requested_port(config: StackConfig, name: str) -> int:
    return config.port if name == "gateway" else config.service_ports.get(name, 0)


PUBLIC_KINDS = ("gateway", "edge")  # what clients reach; the others serve the stack only


def bind_host(config: StackConfig, name: str) -> str:
    """Where service `name` listens: `host` for the gateway and the edges, `internal_host` for the rest."""
    return config.host if service_kind(name) in PUBLIC_KINDS else config.internal_host


def stack_regions(config: StackConfig) -> RegionsConfig | None:
    """The stack's regions file, read (None: it has none); edge `i` stands where its `edges[i]` says."""
    return load_regions(config.regions_path) if config.regions_path is not None else None


def with_regions(config: StackConfig) -> StackConfig:
    """`config` with one edge per edge of its regions file (unchanged without one)."""
    regions = stack_regions(config)
    return config if regions is None else dataclasses.replace(config, edges=len(regions.edges))


# The routes that start a new session: shed first when a backend is overloaded (server/gateway.py).
NEW_SESSION_ROUTES = {"auth": ("POST /auth/token",), "playback": ("POST /playback/[^/]+",), "license": ()}


# --- per-service configs ---------------------------------------------------------------------------

def _live_titles(config: StackConfig) -> dict[str, str]:
    """The stack's live channel and the title it loops ({} without `live_title`)."""
    return {config.live_channel: config.live_title} if config.live_title else {}


def live_config(config: StackConfig) -> LiveConfig | None:
    """The live channel of a stack (None without `live_title`)."""
    if config.live_title is None:
        return None
    return LiveConfig(channel=config.live_channel, source_title=config.live_title,
                      availability_start_s=config.live_start_s if config.live_start_s is not None else time.time(),
                      low_latency=config.low_latency, chunk_s=config.live_chunk_s, speed=config.live_speed,
                      clock_origin_s=config.live_start_s, player_clocks=config.live_player_clocks)


def live_video_chunk_sizes(content_root: Path, title: str, *, low_latency: bool,
                           chunk_s: float) -> dict[str, tuple[tuple[int, ...], ...]]:
    """The bytes a live channel looping `title` sends of each video segment of one loop, chunk by
    chunk (one moof+mdat per CMAF chunk at low latency, one per segment otherwise), per rendition id:
    what a player downloads, which a live simulator's twin downloads too (player/research/experiment_live.py).
    Every loop sends the same video bytes (only audio leaves out its priming samples after the first).
    ValueError for a title that cannot be a channel, or chunks that do not divide its segments."""
    channel = LiveChannel(LiveConfig(channel="live" if title != "live" else "live-channel", source_title=title,
                                     availability_start_s=0.0, low_latency=low_latency, chunk_s=chunk_s), content_root)
    return {track.rep_id: tuple(tuple(len(chunk) for chunk in channel.segment_chunks("video", track.rep_id, number))
                                for number in range(1, channel.loop_segments + 1))
            for track in channel.tracks() if track.media == "video"}


def build_app(name: str, config: StackConfig, ports: Mapping[str, int], secrets: ServiceSecrets) -> web.Application:
    """The aiohttp app of service `name` in a stack whose services listen on `ports`, holding `secrets`
    (what `secrets_for` gives its kind)."""
    def url(service: str) -> str:
        return f"http://{url_host(bind_host(config, service))}:{ports[service]}"

    host, port = bind_host(config, name), ports[name]
    internal = secrets.internal_token
    kind = service_kind(name)
    if kind in ("auth", "playback", "license", "gateway"):
        tokens = TokenPolicy(verify_key=secrets.require("jwt_verify_key"), access_ttl_s=config.access_ttl_s,
                             refresh_ttl_s=config.refresh_ttl_s,
                             revocations_path=None if kind == "gateway" else config.resolved_revocations_path)
    license_url = url("gateway") + "/license"
    regions = stack_regions(config) if kind in ("edge", "playback") else None
    if kind == "origin":
        from server import origin
        return origin.create_app(origin.OriginConfig(content_root=config.content_root, host=host, port=port,
                                                     internal_token=internal, live=live_config(config)))
    if kind == "edge":
        from server import edge
        site = regions.edges[int(name.removeprefix("edge-"))] if regions is not None else None
        return edge.create_app(EdgeConfig(
            edge_id=site.edge_id if site else name, host=host, port=port, origin_url=url("origin"),
            url_verify_key=secrets.require("url_verify_key"),
            internal_token=internal, revocations_path=config.resolved_revocations_path,
            cache_bytes=config.edge_cache_bytes, license_url=license_url, steering_url=url("playback"),
            heartbeat_s=config.heartbeat_s, public_url=url(name), allowed_origins=config.allowed_origins,
            live_channels=(config.live_channel,) if config.live_title else (),
            live_speed=config.live_speed, live_clock_origin_s=config.live_start_s or 0.0,
            live_player_clocks=config.live_player_clocks,
            rtt_ms=site.rtt_ms if site else {}))
    if kind == "auth":
        from server import auth
        return auth.create_app(AuthConfig(host=host, port=port, users_path=config.config_path, tokens=tokens,
                                          signing_key=secrets.require("jwt_signing_key"), internal_token=internal,
                                          allowed_origins=config.allowed_origins,
                                          answer_within_s=0.8 * config.policy_for("auth").timeout_s))
    if kind == "playback":
        from server import playback
        return playback.create_app(PlaybackConfig(
            host=host, port=port, content_root=config.content_root, tokens=tokens,
            url_signing_key=secrets.require("url_signing_key"), internal_token=internal, license_url=license_url,
            url_ttl_s=config.url_ttl_s, heartbeat_s=config.heartbeat_s, missed_heartbeats=config.missed_heartbeats,
            fail_static_heartbeats=config.fail_static_heartbeats, allowed_origins=config.allowed_origins,
            live_titles=_live_titles(config), regions=regions))
    if kind == "license":
        from server import license
        return license.create_app(LicenseConfig(host=host, port=port, content_root=config.content_root, tokens=tokens,
                                                internal_token=internal, allowed_origins=config.allowed_origins,
                                                live_titles=_live_titles(config)))
    if kind == "gateway":
        from server import gateway
        backends = tuple(BackendConfig(name=b, url=url(b), prefix=prefix, requires_token=needs_token,
                                       policy=config.policy_for(b), new_session_routes=NEW_SESSION_ROUTES[b])
                         for b, prefix, needs_token in (("auth", "/auth", False), ("playback", "/playback", True),
                                                        ("license", "/license", True)))
        return gateway.create_app(GatewayConfig(
            host=host, port=port, backends=backends, tokens=tokens, internal_token=internal,
            rate_limit=config.rate_limit, login_rate_limit=config.login_rate_limit,
            max_concurrent_per_client=config.max_concurrent_per_client, trusted_proxies=config.trusted_proxies,
            allowed_origins=config.allowed_origins))
    raise ValueError(f"unknown service {name!r}")


def make_runner(name: str, app: web.Application, shutdown_timeout_s: float, *,
                idle_timeout_s: float = IDLE_TIMEOUT_S) -> web.AppRunner:
    if service_kind(name) == "edge":  # with the cache-hit fast path (server/edgefast.py)
        from server import edge
        return edge.make_runner(app, shutdown_timeout_s=shutdown_timeout_s, idle_timeout_s=idle_timeout_s)
    return service_runner(app, service_kind(name), shutdown_timeout_s=shutdown_timeout_s, idle_timeout_s=idle_timeout_s)


# --- logs ------------------------------------------------------------------------------------------

def configure_stack_logging(config: StackConfig, *, console: bool) -> Path | None:
    """Logging for a process that runs `config`'s stack (`abrkit serve`): service messages on stderr,
    and the JSON access and audit logs on stderr too with `console`; else in files under
    `<state_dir>/logs/`, the folder it returns (for `start_stack(log_dir=...)`; `log_files` names them)."""
    log_dir = None if console else config.state_dir / "logs"
    if log_dir is None:
        configure_logging("-" if config.access_log else None)
    else:
        configure_logging(log_dir / "access.log" if config.access_log else None, audit_log_to=log_dir / "audit.log")
    return log_dir


def log_files(config: StackConfig) -> list[str]:
    """The files in the log folder of `configure_stack_logging`: one `<service>.log` per service in
    processes mode (each child's stderr), else this process's `access.log` and `audit.log`."""
    return [f"{name}.log" for name in service_names(config)] if config.processes else ["access.log", "audit.log"]


# --- the demo setup --------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True, slots=True)
class Credentials:
    username: str
    password: str = dataclasses.field(repr=False)


def ensure_demo_user(config: StackConfig) -> Credentials:
    """The demo user (entitled to every title) with a generated password kept in the 0600 secrets file,
    created on first use; an existing `demo` user with another password is left alone and gets a new one
    only if the stored password no longer matches.

    Check and creation hold one lock (`.demo-user.lock` beside the stack file): two processes sharing
    a config (two test workers, two `abrkit play demo`) would otherwise both make a user, and the first
    one's password would no longer log in."""
    from server.passwords import verify_password
    secrets_path = config.resolved_secrets_path
    with file_lock(config.config_path.with_name(".demo-user")):
        stored = load_or_create_secrets(secrets_path).demo_password
        users = read_users(config.config_path) if config.config_path.exists() else {}
        current = users.get(DEMO_USERNAME)
        if stored and current and verify_password(current.password_hash, stored):
            return Credentials(username=DEMO_USERNAME, password=stored)
        password = _secrets.token_urlsafe(12)
        record = UserRecord(username=DEMO_USERNAME, password_hash=hash_password(password), titles=("*",))
        update_users(config.config_path, lambda u: u.__setitem__(DEMO_USERNAME, record))
        store_demo_password(secrets_path, password)
    return Credentials(username=DEMO_USERNAME, password=password)


def ensure_demo_title(content_root: Path, *, progress: bool = False) -> Path:
    """The demo title's directory under `content_root`, packaged on first use and cached after.

    Here so that the player's demos and QoE runs, which may start a local stack, need not import
    the packager (or PyAV, which it loads only for this call); see tests/test_import_rules.py.
    """
    from server.packager import ensure_demo_title as package_demo_title

    return package_demo_title(content_root, progress=progress)


def init_stack_config(config: StackConfig) -> None:
    """Write the stack file if it does not exist yet, and make sure the secrets and the revocation store exist."""
    if not config.config_path.exists():
        save_stack_config(config)
    load_or_create_secrets(config.resolved_secrets_path)
    create_store(config.resolved_revocations_path)


def stored_demo_password(config: StackConfig) -> str | None:
    """The demo user's generated password kept in the secrets file (None if there is none)."""
    path = config.resolved_secrets_path
    return load_secrets(path).demo_password if path.exists() else None


# --- running services ------------------------------------------------------------------------------

class _Service(Protocol):
    name: str
    url: str

    async def start(self, sock: socket.socket) -> None: ...
    async def stop(self) -> None: ...
    async def kill(self) -> None: ...
    def alive(self) -> bool: ...


class _EmbeddedService:
    """A service as an aiohttp site in this event loop."""

    def __init__(self, name: str, url: str, app_factory: Any, shutdown_timeout_s: float) -> None:
        self.name, self.url = name, url
        self._factory = app_factory
        self._shutdown_timeout_s = shutdown_timeout_s
        self._runner: web.AppRunner | None = None

    async def start(self, sock: socket.socket) -> None:
        runner = make_runner(self.name, self._factory(), self._shutdown_timeout_s)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        self._runner = runner

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def kill(self) -> None:
        # One process cannot SIGKILL a part of itself: the nearest is closing its site and connections.
        await self.stop()

    def alive(self) -> bool:
        return self._runner is not None


class _SupervisedService:
    """A service as a child process (`python -m server.run`) handed its listening socket, watched by
    the stack's `Supervisor`: started again if it dies unasked, left down after `stop`/`kill`."""

    def __init__(self, name: str, url: str, supervisor: Supervisor, argv: list[str], host: str, port: int,
                 secrets: ServiceSecrets, log_path: Path | None = None) -> None:
        self.name, self.url = name, url
        self.log_path = log_path  # the child's stderr (its logs) is appended here; None: inherited
        self._supervisor = supervisor
        self._host, self._port = host, port
        self._next_socket: socket.socket | None = None
        stdin = json.dumps(secrets.to_json()).encode()  # its secrets, never on a command line or in its environment
        supervisor.add(name, subprocess_launcher(name, [*argv, "--secrets-stdin"], listen=self._listen,
                                                 log_path=log_path, stdin_data=stdin))

    def _listen(self) -> socket.socket:
        """The socket given to `start`, else (a restart) a new one on the same port."""
        sock, self._next_socket = self._next_socket, None
        return sock if sock is not None else bind_socket(self._host, self._port)

    async def start(self, sock: socket.socket) -> None:
        self._next_socket = sock
        try:
            await self._supervisor.start(self.name)
        finally:
            self._next_socket = None

    async def stop(self) -> None:
        await self._supervisor.stop(self.name)

    async def kill(self) -> None:
        await self._supervisor.kill(self.name)

    def alive(self) -> bool:
        return self._supervisor.alive(self.name)

    @property
    def pid(self) -> int | None:
        return self._supervisor.pid(self.name)

    @property
    def restarts(self) -> int:
        return self._supervisor.restarts(self.name)


def process_argv(name: str, config: StackConfig, ports: Mapping[str, int]) -> list[str]:
    """The command line of a service's process (without `--fd`)."""
    return [sys.executable, "-m", "server.run", name, "--config", str(config.config_path),
            "--stack-json", json.dumps(stack_config_to_json(config), separators=(",", ":")),
            "--ports", json.dumps(dict(ports), separators=(",", ":"))]


class RunningStack:
    """A started stack. URLs are `http://host:port` without a trailing slash."""

    def __init__(self, config: StackConfig, services: dict[str, _Service], ports: dict[str, int]) -> None:
        self.config = config
        self.ports = ports
        self._services = services
        self._http: aiohttp.ClientSession | None = None

    def url(self, name: str) -> str:
        return self._services[name].url

    @property
    def gateway_url(self) -> str:
        return self.url("gateway")

    @property
    def origin_url(self) -> str:
        return self.url("origin")

    @property
    def auth_url(self) -> str:
        return self.url("auth")

    @property
    def playback_url(self) -> str:
        return self.url("playback")

    @property
    def license_service_url(self) -> str:
        return self.url("license")

    @property
    def license_url(self) -> str:
        """What clients POST license requests to (through the gateway); also the MPD's Laurl."""
        return self.gateway_url + "/license"

    @property
    def edge_urls(self) -> list[str]:
        return [self.url(f"edge-{i}") for i in range(self.config.edges)]

    @property
    def service_names(self) -> list[str]:
        return list(self._services)

    def log_path(self, name: str) -> Path | None:
        """The file a service's log (stderr) goes to: processes mode with `start_stack(log_dir=...)` only."""
        service = self._services[name]
        return service.log_path if isinstance(service, _SupervisedService) else None

    def pid(self, name: str) -> int | None:
        """The process id of a service in processes mode (None when embedded)."""
        service = self._services[name]
        return service.pid if isinstance(service, _SupervisedService) else None

    def restarts(self, name: str) -> int:
        """How often the supervisor started `name` again after it died unasked (processes mode)."""
        service = self._services[name]
        return service.restarts if isinstance(service, _SupervisedService) else 0

    def alive(self, name: str) -> bool:
        return self._services[name].alive()

    # -- what a client of the stack's internals needs (the chaos runner, tests) --

    @functools.cached_property
    def _secrets(self) -> Secrets:
        return load_secrets(self.config.resolved_secrets_path)

    def internal_headers(self) -> dict[str, str]:
        """The header that opens the internal services and every `/internal/*` endpoint (faults,
        pre-positioning, the edge list): the stack's internal credential."""
        return internal_headers(self._secrets.internal_token)

    def signed_url(self, service: str, title: str, relative: str, *, session_id: str, ttl_s: int = 3600,
                   subject: str = "stack", family: str = "stack") -> str:
        """`service`'s URL for `/<title>/<relative>`, signed as the playback API signs it, valid `ttl_s`."""
        now = time.time()
        grant = UrlGrant(path_prefix=f"/{title}/", expires_at=int(now) + ttl_s, session_id=session_id,
                         subject=subject, family=family, issued_at=round(now, 3))
        return self.url(service) + signed_path(sign(self._secrets.url_signing_key, grant), f"/{title}/{relative}")

    def fault_url(self, service: str) -> str:
        """Where to POST (set), GET (read) or DELETE (clear) a fault on an edge (docs/CHAOS.md)."""
        return self.url(service) + FAULTS_PATH

    async def kill_service(self, name: str) -> None:
        """Stop `name` abruptly: SIGKILL in processes mode; embedded, the same as `stop_service`.
        Either way it stays down (the supervisor does not restart it) until `start_service`."""
        await self._services[name].kill()

    async def stop_service(self, name: str) -> None:
        """Stop `name` gracefully (in-flight requests finish)."""
        await self._services[name].stop()

    async def start_service(self, name: str) -> None:
        """Start `name` again on its old port (after `kill_service`/`stop_service`)."""
        service = self._services[name]
        if service.alive():
            return
        sock = bind_socket(bind_host(self.config, name), self.ports[name])
        try:
            await service.start(sock)
        finally:
            if isinstance(service, _SupervisedService):
                sock.close()

    def edge_services(self, region: str | None = None) -> dict[str, str]:
        """Edge service name -> edge id (the regions file's, else the service name), of `region` only if given."""
        regions = stack_regions(self.config)
        sites = regions.edges if regions is not None else ()
        return {f"edge-{i}": sites[i].edge_id if sites else f"edge-{i}" for i in range(self.config.edges)
                if region is None or (sites and sites[i].region == region)}

    async def kill_edge(self, index: int) -> None:
        await self.kill_service(f"edge-{index}")

    async def restart_edge(self, index: int) -> None:
        await self.start_service(f"edge-{index}")

    async def live_edges(self) -> list[str]:
        """URLs of the edges the playback API currently ranks (its `/internal/edges`)."""
        assert self._http is not None
        async with self._http.get(self.playback_url + "/internal/edges", headers=self.internal_headers()) as resp:
            body = await resp.json()
        return [e["url"] for e in body["edges"] if e["live"]]

    async def wait_for_edges(self, count: int | None = None, *, timeout_s: float = 30.0) -> list[str]:
        """Wait until the playback API ranks `count` (default: all) edges; returns their URLs."""
        want = self.config.edges if count is None else count
        deadline = time.monotonic() + timeout_s
        while True:
            live = await self.live_edges()
            if len(live) >= want:
                return live
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(live)} of {want} edges reported healthy within {timeout_s} s")
            await asyncio.sleep(min(0.05, self.config.heartbeat_s / 4))

    async def _open(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5.0))

    async def close(self) -> None:
        """Graceful shutdown: the gateway first, the origin last."""
        for name in reversed(list(self._services)):
            try:
                await self._services[name].stop()
            except Exception:  # keep stopping the others; say which one failed
                log.exception("stopping %s failed", name)
        if self._http is not None:
            await self._http.close()


@contextlib.asynccontextmanager
async def start_stack(config: StackConfig, *, wait_for_edges: bool = True,
                      log_dir: Path | None = None) -> AsyncIterator[RunningStack]:
    """Start every service of `config` (embedded or one process each) and stop them all on exit.

    The stack file `config.config_path` must exist (it holds the users; `init_stack_config` writes
    one); the secrets file and the revocation store are created if missing. On entry the playback API already ranks every
    edge (unless `wait_for_edges=False`). In processes mode a supervisor (server/supervisor.py)
    starts a service that dies unasked again, and with `log_dir` each service's log (stderr: its
    messages, JSON access and audit lines) is appended to `log_dir/<name>.log`.
    """
    init_stack_config(config)
    config = with_regions(config)
    if config.live_title is not None and config.live_start_s is None:
        # One availabilityStartTime for every service process, and for any of them restarted.
        config = dataclasses.replace(config, live_start_s=float(math.floor(time.time())))
    secrets = load_secrets(config.resolved_secrets_path)
    names = service_names(config)
    service_secrets = {name: secrets_for(service_kind(name), secrets) for name in names}
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
    sockets: dict[str, socket.socket] = {}
    try:
        for name in names:
            sockets[name] = bind_socket(bind_host(config, name), requested_port(config, name))
        ports = {name: sock.getsockname()[1] for name, sock in sockets.items()}
        services: dict[str, _Service] = {}
        supervisor = Supervisor(stop_timeout_s=config.shutdown_timeout_s + 5.0)
        for name in names:
            url = f"http://{url_host(bind_host(config, name))}:{ports[name]}"
            if config.processes:
                services[name] = _SupervisedService(name, url, supervisor, process_argv(name, config, ports),
                                                    bind_host(config, name), ports[name], service_secrets[name],
                                                    log_dir / f"{name}.log" if log_dir is not None else None)
            else:
                services[name] = _EmbeddedService(
                    name, url, lambda name=name: build_app(name, config, ports, service_secrets[name]),
                    config.shutdown_timeout_s)
        stack = RunningStack(config, services, ports)
        await stack._open()
        try:
            if config.processes:
                await start_together([services[n].start(sockets[n]) for n in names])
                for sock in sockets.values():  # the children hold them now; a dead child must refuse connections
                    sock.close()
            else:
                for name in names:
                    await services[name].start(sockets[name])
            if wait_for_edges and config.edges:
                await stack.wait_for_edges(timeout_s=max(10.0, 5 * config.heartbeat_s))
            yield stack
        finally:
            await stack.close()
    finally:
        for sock in sockets.values():
            sock.close()


@contextlib.asynccontextmanager
async def start_stack_with_demo_user(config: StackConfig, *, wait_for_edges: bool = True,
                                     log_dir: Path | None = None) -> AsyncIterator[tuple[RunningStack, Credentials]]:
    """`start_stack` on `config` after writing its stack file if missing (`init_stack_config`) and making
    sure the demo user exists (`ensure_demo_user`): (running stack, demo credentials)."""
    init_stack_config(config)
    credentials = ensure_demo_user(config)
    async with start_stack(config, wait_for_edges=wait_for_edges, log_dir=log_dir) as stack:
        yield stack, credentials
