"""The edge's side toward its one origin: one GET per object (conditional when revalidating a stale
copy), how long the answer may be kept (server/httpcache.py), and its response headers prebuilt for
the cache's hot path (an MPD's ETag and Cache-Control adjusted, since the edge rewrites its body)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import mmap
import os
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, replace

import aiohttp
from aiohttp.http import SERVER_SOFTWARE
from yarl import URL

from server.config import EdgeConfig
from server.edgelog import json_text
from server.edgemetrics import EdgeStats
from server.formats.hls import is_playlist_path
from server.formats.names import MANIFEST_NAME
from server.formats.urls import REDACTED, SIGNED_PREFIX, redact_path
from server.httpcache import ttl_s
from server.internal import internal_headers

STREAM_CHUNK_BYTES = 256 * 1024
# Bodies this large live in memory files and leave with sendfile (server/edgefast.py): no copy of
# the body into the socket, as nginx sends from the page cache. Smaller ones stay plain bytes.
MEMORY_FILE_MIN_BYTES = 64 * 1024


class MemoryFile:
    """A cached body in an anonymous memory file (Linux `memfd`): `view` reads it in place (a
    read-only mmap; no second copy in memory) and `file` is what `sendfile` sends it from. The file
    closes when the last reference goes (an evicted object being sent finishes first). Each costs
    two file descriptors (the file, and the mmap's own duplicate)."""

    __slots__ = ("file", "view", "__weakref__")

    def __init__(self, file: io.FileIO, view: memoryview) -> None:
        self.file = file
        self.view = view

    @classmethod
    def holding(cls, body: bytes) -> MemoryFile | None:
        """`body` in a new memory file; None where there are none, or no descriptor or memory is left
        (the object is then kept as bytes and sent without sendfile)."""
        if not hasattr(os, "memfd_create") or not body:
            return None
        try:
            fd = os.memfd_create("abrkit-edge-object", os.MFD_CLOEXEC)
        except OSError:
            return None
        file = io.FileIO(fd, "r+", closefd=True)
        try:
            pending = memoryview(body)
            while pending:
                pending = pending[file.write(pending) or 0:]
            view = memoryview(mmap.mmap(fd, len(body), prot=mmap.PROT_READ))
        except OSError:
            with contextlib.suppress(OSError):
                file.close()
            return None
        return cls(file, view)


@dataclass(frozen=True, kw_only=True, slots=True)
class CachedObject:
    """One object as fetched from the origin, with the response headers precomputed for the hot path."""

    body: bytes | memoryview  # a memoryview reads `memory_file` (never for MPDs, playlists or JSON)
    etag: str | None  # as served (an MPD's differs from the origin's: its body is rewritten)
    last_modified: str | None
    origin_etag: str | None
    fetched_at_s: float  # loop clock
    expires_at_s: float
    is_manifest: bool
    hit_headers: Mapping[str, str]
    miss_headers: Mapping[str, str]
    # The status line and headers of a whole-body 200 HIT up to Date (server/edgefast.py adds Date and
    # X-Request-ID); None for an MPD (rewritten per response) or headers that cannot be sent verbatim.
    hit_head: bytes | None = None
    memory_file: MemoryFile | None = None  # the body, for sendfile (large media objects only)
    signed_log_path: str = ""  # `/s/<token>/<title>/<file>` as the access log shows a signed request for it
    log_path_json: str = "null"  # `signed_log_path` as JSON text (the fast path's hand-built log line)

    @property
    def size_bytes(self) -> int:
        return len(self.body)


class OriginError(Exception):
    """The origin could not give us the object: `status` is what the client gets."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class TooLarge(Exception):
    """Bigger than `max_object_bytes`: streamed through uncached, per request."""


class Origin:
    """The origin as one edge sees it; `session` is set while the edge's app runs."""

    def __init__(self, config: EdgeConfig, stats: EdgeStats) -> None:
        self.config = config
        self.stats = stats  # origin fetches are counted here by outcome, with their time
        self.session: aiohttp.ClientSession | None = None
        self._base = URL(config.origin_url)
        self._timeout = aiohttp.ClientTimeout(total=config.origin_timeout_s)
        # The origin serves only the stack (server/origin.py): its internal credential goes with each fetch.
        self.credential = internal_headers(config.internal_token) if config.internal_token is not None else {}
        self._laurl_tag = hashlib.sha256(config.license_url.encode()).hexdigest()[:8] if config.license_url else ""
        # Memory files take descriptors: at most half the process's own (two each), so that the cache
        # never leaves the listener without any to accept connections with; past that, bytes.
        self._memory_files_max = _descriptor_limit() // 4
        self.memory_files = 0  # alive now

    def url(self, content_path: str) -> URL:
        return self._base.with_path(self._base.path.rstrip("/") + content_path)

    async def fetch(self, content_path: str, stale: CachedObject | None, req_id: str) -> tuple[CachedObject, bool]:
        """(the object, whether it may be stored) from one origin GET, conditional when revalidating
        `stale` (a 304 refreshes it). `OriginError` when there is nothing to serve, `TooLarge` when
        it is over `max_object_bytes`."""
        assert self.session is not None, "the edge's client session starts with the app"
        headers = {"Accept-Encoding": "identity", "X-Request-ID": req_id, **self.credential}
        if stale is not None:
            if stale.origin_etag:
                headers["If-None-Match"] = stale.origin_etag
            elif stale.last_modified:
                headers["If-Modified-Since"] = stale.last_modified
        loop = asyncio.get_running_loop()
        started = loop.time()
        outcome = "error"
        try:
            async with self.session.get(self.url(content_path), headers=headers, allow_redirects=False,
                                        timeout=self._timeout) as resp:
                if resp.status == 304 and stale is not None:
                    outcome = "not_modified"
                    lifetime_s = ttl_s(resp.headers.get("Cache-Control"), self._default_ttl(stale.is_manifest))
                    return replace(stale, expires_at_s=loop.time() + (lifetime_s or 0.0)), True
                if resp.status in (404, 410):
                    outcome = "not_found"
                    raise OriginError(404, "not found")
                if resp.status != 200:
                    raise OriginError(502, f"origin answered {resp.status}")
                if resp.content_length is not None and resp.content_length > self.config.max_object_bytes:
                    outcome = "too_large"
                    raise TooLarge
                body = await _read_bounded(resp, self.config.max_object_bytes)
                if body is None:
                    outcome = "too_large"
                    raise TooLarge
                obj, lifetime_s = self._build_object(content_path, body, resp.headers, loop.time())
                outcome = "ok"
                return obj, lifetime_s is not None
        except TimeoutError:
            outcome = "timeout"
            raise OriginError(504, "origin timed out") from None
        except aiohttp.ClientError as exc:
            raise OriginError(502, f"origin unreachable: {type(exc).__name__}") from None
        finally:
            self.stats.origin_fetches[outcome] += 1
            self.stats.origin_fetch_seconds += loop.time() - started

    def _memory_file_closed(self) -> None:
        self.memory_files -= 1

    def _default_ttl(self, is_manifest: bool) -> float:
        return float(self.config.mpd_max_age_s) if is_manifest else self.config.default_ttl_s

    def _build_object(self, content_path: str, body: bytes, origin_headers: Mapping[str, str],
                      now_s: float) -> tuple[CachedObject, float | None]:
        # MPD and HLS playlists alike: short-lived in every cache (a re-packaged title changes them).
        is_manifest = content_path.endswith("/" + MANIFEST_NAME) or is_playlist_path(content_path)
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
        hit_headers = {**base, "X-Cache": "HIT"}
        log_path = redact_path(SIGNED_PREFIX + REDACTED + content_path)
        memory_file = None
        if (not is_manifest and len(body) >= MEMORY_FILE_MIN_BYTES and not content_path.endswith(".json")
                and self.memory_files < self._memory_files_max):
            memory_file = MemoryFile.holding(body)
            if memory_file is not None:
                self.memory_files += 1
                weakref.finalize(memory_file, self._memory_file_closed)
        obj = CachedObject(body=body if memory_file is None else memory_file.view, memory_file=memory_file,
                           etag=etag, last_modified=last_modified, origin_etag=origin_etag,
                           fetched_at_s=now_s, expires_at_s=now_s + (lifetime_s or 0.0), is_manifest=is_manifest,
                           hit_headers=hit_headers, miss_headers={**base, "X-Cache": "MISS"},
                           hit_head=None if is_manifest else hit_head(hit_headers, len(body)),
                           signed_log_path=log_path, log_path_json=json_text(log_path))
        return obj, lifetime_s


def hit_head(headers: Mapping[str, str], size_bytes: int) -> bytes | None:
    """`HTTP/1.1 200 OK`, `headers`, Content-Length and Server as aiohttp would send them, each line
    ending in CRLF and without the blank line; None if a value could not be sent verbatim (a CR, LF
    or NUL from the origin, which aiohttp would refuse to send too)."""
    lines = ["HTTP/1.1 200 OK"]
    for name, value in (*headers.items(), ("Content-Length", str(size_bytes)), ("Server", SERVER_SOFTWARE)):
        if "\r" in value or "\n" in value or "\0" in value:
            return None
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _descriptor_limit() -> int:
    try:
        import resource  # Unix
    except ImportError:
        return 0
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


async def _read_bounded(resp: aiohttp.ClientResponse, max_bytes: int) -> bytes | None:
    """The whole body, or None as soon as it exceeds `max_bytes` (chunked responses have no length)."""
    if resp.content_length is not None:
        return await resp.read()
    parts: list[bytes] = []
    total = 0
    async for chunk in resp.content.iter_chunked(STREAM_CHUNK_BYTES):
        total += len(chunk)
        if total > max_bytes:
            return None
        parts.append(chunk)
    return b"".join(parts)
