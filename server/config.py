"""Configuration of the server stack: one frozen config per service, the stack's JSON file.

The stack file (`stack.json`, see docs/SERVER.md) says how to run the stack and holds the users
(server/users.py); private files are written atomically with mode 0600 under a lock. Keys live
apart, in a secrets file created on first run (server/keys.py), never with a built-in default.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from yarl import URL

from server.privatefiles import file_lock, read_json_object, write_private
from server.regions import RegionsConfig

DEFAULT_HOST = "127.0.0.1"
# The services write their JSON access logs in batches, at least this often (server/accesslog.py):
# a reader of the log files waits a little longer than this after the requests it looks for.
ACCESS_LOG_FLUSH_INTERVAL_S = 1.0
DEFAULT_PORT = 8000
SECRETS_FILE = "secrets.json"
REVOCATIONS_FILE = "revocations.db"
LEGACY_REVOCATIONS_FILE = "revoked.json"  # the JSON file of earlier versions, imported once
MIN_KEY_BYTES = 32
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
ALL_TITLES = "*"


def _check_port(port: int, what: str) -> None:
    if not 0 <= port <= 65535:
        raise ValueError(f"{what} must be in 0..65535, got {port}")


def _check_heartbeats(missed: int, fail_static: int) -> None:
    """Steering's windows in heartbeats: live within `missed`, fail static within `fail_static` (0: off)."""
    if not 1 <= missed <= 100_000:
        raise ValueError(f"missed_heartbeats must be in [1, 100000], got {missed}")
    if fail_static != 0 and not missed <= fail_static <= 100_000:
        raise ValueError(f"fail_static_heartbeats must be 0 (off) or from missed_heartbeats "
                         f"({missed}) to 100000, got {fail_static}")


def _check_positive(value: float, what: str) -> None:
    if not value > 0:
        raise ValueError(f"{what} must be > 0, got {value}")


def check_origins(origins: tuple[str, ...]) -> None:
    """CORS origins: `*` or `scheme://host[:port]` (what a browser sends as `Origin`); `ValueError` if not."""
    for origin in origins:
        if origin != "*" and not re.match(r"^https?://[^/\s]+$", origin):
            raise ValueError(f"allowed origin must be '*' or scheme://host[:port], got {origin!r}")


def _check_url(url: str, what: str) -> None:
    if not re.match(r"^https?://[^/\s]+(/\S*)?$", url):
        raise ValueError(f"{what} must be an http(s) URL, got {url!r}")


# --- tokens ----------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True, slots=True)
class TokenPolicy:
    """How access and refresh tokens (JWT, EdDSA over Ed25519) are checked, by every service that
    verifies them; only auth also holds the signing key (`AuthConfig.signing_key`).

    `revocations_path` is the revocation store (server/revocation.py) a verifier consults; None: this
    verifier checks signatures and claims only (the gateway, which services behind it re-check).
    """

    verify_key: bytes  # Ed25519 public key, 32 raw bytes
    issuer: str = "abrkit-auth"
    audience: str = "abrkit"
    leeway_s: float = 5.0
    access_ttl_s: int = 900
    refresh_ttl_s: int = 86_400
    revocations_path: Path | None = None

    def __post_init__(self) -> None:
        if len(self.verify_key) != 32:
            raise ValueError("token verify_key must be a 32-byte Ed25519 public key")
        if not self.issuer or not self.audience:
            raise ValueError("token issuer and audience must not be empty")
        if not 0 <= self.leeway_s <= 300:
            raise ValueError(f"leeway_s must be in 0..300, got {self.leeway_s}")
        _check_positive(self.access_ttl_s, "access_ttl_s")
        _check_positive(self.refresh_ttl_s, "refresh_ttl_s")


def _check_internal_token(token: bytes | None) -> None:
    if token is not None and len(token) < MIN_KEY_BYTES:
        raise ValueError(f"internal_token must be at least {MIN_KEY_BYTES} bytes")


# --- per-service configs ---------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True, slots=True)
class PasswordPolicy:
    """scrypt cost for new password hashes: OWASP Password Storage Cheat Sheet (2024) lists N=2^17,
    r=8, p=1 and equal-cost trade-offs; N=2^14, r=8, p=5 is one of them, at 16 MiB a hash. A stored hash
    with other parameters is re-hashed with these at the user's next successful login."""

    n: int = 2**14
    r: int = 8
    p: int = 5

    def __post_init__(self) -> None:
        if self.n < 2 or self.n & (self.n - 1) or self.r < 1 or self.p < 1:
            raise ValueError("scrypt needs n a power of two >= 2, r >= 1 and p >= 1")
        if 128 * self.n * self.r > 256 * 1024 * 1024:
            raise ValueError("scrypt memory (128 * n * r) must stay under 256 MiB")


