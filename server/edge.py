"""Edge cache: a caching reverse proxy in front of one origin, serving signed segment URLs.

`GET|HEAD /s/<token>/<title>/<file>` is verified with `server.urlsign.check_path`, then served from a
byte-bounded LRU (`X-Cache: HIT`) or fetched once from `<origin_url>/<title>/<file>` however many
clients miss at the same time (`X-Cache: MISS`). Range requests (rules in server/httpcache.py), MPD
license-URL rewriting, CMCD (CTA-5004) logging, pre-positioning, `/metrics`, `/healthz` and steering
heartbeats are here too; server/edgeworkers.py runs it on its own, with N worker processes sharing one
port. See docs/EDGE.md.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote
from xml.sax.saxutils import escape as xml_escape

import aiohttp
from aiohttp import web
from yarl import URL

from server.cache import ByteLRU, Coalescer
from server.config import check_origins
from server.content import MANIFEST_NAME, REPRESENTATION_ID_PATTERN, SEGMENTS_NAME, classify, is_valid_title
from server.faults import FaultState, add_fault_routes, fault_middleware
from server.httpapi import CorsPolicy, cors_middleware, json_error
from server.httpcache import RangeNotSatisfiable, etag_matches, if_range_matches, parse_range, ttl_s
from server.observability import (
    REQUEST_ID_HEADER,
    Metrics,
    access_log,
    add_log_fields,
    redact_path,
    request_id,
    request_id_middleware,
    service_runner,
)
from server.packager import LAURL_PLACEHOLDER
from server.urlsign import SIGNED_PREFIX, SignatureError, check_path

INTERNAL_TOKEN_CONTEXT = b"abrkit-edge-internal"
FANOUT_HEADER = "X-Abrkit-Fanout"
MAX_PREPOSITION_OBJECTS = 100_000
_STREAM_CHUNK_BYTES = 256 * 1024
# What a browser player may send to an edge (ranges, revalidation, CMCD) and read from its answers.
_CORS_ALLOW_HEADERS = ("Range", "If-Range", "If-None-Match", "If-Modified-Since", "X-Request-ID")
_CORS_EXPOSE_HEADERS = ("Content-Length", "Content-Range", "Content-Type", "ETag", "Last-Modified", "Cache-Control",
                        "X-Cache", "X-Request-ID", "Retry-After")

_VERIFIED_PATHS_MAX = 16_384
_DIRECT_WRITE_BYTES = 64 * 1024
_EDGE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

log = logging.getLogger("abrkit.edge")


@dataclass(frozen=True, kw_only=True, slots=True)
class EdgeConfig:
    """One edge cache. Sizes in bytes, durations in seconds; `origin_url` is its only upstream."""

    edge_id: str
    origin_url: str
    url_signing_key: bytes
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

    def __post_init__(self) -> None:
        if not _EDGE_ID.match(self.edge_id):
            raise ValueError(f"edge_id must be 1-64 characters of [A-Za-z0-9._:-], got {self.edge_id!r}")
        object.__setattr__(self, "origin_url", _base_url("origin_url", self.origin_url))
        if len(self.url_signing_key) < 16:
            raise ValueError("url_signing_key must be at least 16 bytes")
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


def _base_url(name: str, value: str) -> str:
    url = URL(value)
    if url.scheme not in ("http", "https") or not url.host or url.user or url.query_string or url.fragment:
        raise ValueError(f"{name} must be an http(s) URL with a host and no credentials, query or fragment, "
                         f"got {value!r}")
    return str(url).rstrip("/")


def internal_token(url_signing_key: bytes) -> str:
    """Bearer secret for an edge's `/internal/*` endpoints from a non-loopback peer (derived, so it cannot sign URLs)."""
    mac = hmac.new(url_signing_key, INTERNAL_TOKEN_CONTEXT, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


# --- CMCD (CTA-5004) -------------------------------------------------------------------------------

CMCD_HEADERS = ("CMCD-Object", "CMCD-Request", "CMCD-Session", "CMCD-Status")
# CTA-5004 section 3.3, table 1: the reserved keys and their value types. Other keys are custom
# (they must contain a hyphen) and keep whatever type their value has.
_CMCD_INTEGER_KEYS = frozenset({"br", "bl", "d", "dl", "mtp", "rtp", "tb", "v"})
_CMCD_DECIMAL_KEYS = frozenset({"pr"})
_CMCD_BOOLEAN_KEYS = frozenset({"bs", "su"})
_CMCD_STRING_KEYS = frozenset({"cid", "nor", "nrr", "sid"})
_CMCD_TOKEN_VALUES = {"ot": frozenset({"m", "a", "v", "av", "i", "c", "tt", "k", "o"}),
                      "sf": frozenset({"d", "h", "s", "o"}),
                      "st": frozenset({"v", "l"})}
_CMCD_MAX_STRING_CHARS = {"cid": 64, "sid": 64}
_CMCD_MAX_PAYLOAD_CHARS = 4096
# One `key[=value]` item and its separator: a value is a quoted string (printable ASCII, with `\"` and
# `\\` escaped) or a bare token or number; a key without a value is boolean true.
_CMCD_ITEM = re.compile(r'[ \t]*([a-z0-9][a-z0-9._-]{0,63})'
                        r'(?:=("(?:[ !#-\[\]-~]|\\["\\])*"|[^,\s"\\]+))?[ \t]*(?:(,)|\Z)')
_CMCD_ESCAPE = re.compile(r"\\(.)")
_CMCD_INT = re.compile(r"^-?\d{1,15}$")
_CMCD_DECIMAL = re.compile(r"^-?\d{1,12}(?:\.\d{1,3})?$")

CmcdValue = bool | int | float | str


class CmcdError(ValueError):
    """A CMCD payload that does not follow CTA-5004."""


def parse_cmcd(payload: str) -> dict[str, CmcdValue]:
    """Key/value pairs of one CMCD payload (`br=3200,bs,ot=v,sid="..."`), typed as CTA-5004 says."""
    if len(payload) > _CMCD_MAX_PAYLOAD_CHARS:
        raise CmcdError("CMCD payload too long")
    out: dict[str, CmcdValue] = {}
    pos, end = 0, len(payload)
    while pos < end:
        item = _CMCD_ITEM.match(payload, pos)
        if item is None:
            raise CmcdError(f"malformed CMCD at offset {pos}")
        key, raw, separator = item.groups()
        pos = item.end()
        if separator and pos == end:
            raise CmcdError("trailing ',' in CMCD payload")
        if key in out:
            raise CmcdError(f"duplicate CMCD key {key!r}")
        value: CmcdValue
        quoted = raw is not None and raw[0] == '"'
        if raw is None:
            value = True
        elif quoted:
            value = _CMCD_ESCAPE.sub(r"\1", raw[1:-1])
        else:
            value = _cmcd_bare(raw)
        out[key] = _cmcd_typed(key, value, quoted)
    return out


def _cmcd_bare(text: str) -> CmcdValue:
    if text in ("?1", "true"):
        return True
    if text in ("?0", "false"):
        return False
    if _CMCD_INT.match(text):
        return int(text)
    if _CMCD_DECIMAL.match(text):
        return float(text)
    return text


def _cmcd_typed(key: str, value: CmcdValue, quoted: bool) -> CmcdValue:
    if key in _CMCD_INTEGER_KEYS:
        if type(value) is not int:
            raise CmcdError(f"CMCD key {key!r} must be an integer")
    elif key in _CMCD_DECIMAL_KEYS:
        if type(value) not in (int, float):
            raise CmcdError(f"CMCD key {key!r} must be a decimal")
        value = float(value)
    elif key in _CMCD_BOOLEAN_KEYS:
        if type(value) is not bool:
            raise CmcdError(f"CMCD key {key!r} is a boolean (sent bare when true)")
    elif key in _CMCD_STRING_KEYS:
        if not quoted:
            raise CmcdError(f"CMCD key {key!r} must be a quoted string")
        if len(value) > _CMCD_MAX_STRING_CHARS.get(key, 1024):
            raise CmcdError(f"CMCD key {key!r} is too long")
        if key == "nor":
            value = redact_path(value)
    elif key in _CMCD_TOKEN_VALUES:
        if quoted or value not in _CMCD_TOKEN_VALUES[key]:
            raise CmcdError(f"CMCD key {key!r} has an unknown token")
    elif "-" not in key:
        raise CmcdError(f"unknown CMCD key {key!r} (custom keys contain a hyphen)")
    return value


def cmcd_from_request(request: web.BaseRequest) -> tuple[dict[str, CmcdValue], str | None] | None:
    """CMCD sent with a request (query parameter `CMCD` and/or the four headers), merged, with the first
    problem found; None when the request carries no CMCD. A malformed part is dropped, not fatal."""
    sources: list[str] = []
    raw_query = request.rel_url.raw_query_string
    if "CMCD=" in raw_query:
        # Straight from the raw query: cheaper than building request.query on every segment request.
        sources.extend(unquote(part[5:]) for part in raw_query.split("&") if part.startswith("CMCD="))
    headers = request.headers
    for name in CMCD_HEADERS:
        value = headers.get(name)
        if value is not None:
            sources.append(value)
    if not sources:
        return None
    merged: dict[str, CmcdValue] = {}
    error: str | None = None
    for source in sources:
        try:
            parsed = parse_cmcd(source)
        except CmcdError as exc:
            error = error or str(exc)
            continue
        clash = merged.keys() & parsed.keys()
        if clash:
            error = error or f"CMCD key {sorted(clash)[0]!r} sent twice"
        merged.update(parsed)
    return merged, error


# --- helpers ---------------------------------------------------------------------------------------

def _is_loopback(address: str | None) -> bool:
    if not address:
        return False
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _host_for_url(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


# --- cached objects, stats ------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True, slots=True)
class CachedObject:
    """One object as fetched from the origin, with the response headers precomputed for the hot path."""

    body: bytes
    etag: str | None  # as served (an MPD's differs from the origin's: its body is rewritten)
    last_modified: str | None
    origin_etag: str | None
    fetched_at_s: float  # loop clock
    expires_at_s: float
    is_manifest: bool
    hit_headers: Mapping[str, str]
    miss_headers: Mapping[str, str]

    @property
    def size_bytes(self) -> int:
        return len(self.body)


class OriginError(Exception):
    """The origin could not give us the object: `status` is what the client gets."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _TooLarge(Exception):
    """Bigger than `max_object_bytes`: streamed through uncached, per request."""


_COUNTERS = (
    ("cache_hits", "edge_cache_hits_total", "Requests served from the cache."),
    ("cache_misses", "edge_cache_misses_total", "Requests that needed the origin (fetch, revalidation or wait)."),
    ("bytes_served", "edge_bytes_served_total", "Response body bytes sent for content requests."),
    ("coalesced_waiters", "edge_coalesced_waiters_total", "Misses that waited on another request's origin fetch."),
    ("evictions", "edge_cache_evictions_total", "Objects evicted from the LRU to make room."),
    ("stale_served", "edge_stale_served_total", "Stale objects served because the origin failed (stale-if-error)."),
    ("passthrough", "edge_passthrough_total", "Requests for objects over max_object_bytes, streamed uncached."),
    ("cmcd_requests", "edge_cmcd_requests_total", "Requests that carried CMCD."),
    ("cmcd_errors", "edge_cmcd_errors_total", "Requests whose CMCD was malformed (logged, not fatal)."),
    ("origin_fetch_seconds", "edge_origin_fetch_seconds_total", "Time spent in origin fetches."),
    ("heartbeat_failures", "edge_heartbeat_failures_total", "Heartbeats the steering API did not accept."),
)


@dataclass(slots=True)
class EdgeStats:
    """Plain counters on the hot path; turned into Prometheus text only when `/metrics` is scraped."""

    cache_hits: int = 0
    cache_misses: int = 0
    bytes_served: int = 0
    coalesced_waiters: int = 0
    evictions: int = 0
    stale_served: int = 0
    passthrough: int = 0
    cmcd_requests: int = 0
    cmcd_errors: int = 0
    origin_fetch_seconds: float = 0.0
    heartbeat_failures: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    origin_fetches: Counter[str] = field(default_factory=Counter)  # by outcome


def _snapshot(edge: Edge) -> dict[str, float]:
    """Flat counters and gauges of one worker, summable across workers."""
    stats = edge.stats
    snap: dict[str, float] = {attr: float(getattr(stats, attr)) for attr, _, _ in _COUNTERS}
    snap["evictions"] = float(edge.cache.evictions)
    snap["coalesced_waiters"] = float(edge.coalescer.coalesced)
    snap.update({f"status:{code}": float(n) for code, n in stats.by_status.items()})
    snap.update({f"origin:{outcome}": float(n) for outcome, n in stats.origin_fetches.items()})
    snap["cache_bytes"] = float(edge.cache.used_bytes)
    snap["cache_objects"] = float(len(edge.cache))
    snap["cache_capacity_bytes"] = float(edge.cache.max_bytes)
    snap["active_requests"] = float(edge.active)
    return snap


def render_metrics(snap: Mapping[str, float]) -> str:
    metrics = Metrics()
    for attr, name, help_text in _COUNTERS:
        metrics.inc(name, snap.get(attr, 0.0), help=help_text)
    for key, value in snap.items():
        kind, _, label = key.partition(":")
        if kind == "status":
            metrics.inc("edge_requests_total", value, help="Content requests by response status.",
                        labels={"status": label})
        elif kind == "origin":
            metrics.inc("edge_origin_fetches_total", value, help="Origin fetches by outcome.",
                        labels={"outcome": label})
    hits, misses = snap.get("cache_hits", 0.0), snap.get("cache_misses", 0.0)
    metrics.set("edge_cache_hit_ratio", hits / (hits + misses) if hits + misses else 0.0,
                help="cache_hits / (cache_hits + cache_misses) since start.")
    metrics.set("edge_cache_bytes", snap.get("cache_bytes", 0.0), help="Bytes of bodies held in the cache.")
    metrics.set("edge_cache_capacity_bytes", snap.get("cache_capacity_bytes", 0.0), help="The cache's bound.")
    metrics.set("edge_cache_objects", snap.get("cache_objects", 0.0), help="Objects held in the cache.")
    metrics.set("edge_active_requests", snap.get("active_requests", 0.0), help="Content requests in progress.")
    return metrics.render()


# --- worker group (several processes, one port) ---------------------------------------------------

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


# --- the edge -------------------------------------------------------------------------------------

class Edge:
    """The state and handlers of one edge app (one per `create_app`)."""

    def __init__(self, config: EdgeConfig, group: WorkerGroup | None = None) -> None:
        self.config = config
        self.group = group
        self.cache: ByteLRU[CachedObject] = ByteLRU(config.cache_bytes)
        self.coalescer: Coalescer[CachedObject] = Coalescer()
        self.stats = EdgeStats()
        self.active = 0
        self.bound_url: str | None = None
        self.session: aiohttp.ClientSession | None = None
        self._key = config.url_signing_key
        self._verified: dict[str, tuple[float, str]] = {}
        self._origin = URL(config.origin_url)
        self._internal_token = internal_token(config.url_signing_key).encode()
        self._laurl = xml_escape(config.license_url, {'"': "&quot;"}).encode() if config.license_url else None
        self._laurl_tag = hashlib.sha256(config.license_url.encode()).hexdigest()[:8] if config.license_url else ""
        self._placeholder = LAURL_PLACEHOLDER.encode()
        self.cors = CorsPolicy(allowed_origins=config.allowed_origins, allow_methods=("GET", "HEAD"),
                               allow_headers=(*_CORS_ALLOW_HEADERS, *CMCD_HEADERS), expose_headers=_CORS_EXPOSE_HEADERS)
        self._stream_timeout = aiohttp.ClientTimeout(total=None, connect=config.origin_timeout_s,
                                                     sock_read=config.origin_timeout_s)
        self._fetch_timeout = aiohttp.ClientTimeout(total=config.origin_timeout_s)

    # -- identity --

    def public_url(self) -> str | None:
        """The URL reported to steering: `public_url`, else the bound one (known once a site started)."""
        if self.config.public_url:
            return self.config.public_url
        if self.bound_url:
            return self.bound_url
        if self.config.port:
            return f"http://{_host_for_url(self.config.host)}:{self.config.port}"
        return None

    def cached_titles(self) -> list[str]:
        return sorted({key.split("/", 2)[1] for key in self.cache.keys()})

    def load(self) -> int:
        return self.group.total_active() if self.group else self.active

    # -- content --

    async def handle_content(self, request: web.Request) -> web.StreamResponse:
        self.active += 1
        group = self.group
        if group is not None:
            group.active_requests[group.index] = self.active
        try:
            response = await self._serve(request)
        finally:
            self.active -= 1
            if group is not None:
                group.active_requests[group.index] = self.active
        self.stats.by_status[response.status] += 1
        return response

    def _verified_content_path(self, path: str) -> str | None:
        """The content path a signed request path grants (None: not a file of the title layout),
        or `SignatureError`.

        `check_path` is the costliest step of a cache hit, and a player asks for many objects with
        one token: its result is remembered per request path until the token expires (successes
        only, bounded, oldest forgotten first).
        """
        now = time.time()
        known = self._verified.get(path)
        if known is not None and now < known[0]:
            return known[1]
        grant, content_path = check_path(self._key, path, now=now)
        if not _content_path_ok(content_path):
            return None
        if len(self._verified) >= _VERIFIED_PATHS_MAX:
            del self._verified[next(iter(self._verified))]
        self._verified[path] = (float(grant.expires_at), content_path)
        return content_path

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        method = request.method
        if method != "GET" and method != "HEAD":
            if method == "OPTIONS":  # not a preflight (those are answered by the CORS middleware)
                return web.Response(status=204, headers={"Allow": "GET, HEAD, OPTIONS"})
            return self._error(request, 405, f"method {method} not allowed",
                               {"Allow": "GET, HEAD, OPTIONS"})
        path = request.path
        content_path: str | None
        if path.startswith(SIGNED_PREFIX):
            try:
                content_path = self._verified_content_path(path)
            except SignatureError as exc:
                return self._error(request, 403, str(exc))
        elif self.config.require_signature:
            return self._error(request, 403, "URL is not signed")
        else:
            content_path = path if _content_path_ok(path) else None
        if content_path is None:
            return self._error(request, 404, "not found (not a file of the title layout)")

        log_enabled = access_log.isEnabledFor(logging.INFO)
        # CMCD only goes into the access log: not parsed at all when that is off.
        if log_enabled and ("CMCD=" in request.rel_url.raw_query_string or _has_cmcd_header(request)):
            self._log_cmcd(request)

        obj = self.cache.get(content_path)
        loop_now = asyncio.get_running_loop().time()
        if obj is not None and obj.expires_at_s > loop_now:
            self.stats.cache_hits += 1
            x_cache_headers = obj.hit_headers
        else:
            self.stats.cache_misses += 1
            stale = obj
            try:
                obj, _ = await self.coalescer.run(
                    content_path, lambda: self._fetch(content_path, stale, request_id(request)))
            except _TooLarge:
                return await self._stream_through(request, content_path)
            except OriginError as exc:
                if stale is None:
                    return self._error(request, exc.status, exc.message)
                log.warning("origin failed for %s (%s); serving the stale copy", content_path, exc.message)
                self.stats.stale_served += 1
                obj = stale
                x_cache_headers = stale.hit_headers
            else:
                # A revalidated object (the origin said 304) keeps its body: served from the cache.
                revalidated = stale is not None and obj.body is stale.body
                x_cache_headers = obj.hit_headers if revalidated else obj.miss_headers
        if log_enabled:
            add_log_fields(request, edge_id=self.config.edge_id, cache=x_cache_headers["X-Cache"])
        return await self._respond(request, obj, x_cache_headers)

    async def _respond(self, request: web.Request, obj: CachedObject, base: Mapping[str, str]) -> web.StreamResponse:
        headers: Mapping[str, str] = base
        if_none_match = request.headers.get("If-None-Match")
        if if_none_match is not None and etag_matches(if_none_match, obj.etag):
            return web.Response(status=304, headers={k: v for k, v in headers.items() if k != "Content-Type"})
        body: bytes | memoryview = obj.body
        if obj.is_manifest and self._laurl is not None:
            body = obj.body.replace(self._placeholder, self._laurl)
        status = 200
        range_header = request.headers.get("Range")
        if_range = request.headers.get("If-Range")
        if range_header is not None and (if_range is None or if_range_matches(if_range, obj.etag, obj.last_modified)):
            try:
                span = parse_range(range_header, len(body))
            except RangeNotSatisfiable:
                return self._error(request, 416, "range not satisfiable",
                                   {"Content-Range": f"bytes */{len(body)}"})
            if span is not None:
                first, last = span
                headers = {**headers, "Content-Range": f"bytes {first}-{last}/{len(body)}"}
                body = memoryview(body)[first:last + 1]
                status = 206
        if request.method == "HEAD":
            return web.Response(body=body, status=status, headers=headers)
        self.stats.bytes_served += len(body)
        if len(body) < _DIRECT_WRITE_BYTES:
            return web.Response(body=body, status=status, headers=headers)
        # web.Response joins headers and body into one new bytes object before writing (on Python
        # < 3.12.9): a full copy of every large body. Headers first, then the cached bytes as they are.
        response = web.StreamResponse(status=status, headers=headers)
        self.cors.add_grant(response.headers, request.headers.get("Origin"))  # the middleware comes too late
        response.content_length = len(body)
        response.headers[REQUEST_ID_HEADER] = request_id(request)  # the middleware comes too late
        try:
            await response.prepare(request)
            await response.write(body)
            await response.write_eof()
        except ConnectionResetError:
            response.force_close()  # the client went away mid-response: nothing to tell it
        return response

    async def _fetch(self, content_path: str, stale: CachedObject | None, req_id: str) -> CachedObject:
        """One origin GET (conditional when revalidating `stale`); stores the object if cacheable."""
        assert self.session is not None, "the edge's client session starts with the app"
        headers = {"Accept-Encoding": "identity", "X-Request-ID": req_id}
        if stale is not None:
            if stale.origin_etag:
                headers["If-None-Match"] = stale.origin_etag
            elif stale.last_modified:
                headers["If-Modified-Since"] = stale.last_modified
        loop = asyncio.get_running_loop()
        started = loop.time()
        outcome = "error"
        try:
            async with self.session.get(self._origin_url(content_path), headers=headers, allow_redirects=False,
                                        timeout=self._fetch_timeout) as resp:
                if resp.status == 304 and stale is not None:
                    outcome = "not_modified"
                    lifetime_s = ttl_s(resp.headers.get("Cache-Control"), self._default_ttl(stale.is_manifest))
                    refreshed = replace(stale, expires_at_s=loop.time() + (lifetime_s or 0.0))
                    self._store(content_path, refreshed)
                    return refreshed
                if resp.status in (404, 410):
                    outcome = "not_found"
                    raise OriginError(404, "not found")
                if resp.status != 200:
                    raise OriginError(502, f"origin answered {resp.status}")
                if resp.content_length is not None and resp.content_length > self.config.max_object_bytes:
                    outcome = "too_large"
                    raise _TooLarge
                body = await _read_bounded(resp, self.config.max_object_bytes)
                if body is None:
                    outcome = "too_large"
                    raise _TooLarge
                obj, lifetime_s = self._build_object(content_path, body, resp.headers, loop.time())
                outcome = "ok"
                if lifetime_s is not None:
                    self._store(content_path, obj)
                return obj
        except TimeoutError:
            outcome = "timeout"
            raise OriginError(504, "origin timed out") from None
        except aiohttp.ClientError as exc:
            raise OriginError(502, f"origin unreachable: {type(exc).__name__}") from None
        finally:
            self.stats.origin_fetches[outcome] += 1
            self.stats.origin_fetch_seconds += loop.time() - started

    def _origin_url(self, content_path: str) -> URL:
        return self._origin.with_path(self._origin.path.rstrip("/") + content_path)

    def _default_ttl(self, is_manifest: bool) -> float:
        return float(self.config.mpd_max_age_s) if is_manifest else self.config.default_ttl_s

    def _build_object(self, content_path: str, body: bytes, origin_headers: Mapping[str, str],
                      now_s: float) -> tuple[CachedObject, float | None]:
        is_manifest = content_path.endswith("/" + MANIFEST_NAME)
        cache_control = origin_headers.get("Cache-Control")
        lifetime_s = ttl_s(cache_control, self._default_ttl(is_manifest))
        origin_etag = origin_headers.get("ETag")
        etag = origin_etag
        if is_manifest:
            # Rewritten per edge, so it must not stay in a downstream cache for long, and its ETag
            # must differ from the origin's whenever the license URL changes the bytes.
            if lifetime_s is not None:
                lifetime_s = min(lifetime_s, float(self.config.mpd_max_age_s))
            cache_control = f"max-age={self.config.mpd_max_age_s}"
            if origin_etag and self._laurl_tag:
                weak, inner = origin_etag.startswith("W/"), origin_etag.removeprefix("W/").strip('"')
                etag = f'{"W/" if weak else ""}"{inner}-{self._laurl_tag}"'
        base = {"Content-Type": origin_headers.get("Content-Type", "application/octet-stream"),
                "Accept-Ranges": "bytes"}
        if etag:
            base["ETag"] = etag
        last_modified = origin_headers.get("Last-Modified")
        if last_modified:
            base["Last-Modified"] = last_modified
        if cache_control:
            base["Cache-Control"] = cache_control
        obj = CachedObject(body=body, etag=etag, last_modified=last_modified, origin_etag=origin_etag,
                           fetched_at_s=now_s, expires_at_s=now_s + (lifetime_s or 0.0), is_manifest=is_manifest,
                           hit_headers={**base, "X-Cache": "HIT"}, miss_headers={**base, "X-Cache": "MISS"})
        return obj, lifetime_s

    def _store(self, content_path: str, obj: CachedObject) -> None:
        self.cache.put(content_path, obj, obj.size_bytes)

    async def _stream_through(self, request: web.Request, content_path: str) -> web.StreamResponse:
        """Relay an object too big to cache, Range and all, without holding it in memory."""
        assert self.session is not None
        self.stats.passthrough += 1
        headers = {"Accept-Encoding": "identity", "X-Request-ID": request_id(request)}
        for name in ("Range", "If-Range", "If-None-Match", "If-Modified-Since"):
            if name in request.headers:
                headers[name] = request.headers[name]
        try:
            async with self.session.request(request.method, self._origin_url(content_path), headers=headers,
                                            allow_redirects=False, timeout=self._stream_timeout) as upstream:
                if upstream.status in (404, 410):
                    return self._error(request, 404, "not found")
                if upstream.status not in (200, 206, 304, 416):
                    return self._error(request, 502, f"origin answered {upstream.status}")
                out_headers = {name: upstream.headers[name] for name in
                               ("Content-Type", "Content-Length", "Content-Range", "ETag", "Last-Modified",
                                "Cache-Control", "Accept-Ranges") if name in upstream.headers}
                out_headers["X-Cache"] = "MISS"
                response = web.StreamResponse(status=upstream.status, headers=out_headers)
                self.cors.add_grant(response.headers, request.headers.get("Origin"))
                await response.prepare(request)
                try:
                    if request.method != "HEAD":
                        async for chunk in upstream.content.iter_chunked(_STREAM_CHUNK_BYTES):
                            await response.write(chunk)
                            self.stats.bytes_served += len(chunk)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    # Headers are gone: all we can do is cut the connection so the client sees a short body.
                    log.warning("origin stream for %s broke: %s", content_path, type(exc).__name__)
                    response.force_close()
                    return response
                await response.write_eof()
                return response
        except TimeoutError:
            return self._error(request, 504, "origin timed out")
        except aiohttp.ClientError as exc:
            return self._error(request, 502, f"origin unreachable: {type(exc).__name__}")

    def _log_cmcd(self, request: web.Request) -> None:
        found = cmcd_from_request(request)
        if found is None:
            return
        cmcd, error = found
        self.stats.cmcd_requests += 1
        if error is not None:
            self.stats.cmcd_errors += 1
            add_log_fields(request, cmcd=cmcd, cmcd_error=error)
        else:
            add_log_fields(request, cmcd=cmcd)

    def _error(self, request: web.Request, status: int, message: str,
               headers: Mapping[str, str] | None = None) -> web.Response:
        if access_log.isEnabledFor(logging.INFO):
            add_log_fields(request, edge_id=self.config.edge_id, error=message)
        return json_error(status, message, headers=headers)

    # -- internal endpoints --

    def internal_allowed(self, request: web.Request) -> bool:
        """Loopback peers, or anyone presenting `internal_token(url_signing_key)` as a Bearer token."""
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip().encode(), self._internal_token):
            return True
        return _is_loopback(request.remote)

    async def handle_preposition(self, request: web.Request) -> web.Response:
        if not self.internal_allowed(request):
            return self._error(request, 403, "pre-positioning needs a loopback peer or the internal bearer token")
        title = request.match_info["title"]
        if not is_valid_title(title):
            return self._error(request, 400, "bad title")
        try:
            paths = await self._title_paths(title, request_id(request))
        except OriginError as exc:
            return self._error(request, exc.status, f"segment index: {exc.message}")
        result = await self._warm(paths, request_id(request))
        result["title"] = title
        if self.group is not None and FANOUT_HEADER not in request.headers:
            # A sibling warms the same title from the same origin: as long as this worker took.
            no_timeout = aiohttp.ClientTimeout(total=None, connect=self.config.origin_timeout_s)
            for sibling in await self._fan_out("POST", f"/internal/preposition/{title}", request, no_timeout):
                for key in ("fetched", "already_cached", "failed", "fetched_bytes"):
                    result[key] += int(sibling.get(key, 0))
                result["workers"] += 1
        return web.json_response(result, status=200 if result["failed"] == 0 else 502)

    async def _title_paths(self, title: str, req_id: str) -> list[str]:
        index_path = f"/{title}/{SEGMENTS_NAME}"
        try:
            index_obj, _ = await self.coalescer.run(index_path, lambda: self._fetch(index_path, None, req_id))
        except _TooLarge:
            raise OriginError(502, "segment index too large") from None
        try:
            index = json.loads(index_obj.body)
            paths = [f"/{title}/{MANIFEST_NAME}"]
            for kind in ("video", "audio"):
                for rep in index.get(kind, []):
                    rep_id, sizes = str(rep["id"]), rep["segment_sizes_bytes"]
                    if not REPRESENTATION_ID_PATTERN.fullmatch(rep_id) or not isinstance(sizes, list):
                        raise ValueError(f"bad representation {rep_id!r}")
                    paths.append(f"/{title}/{kind}/{rep_id}/init.mp4")
                    paths.extend(f"/{title}/{kind}/{rep_id}/{n}.m4s" for n in range(1, len(sizes) + 1))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise OriginError(502, f"malformed {SEGMENTS_NAME}: {exc}") from None
        if len(paths) > MAX_PREPOSITION_OBJECTS:
            raise OriginError(502, f"{SEGMENTS_NAME} lists too many objects")
        return paths

    async def _warm(self, paths: Sequence[str], req_id: str) -> dict[str, Any]:
        counts = {"objects": len(paths), "fetched": 0, "already_cached": 0, "failed": 0, "fetched_bytes": 0,
                  "workers": 1}
        errors: list[str] = []
        gate = asyncio.Semaphore(self.config.preposition_concurrency)
        loop = asyncio.get_running_loop()

        async def warm_one(path: str) -> None:
            cached = self.cache.get(path)
            if cached is not None and cached.expires_at_s > loop.time():
                counts["already_cached"] += 1
                return
            async with gate:
                try:
                    obj, _ = await self.coalescer.run(path, lambda: self._fetch(path, cached, req_id))
                except _TooLarge:
                    counts["failed"] += 1
                    errors.append(f"{path}: larger than max_object_bytes")
                except OriginError as exc:
                    counts["failed"] += 1
                    errors.append(f"{path}: {exc.message}")
                else:
                    counts["fetched"] += 1
                    counts["fetched_bytes"] += obj.size_bytes

        await asyncio.gather(*(warm_one(path) for path in paths))
        result: dict[str, Any] = dict(counts)
        result["errors"] = errors[:20]
        return result

    async def _fan_out(self, method: str, path: str, request: web.Request,
                       timeout: aiohttp.ClientTimeout) -> list[dict[str, Any]]:
        """Ask every sibling worker (over loopback control ports) the same; their JSON answers."""
        assert self.group is not None and self.session is not None
        headers = {FANOUT_HEADER: "0", "X-Request-ID": request_id(request),
                   "Authorization": f"Bearer {self._internal_token.decode()}"}

        async def ask(port: int) -> dict[str, Any]:
            try:
                async with self.session.request(method, f"http://127.0.0.1:{port}{path}", headers=headers,
                                                timeout=timeout) as resp:
                    answer = await resp.json()
                    return answer if isinstance(answer, dict) else {}
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.warning("worker on control port %d did not answer %s: %s", port, path, exc)
                return {}

        return list(await asyncio.gather(*(ask(port) for port in self.group.siblings())))

    async def handle_stats(self, request: web.Request) -> web.Response:
        if not self.internal_allowed(request):
            return self._error(request, 403, "internal endpoint")
        return web.json_response(_snapshot(self))

    async def handle_metrics(self, request: web.Request) -> web.Response:
        snap = _snapshot(self)
        if self.group is not None:
            for sibling in await self._fan_out("GET", "/internal/stats", request, self._fetch_timeout):
                for key, value in sibling.items():
                    if isinstance(value, (int, float)) and key != "cache_capacity_bytes":
                        snap[key] = snap.get(key, 0.0) + value
            snap["cache_capacity_bytes"] *= len(self.group.control_ports)
            snap["active_requests"] = float(self.group.total_active())
        return web.Response(text=render_metrics(snap), content_type="text/plain", charset="utf-8",
                            headers={"Cache-Control": "no-store"})

    async def handle_healthz(self, request: web.Request) -> web.Response:
        return web.json_response({
            "status": "ok", "edge_id": self.config.edge_id, "url": self.public_url(),
            "worker": self.group.index if self.group else 0, "workers": self.config.workers,
            "cache_bytes": self.cache.used_bytes, "cache_capacity_bytes": self.cache.max_bytes,
            "cache_objects": len(self.cache), "active_requests": self.active,
        }, headers={"Cache-Control": "no-store"})

    # -- heartbeats --

    async def heartbeat_loop(self, session: aiohttp.ClientSession) -> None:
        """POST our health and load to the steering API every `heartbeat_s`, until cancelled."""
        assert self.config.steering_url is not None
        target = f"{self.config.steering_url}/internal/edges/heartbeat"
        headers = {"Authorization": f"Bearer {self._internal_token.decode()}"}
        timeout = aiohttp.ClientTimeout(total=max(0.5, min(5.0, 2 * self.config.heartbeat_s)))
        failing = False
        while True:
            url = self.public_url()
            if url is not None:
                beat = {"edge_id": self.config.edge_id, "url": url, "healthy": True, "load": self.load(),
                        "cached_titles": self.cached_titles()}
                problem: str | None = None
                try:
                    async with session.post(target, json=beat, headers=headers, timeout=timeout) as resp:
                        if resp.status >= 300:
                            problem = f"answered {resp.status}"
                except (aiohttp.ClientError, TimeoutError) as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                if problem is not None:
                    self.stats.heartbeat_failures += 1
                    if not failing:
                        log.warning("edge %s: heartbeat to %s failed (%s); retrying every %.3g s, "
                                    "logging again when it recovers", self.config.edge_id, target, problem,
                                    self.config.heartbeat_s)
                    failing = True
                elif failing:
                    log.info("edge %s: heartbeats to %s accepted again", self.config.edge_id, target)
                    failing = False
            await asyncio.sleep(self.config.heartbeat_s)


def _content_path_ok(content_path: str) -> bool:
    """Whether `/<title>/<file>` names a file of the title layout (server.content): nothing else,
    keys and traversal included, is worth asking the origin for."""
    title, _, relative = content_path[1:].partition("/")
    return is_valid_title(title) and classify(relative) is not None


def _has_cmcd_header(request: web.BaseRequest) -> bool:
    headers = request.headers
    return any(name in headers for name in CMCD_HEADERS)


async def _read_bounded(resp: aiohttp.ClientResponse, max_bytes: int) -> bytes | None:
    """The whole body, or None as soon as it exceeds `max_bytes` (chunked responses have no length)."""
    if resp.content_length is not None:
        return await resp.read()
    parts: list[bytes] = []
    total = 0
    async for chunk in resp.content.iter_chunked(_STREAM_CHUNK_BYTES):
        total += len(chunk)
        if total > max_bytes:
            return None
        parts.append(chunk)
    return b"".join(parts)


EDGE = web.AppKey("abrkit_edge", Edge)


def create_app(config: EdgeConfig, *, group: WorkerGroup | None = None) -> web.Application:
    """The edge's aiohttp app; the origin client session (and heartbeats) start and stop with it."""
    faults = FaultState()  # chaos runs only: off until set through /internal/faults (server/faults.py)
    edge = Edge(config, group)
    # CORS only when configured: the middleware is one more call on every request of the hot path.
    cors = [cors_middleware(edge.cors)] if config.allowed_origins else []
    app = web.Application(middlewares=[request_id_middleware, *cors, fault_middleware(faults)],
                          client_max_size=64 * 1024)
    app[EDGE] = edge
    app.cleanup_ctx.append(_client_session_ctx)
    if config.steering_url and (group is None or group.index == 0):
        app.cleanup_ctx.append(_heartbeat_ctx)
    app.router.add_get("/healthz", edge.handle_healthz)
    app.router.add_get("/metrics", edge.handle_metrics)
    app.router.add_post("/internal/preposition/{title}", edge.handle_preposition)
    app.router.add_get("/internal/stats", edge.handle_stats)
    add_fault_routes(app, faults, internal_token(config.url_signing_key).encode())
    app.router.add_route("*", "/{path:.*}", edge.handle_content)
    return app


async def _client_session_ctx(app: web.Application) -> AsyncIterator[None]:
    edge = app[EDGE]
    connector = aiohttp.TCPConnector(limit=256, limit_per_host=128, ttl_dns_cache=300)
    # trust_env=False (the default, stated): proxies from the environment must not redirect origin traffic.
    async with aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=False,
                                     raise_for_status=False) as session:
        edge.session = session
        yield
        edge.session = None


async def _heartbeat_ctx(app: web.Application) -> AsyncIterator[None]:
    edge = app[EDGE]
    async with aiohttp.ClientSession(trust_env=False) as session:
        task = asyncio.create_task(edge.heartbeat_loop(session), name=f"edge-{edge.config.edge_id}-heartbeat")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def set_bound_url(app: web.Application, url: str) -> None:
    """Tell an edge started on port 0 its URL (for heartbeats) once its site is listening."""
    app[EDGE].bound_url = url.rstrip("/")


# --- running it -----------------------------------------------------------------------------------

@dataclass(kw_only=True)
class RunningEdge:
    """An edge listening in this process (from `start_edge`); `stop()` shuts it down gracefully."""

    app: web.Application
    runner: web.AppRunner
    url: str
    port: int

    @property
    def edge(self) -> Edge:
        return self.app[EDGE]

    async def stop(self) -> None:
        await self.runner.cleanup()


def make_runner(app: web.Application) -> web.AppRunner:
    """The services' AppRunner (`server.observability.service_runner`) for an edge outside a stack."""
    return service_runner(app, "edge", shutdown_timeout_s=10.0)


async def start_edge(config: EdgeConfig, *, group: WorkerGroup | None = None,
                     reuse_port: bool = False) -> RunningEdge:
    """Start one edge on `config.host:config.port` (0 = any free port) in the running loop."""
    app = create_app(config, group=group)
    runner = make_runner(app)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, reuse_port=reuse_port or None)
    await site.start()
    url = f"http://{_host_for_url(config.host)}:{site.port}"
    set_bound_url(app, url)
    return RunningEdge(app=app, runner=runner, url=url, port=site.port)