@dataclass(frozen=True, kw_only=True, slots=True)
class LoginBackoff:
    """Per-username failure backoff: after `free_failures` wrong passwords in a row a username waits
    `base_s`, doubling with each further failure up to `max_s`, before its next attempt is checked
    (429 until then). A success resets it; unknown usernames are tracked alike."""

    free_failures: int = 5
    base_s: float = 1.0
    max_s: float = 300.0
    max_usernames: int = 100_000

    def __post_init__(self) -> None:
        if self.free_failures < 0 or self.max_usernames < 1:
            raise ValueError("free_failures must be >= 0 and max_usernames >= 1")
        _check_positive(self.base_s, "base_s")
        if self.max_s < self.base_s:
            raise ValueError("max_s must be >= base_s")


@dataclass(frozen=True, kw_only=True, slots=True)
class AuthConfig:
    """The auth service: users come from the `users` section of `users_path` (reloaded on change)."""

    host: str = DEFAULT_HOST
    port: int = 0
    users_path: Path
    tokens: TokenPolicy
    signing_key: bytes = field(repr=False)  # Ed25519 seed of `tokens.verify_key`
    internal_token: bytes | None = field(default=None, repr=False)  # None: no internal credential asked
    allowed_origins: tuple[str, ...] = ()
    max_body_bytes: int = 8192
    # scrypt uses 16 MiB and a core for ~0.1-0.3 s per hash: bound both (more than the cores only slows each)
    max_concurrent_hashes: int = field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)))
    answer_within_s: float = 4.0  # a login that could not be checked by then is 503: keep under the gateway's timeout
    passwords: PasswordPolicy = PasswordPolicy()
    backoff: LoginBackoff = LoginBackoff()

    def __post_init__(self) -> None:
        _check_port(self.port, "port")
        check_origins(self.allowed_origins)
        _check_positive(self.max_body_bytes, "max_body_bytes")
        _check_positive(self.max_concurrent_hashes, "max_concurrent_hashes")
        _check_positive(self.answer_within_s, "answer_within_s")
        _check_internal_token(self.internal_token)
        if self.tokens.revocations_path is None:
            raise ValueError("auth needs a revocation store (tokens.revocations_path)")
        if len(self.signing_key) != 32:
            raise ValueError("signing_key must be a 32-byte Ed25519 private key")


@dataclass(frozen=True, kw_only=True, slots=True)
class SteeringWeights:
    """How the playback API ranks edges: lower cost first.

    cost = affinity_weight * (rendezvous rank of the edge for the title) + load_weight * load
           - cached_bonus (if the edge reports the title cached)
    """

    affinity_weight: float = 1.0
    load_weight: float = 0.1  # 10 more active requests outweigh one rank of affinity
    cached_bonus: float = 0.5

    def __post_init__(self) -> None:
        for name in ("affinity_weight", "load_weight", "cached_bonus"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")


DEFAULT_URL_TTL_S = 300  # signed segment URLs: players renew them as they play (docs/SERVER.md)


@dataclass(frozen=True, kw_only=True, slots=True)
class PlaybackConfig:
    """The playback (steering) API; it alone signs segment URLs."""

    host: str = DEFAULT_HOST
    port: int = 0
    content_root: Path
    tokens: TokenPolicy
    url_signing_key: bytes = field(repr=False)  # Ed25519 seed
    license_url: str
    internal_token: bytes | None = field(default=None, repr=False)
    url_ttl_s: int = DEFAULT_URL_TTL_S
    heartbeat_s: float = 1.0
    missed_heartbeats: int = 2  # an edge silent for this many intervals leaves the ranking
    # Fail static: when no edge is live, steer to the edges whose last report (healthy) came within this
    # many intervals rather than refuse every session: then the heartbeats are late, not every edge
    # down (a loaded machine, a busy steering API); 0 refuses at once (server/playback.py, docs/SERVER.md).
    fail_static_heartbeats: int = 30
    weights: SteeringWeights = SteeringWeights()
    allowed_origins: tuple[str, ...] = ()
    max_edges: int = 1024
    live_titles: Mapping[str, str] = field(default_factory=dict)  # live channel -> the title it loops
    regions: RegionsConfig | None = None  # None: no geography, every client ranked alike (server/regions.py)

    def __post_init__(self) -> None:
        _check_port(self.port, "port")
        if len(self.url_signing_key) != 32:
            raise ValueError("url_signing_key must be a 32-byte Ed25519 private key")
        _check_url(self.license_url, "license_url")
        _check_positive(self.url_ttl_s, "url_ttl_s")
        _check_positive(self.heartbeat_s, "heartbeat_s")
        _check_heartbeats(self.missed_heartbeats, self.fail_static_heartbeats)
        check_origins(self.allowed_origins)
        _check_positive(self.max_edges, "max_edges")
        _check_internal_token(self.internal_token)


@dataclass(frozen=True, kw_only=True, slots=True)
class LicenseConfig:
    """The ClearKey license service: reads `<content_root>/<title>/keys.json`."""

    host: str = DEFAULT_HOST
    port: int = 0
    content_root: Path
    tokens: TokenPolicy
    internal_token: bytes | None = field(default=None, repr=False)
    allowed_origins: tuple[str, ...] = ()
    max_body_bytes: int = 16 * 1024
    max_kids: int = 64
    rescan_interval_s: float = 1.0  # an unknown KID re-reads the key stores at most this often
    live_titles: Mapping[str, str] = field(default_factory=dict)  # live channel -> the title it loops

    def __post_init__(self) -> None:
        _check_port(self.port, "port")
        check_origins(self.allowed_origins)
        _check_positive(self.max_body_bytes, "max_body_bytes")
        if not 1 <= self.max_kids <= 10_000:
            raise ValueError(f"max_kids must be in 1..10000, got {self.max_kids}")
        if self.rescan_interval_s < 0:
            raise ValueError("rescan_interval_s must be >= 0")
        _check_internal_token(self.internal_token)


_EDGE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


@dataclass(frozen=True, kw_only=True, slots=True)
class EdgeConfig:
    """One edge cache. Sizes in bytes, durations in seconds; `origin_url` is its only upstream.

    `url_verify_key` checks segment URLs (it cannot sign them); `internal_token` is presented to the
    origin and to steering and opens this edge's `/internal/*` (None: those stay closed);
    `revocations_path` is the store whose revoked sessions it refuses (None: no revocation checks),
    re-checked per URL token every `revocation_recheck_s`.
    """

    edge_id: str
    origin_url: str
    url_verify_key: bytes
    internal_token: bytes | None = field(default=None, repr=False)
    revocations_path: Path | None = None
    revocation_recheck_s: float = 1.0
    host: str = "127.0.0.1"
    port: int = 0
    cache_bytes: int = 512 * 1024 * 1024
    license_url: str | None = None
    steering_url: str | None = None
    heartbeat_s: float = 1.0
    public_url: str | None = None
    allowed_origins: tuple[str, ...] = ()
    origin_timeout_s: float = 10.0
    max_object_bytes: int = 64 * 1024 * 1024
    require_signature: bool = True
    workers: int = 1
    mpd_max_age_s: int = 2
    default_ttl_s: float = 24 * 3600.0
    preposition_concurrency: int = 8
    live_channels: tuple[str, ...] = ()  # titles that are live channels (server/edgelive.py)
    live_coalescing: bool = True  # one origin fetch per live object in flight (off: bench reference)
    live_manifest_max_age_s: float = 1.0  # the longest a live manifest or playlist is kept
    # The live channels' clock (server.live.channel.LiveConfig.speed / clock_origin_s): `/time` runs
    # K times faster from that wall time, as the origin's channel does.
    live_speed: float = 1.0
    live_clock_origin_s: float = 0.0
    # Emulation only: honour X-Abrkit-Channel-Lag (server/edgelive.py; docs/LIVE-EMULATION.md, "The stack's time
    # in live emulation"). Off: the header is ignored.
    live_player_clocks: bool = False
    rtt_ms: Mapping[str, float] = field(default_factory=dict)  # emulated RTT to each client region (regions.py)

    def __post_init__(self) -> None:
        if not _EDGE_ID.match(self.edge_id):
            raise ValueError(f"edge_id must be 1-64 characters of [A-Za-z0-9._:-], got {self.edge_id!r}")
        object.__setattr__(self, "origin_url", _base_url("origin_url", self.origin_url))
        if len(self.url_verify_key) != 32:
            raise ValueError("url_verify_key must be a 32-byte Ed25519 public key")
        _check_internal_token(self.internal_token)
        if not 0 < self.revocation_recheck_s <= 60:
            raise ValueError(f"revocation_recheck_s must be in (0, 60], got {self.revocation_recheck_s}")
        if not self.host:
            raise ValueError("host must not be empty")
        if not (0 <= self.port <= 65535):
            raise ValueError(f"port must be in [0, 65535], got {self.port}")
        if self.cache_bytes < 0:
            raise ValueError(f"cache_bytes must be >= 0, got {self.cache_bytes}")
        if self.license_url is not None and not self.license_url.strip():
            raise ValueError("license_url must not be empty (use None for no license URL)")
        if self.steering_url is not None:
            object.__setattr__(self, "steering_url", _base_url("steering_url", self.steering_url))
        if self.public_url is not None:
            object.__setattr__(self, "public_url", _base_url("public_url", self.public_url))
        if not (0.01 <= self.heartbeat_s <= 3600):
            raise ValueError(f"heartbeat_s must be in [0.01, 3600], got {self.heartbeat_s}")
        object.__setattr__(self, "allowed_origins", tuple(self.allowed_origins))
        check_origins(self.allowed_origins)
        if not (0 < self.origin_timeout_s <= 600):
            raise ValueError(f"origin_timeout_s must be in (0, 600], got {self.origin_timeout_s}")
        if self.max_object_bytes <= 0:
            raise ValueError(f"max_object_bytes must be > 0, got {self.max_object_bytes}")
        if not (1 <= self.workers <= 64):
            raise ValueError(f"workers must be in [1, 64], got {self.workers}")
        if not (0 <= self.mpd_max_age_s <= 3600):
            raise ValueError(f"mpd_max_age_s must be in [0, 3600], got {self.mpd_max_age_s}")
        if self.default_ttl_s < 0:
            raise ValueError(f"default_ttl_s must be >= 0, got {self.default_ttl_s}")
        if not (1 <= self.preposition_concurrency <= 256):
            raise ValueError(f"preposition_concurrency must be in [1, 256], got {self.preposition_concurrency}")
        object.__setattr__(self, "live_channels", tuple(self.live_channels))
        if not 0 <= self.live_manifest_max_age_s <= 60:
            raise ValueError(f"live_manifest_max_age_s must be in [0, 60], got {self.live_manifest_max_age_s}")
        if not (math.isfinite(self.live_speed) and 0.01 <= self.live_speed <= 1000):
            raise ValueError(f"live_speed must be in [0.01, 1000], got {self.live_speed}")
        if not (math.isfinite(self.live_clock_origin_s) and self.live_clock_origin_s >= 0):
            raise ValueError(f"live_clock_origin_s must be a unix time >= 0, got {self.live_clock_origin_s}")
        if not all(0 <= ms <= 10_000 for ms in self.rtt_ms.values()):
            raise ValueError(f"rtt_ms values must be in [0, 10000] milliseconds, got {dict(self.rtt_ms)}")


def _base_url(name: str, value: str) -> str:
    """`value` without a trailing slash, if it is an http(s) URL fit to build request URLs on."""
    url = URL(value)
    if url.scheme not in ("http", "https") or not url.host or url.user or url.query_string or url.fragment:
        raise ValueError(f"{name} must be an http(s) URL with a host and no credentials, query or fragment, "
                         f"got {value!r}")
    return str(url).rstrip("/")


@dataclass(frozen=True, kw_only=True, slots=True)
class BackendPolicy:
    """Isolation of one gateway backend: timeout, circuit breaker and bulkhead.

    `reserved_for_running` of the bulkhead's slots serve only requests that keep a running session
    alive (refresh, URL renewal, licenses): requests that start a new session are shed first.
    """

    timeout_s: float = 5.0
    failure_threshold: int = 5  # consecutive failures or timeouts that open the breaker
    reset_timeout_s: float = 5.0  # open -> half-open after this cool-down
    max_concurrent: int = 64  # bulkhead: more in flight get 503 at once
    reserved_for_running: float = 0.25

    def __post_init__(self) -> None:
        _check_positive(self.timeout_s, "timeout_s")
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        _check_positive(self.reset_timeout_s, "reset_timeout_s")
        if self.max_concurrent < 1:
            raise ValueError("max_concurrent must be >= 1")
        if not 0 <= self.reserved_for_running < 1:
            raise ValueError(f"reserved_for_running must be in [0, 1), got {self.reserved_for_running}")


@dataclass(frozen=True, kw_only=True, slots=True)
class RateLimitPolicy:
    """Per-client token bucket: `rate_per_s` sustained, `burst` at once; client = token subject or IP."""

    rate_per_s: float = 20.0
    burst: int = 40
    max_clients: int = 100_000  # idle buckets beyond this are forgotten (oldest first)

    def __post_init__(self) -> None:
        _check_positive(self.rate_per_s, "rate_per_s")
        if self.burst < 1:
            raise ValueError("burst must be >= 1")
        if self.max_clients < 1:
            raise ValueError("max_clients must be >= 1")


# Password logins per client address: one every 2 s, 5 at once, a small share of what scrypt can check
# (a few hashes a second per core at OWASP's cost), so one guessing client cannot slow everyone's logins.
DEFAULT_LOGIN_RATE = RateLimitPolicy(rate_per_s=0.5, burst=5)


@dataclass(frozen=True, kw_only=True, slots=True)
class BackendConfig:
    """One gateway route: requests under `prefix` go to `url` (same path). A request matching one of
    `new_session_routes` (`"METHOD regex"` on the path) starts a new session: it is shed first."""

    name: str
    url: str
    prefix: str
    requires_token: bool
    policy: BackendPolicy = BackendPolicy()
    new_session_routes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_url(self.url, f"backend {self.name} url")
        if not self.prefix.startswith("/") or self.prefix.endswith("/"):
            raise ValueError(f"backend prefix must start and not end with '/', got {self.prefix!r}")
        if self.prefix.startswith("/internal"):
            raise ValueError("/internal is never routed through the gateway")
        for route in self.new_session_routes:
            method, _, pattern = route.partition(" ")
            if not method.isupper() or not pattern:
                raise ValueError(f"a new-session route is 'METHOD regex', got {route!r}")
            re.compile(pattern)


@dataclass(frozen=True, kw_only=True, slots=True)
class GatewayConfig:
    """The API gateway.

    `trusted_proxies`: addresses or networks (CIDR) of proxies in front of the gateway (a TLS
    terminator) whose `X-Forwarded-For` names the client; from anyone else it is ignored.
    """

    host: str = DEFAULT_HOST
    port: int = 0
    backends: tuple[BackendConfig, ...]
    tokens: TokenPolicy
    internal_token: bytes | None = field(default=None, repr=False)  # presented to every backend
    rate_limit: RateLimitPolicy = RateLimitPolicy()
    login_rate_limit: RateLimitPolicy = DEFAULT_LOGIN_RATE  # POST {auth prefix}/token, per client IP
    max_concurrent_per_client: int = 16
    client_body_timeout_s: float = 10.0  # the whole request body, buffered before any backend sees it
    max_body_bytes: int = 64 * 1024
    allowed_origins: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_port(self.port, "port")
        check_origins(self.allowed_origins)
        _check_positive(self.max_body_bytes, "max_body_bytes")
        _check_positive(self.client_body_timeout_s, "client_body_timeout_s")
        if self.max_concurrent_per_client < 1:
            raise ValueError("max_concurrent_per_client must be >= 1")
        _check_internal_token(self.internal_token)
        check_networks(self.trusted_proxies)
        names = [b.name for b in self.backends]
        if len(set(names)) != len(names):
            raise ValueError(f"backend names must be unique: {names}")


def check_networks(networks: tuple[str, ...]) -> None:
    """Each an IP address or a CIDR network; `ValueError` naming the first that is not."""
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ValueError(f"trusted proxy must be an IP address or CIDR network, got {network!r}") from None


# --- the stack -------------------------------------------------------------------------------------

SERVICES = ("origin", "edge", "auth", "playback", "license", "gateway")


@dataclass(frozen=True, kw_only=True, slots=True)
class StackConfig:
    """Everything `abrkit serve` needs; saved as the JSON stack file `config_path` (users live there too).

    Relative paths in the file are relative to the file's folder. `secrets_path` and
    `revocations_path` default to files beside the stack file. `host` is where the gateway and the
    edges listen (what clients reach); origin, auth, playback and license listen on `internal_host`.
    """

    config_path: Path
    content_root: Path
    host: str = DEFAULT_HOST
    internal_host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT  # the gateway; 0 = any free port
    service_ports: Mapping[str, int] = field(default_factory=dict)  # e.g. {"origin": 8001}; 0/absent = free port
    edges: int = 2
    processes: bool = False
    allowed_origins: tuple[str, ...] = ()
    edge_cache_bytes: int = 256 * 1024 * 1024
    heartbeat_s: float = 1.0
    missed_heartbeats: int = 2  # steering: an edge silent this many intervals leaves the ranking (PlaybackConfig)
    fail_static_heartbeats: int = 30  # steering: with none live, edges heard healthy within this many (0: off)
    access_ttl_s: int = 900
    refresh_ttl_s: int = 86_400
    url_ttl_s: int = DEFAULT_URL_TTL_S
    rate_limit: RateLimitPolicy = RateLimitPolicy()
    login_rate_limit: RateLimitPolicy = DEFAULT_LOGIN_RATE
    max_concurrent_per_client: int = 16  # requests in flight per client at the gateway
    trusted_proxies: tuple[str, ...] = ()
    backend_policy: BackendPolicy = BackendPolicy()
    backend_overrides: Mapping[str, BackendPolicy] = field(default_factory=dict)  # by backend name
    shutdown_timeout_s: float = 10.0
    access_log: bool = True  # one JSON line per request (`abrkit serve`: in <state_dir>/logs/ or on the console)
    secrets_path: Path | None = None
    revocations_path: Path | None = None
    live_title: str | None = None  # a live channel looping this packaged title (docs/LIVE-SERVER.md); None: no live
    live_channel: str = "live"  # the live channel's name in URLs and playback requests
    low_latency: bool = False  # publish the live channel as CMAF chunks of live_chunk_s
    live_chunk_s: float = 0.5
    live_start_s: float | None = None  # its availabilityStartTime (unix s); None: when the stack starts
    live_speed: float = 1.0  # the channel's clock runs K times faster from live_start_s (time-warped runs)
    # Emulation only (`abrkit run --live`): the origin and edges answer a player on its own clock when
    # it says how far that runs behind the channel's (X-Abrkit-Channel-Lag; docs/LIVE-EMULATION.md).
    live_player_clocks: bool = False
    regions_path: Path | None = None  # regions, edges and client networks (server/regions.py): replaces `edges`

    def __post_init__(self) -> None:
        _check_port(self.port, "port")
        if self.live_title is not None and self.live_title == self.live_channel:
            raise ValueError(f"live_channel {self.live_channel!r} must differ from live_title")
        if not (math.isfinite(self.live_speed) and 0.01 <= self.live_speed <= 1000):
            raise ValueError(f"live_speed must be in [0.01, 1000], got {self.live_speed}")
        for name, port in self.service_ports.items():
            if name not in ("origin", "auth", "playback", "license") and not re.match(r"^edge-\d+$", name):
                raise ValueError(f"service_ports: unknown service {name!r}")
            _check_port(port, f"service_ports[{name}]")
        if not 0 <= self.edges <= 64:
            raise ValueError(f"edges must be in 0..64, got {self.edges}")
        check_origins(self.allowed_origins)
        check_networks(self.trusted_proxies)
        if self.max_concurrent_per_client < 1:
            raise ValueError("max_concurrent_per_client must be >= 1")
        if not self.host or not self.internal_host:
            raise ValueError("host and internal_host must not be empty")
        _check_positive(self.edge_cache_bytes, "edge_cache_bytes")
        _check_positive(self.heartbeat_s, "heartbeat_s")
        _check_heartbeats(self.missed_heartbeats, self.fail_static_heartbeats)
        _check_positive(self.access_ttl_s, "access_ttl_s")
        _check_positive(self.refresh_ttl_s, "refresh_ttl_s")
        _check_positive(self.url_ttl_s, "url_ttl_s")
        _check_positive(self.shutdown_timeout_s, "shutdown_timeout_s")
        for name in self.backend_overrides:
            if name not in ("auth", "playback", "license"):
                raise ValueError(f"backend_overrides: unknown backend {name!r}")

    @property
    def state_dir(self) -> Path:
        return self.config_path.parent

    @property
    def resolved_secrets_path(self) -> Path:
        return self.secrets_path or self.state_dir / SECRETS_FILE

    @property
    def resolved_revocations_path(self) -> Path:
        return self.revocations_path or self.state_dir / REVOCATIONS_FILE

    def policy_for(self, backend: str) -> BackendPolicy:
        return self.backend_overrides.get(backend, self.backend_policy)


_PATH_FIELDS = ("content_root", "secrets_path", "revocations_path", "regions_path")
_NESTED = {"rate_limit": RateLimitPolicy, "login_rate_limit": RateLimitPolicy, "backend_policy": BackendPolicy}


def stack_config_to_json(config: StackConfig) -> dict[str, Any]:
    """The JSON object for the stack file (without `users`)."""
    out: dict[str, Any] = {}
    base = config.config_path.parent
    for f in fields(StackConfig):
        if f.name == "config_path":
            continue
        value = getattr(config, f.name)
        if f.name in _PATH_FIELDS:
            if value is None:
                continue
            value = str(value.relative_to(base)) if value.is_relative_to(base) else str(value)
        elif f.name in _NESTED:
            value = {g.name: getattr(value, g.name) for g in fields(value)}
        elif f.name == "backend_overrides":
            value = {k: {g.name: getattr(v, g.name) for g in fields(v)} for k, v in value.items()}
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Mapping):
            value = dict(value)
        out[f.name] = value
    return out


def stack_config_from_json(data: Mapping[str, Any], config_path: Path) -> StackConfig:
    """Build a `StackConfig` from the stack file's object; unknown keys are an error (typos)."""
    base = config_path.parent
    known = {f.name for f in fields(StackConfig)} - {"config_path"}
    unknown = set(data) - known - {"users"}
    if unknown:
        raise ValueError(f"{config_path}: unknown setting(s) {sorted(unknown)}")
    kwargs: dict[str, Any] = {"config_path": config_path}
    try:
        for name, value in data.items():
            if name == "users":
                continue
            if name in _PATH_FIELDS:
                kwargs[name] = None if value is None else base / Path(str(value)).expanduser()
            elif name in _NESTED:
                kwargs[name] = _NESTED[name](**value)
            elif name == "backend_overrides":
                kwargs[name] = {k: BackendPolicy(**v) for k, v in value.items()}
            elif name in ("allowed_origins", "trusted_proxies"):
                kwargs[name] = tuple(value)
            elif name == "service_ports":
                kwargs[name] = {str(k): int(v) for k, v in value.items()}
            else:
                kwargs[name] = value
        if "content_root" not in kwargs:
            raise ValueError("content_root is required")
        return StackConfig(**kwargs)
    except (TypeError, AttributeError) as exc:
        raise ValueError(f"{config_path}: invalid setting ({exc})") from None


def load_stack_config(path: Path) -> StackConfig:
    path = path.expanduser().resolve()
    if not path.exists():
        raise ValueError(f"no stack config at {path} (create one with `abrkit serve --config {path}`"
                         " and --content, or see docs/SERVER.md)")
    return stack_config_from_json(read_json_object(path), path)


def save_stack_config(config: StackConfig) -> None:
    """Write the stack file (mode 0600: it holds password hashes), keeping its `users` section."""
    path = config.config_path
    with file_lock(path):
        users = read_json_object(path).get("users", {}) if path.exists() else {}
        data = stack_config_to_json(config)
        data["users"] = users
        write_private(path, json.dumps(data, indent=2) + "\n")


def default_config_path() -> Path:
    """`$ABRKIT_CONFIG_DIR/stack.json`, else `$XDG_CONFIG_HOME/abrkit/stack.json` (~/.config)."""
    explicit = os.environ.get("ABRKIT_CONFIG_DIR")
    if explicit:
        return Path(explicit).expanduser() / "stack.json"
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg).expanduser() / "abrkit" / "stack.json"


def default_cache_dir() -> Path:
    """Where packaged demo titles and other caches live: $ABRKIT_CACHE, else $XDG_CACHE_HOME/abrkit,
    else ~/.cache/abrkit."""
    explicit = os.environ.get("ABRKIT_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "abrkit"


def with_overrides(config: StackConfig, **changes: Any) -> StackConfig:
    """`config` with the non-None `changes` applied (CLI flags over the file)."""
    return replace(config, **{k: v for k, v in changes.items() if v is not None})
