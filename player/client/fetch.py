"""HTTP fetching for the player: timeouts, retries with backoff and jitter, failover, measurements.

A request names its alternatives (the same object on several edges or BaseURLs, best first). A
host that fails is excluded for `exclusion_s`; a transient failure (connection error, timeout,
5xx, 429) is retried after an exponential backoff with full jitter, moving on to the next
alternative; a definitive answer (404, 403, 410, 400) ends the request at once. Every attempt is
measured (time to first byte, download time, bytes) and handed to an observer for the event log.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp

from server.formats.urls import redact_url

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True, kw_only=True, slots=True)
class FetchConfig:
    """Wall-clock limits of one request and the retry policy."""

    connect_timeout_s: float = 3.0
    first_byte_timeout_s: float = 8.0  # request sent -> response headers
    read_timeout_s: float = 8.0  # longest gap between body chunks
    attempts: int = 4  # tries per request, across alternatives
    backoff_base_s: float = 0.1
    backoff_max_s: float = 2.0
    exclusion_s: float = 10.0  # a failed host is skipped this long (unless nothing else is left)
    chunk_bytes: int = 64 * 1024
    progress_interval_s: float = 0.1  # how often an in-flight download is offered for abandonment

    def __post_init__(self) -> None:
        for name in ("connect_timeout_s", "first_byte_timeout_s", "read_timeout_s", "progress_interval_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
        if self.attempts < 1:
            raise ValueError("attempts must be >= 1")
        if self.backoff_base_s < 0 or self.backoff_max_s < self.backoff_base_s or self.exclusion_s < 0:
            raise ValueError("need 0 <= backoff_base_s <= backoff_max_s and exclusion_s >= 0")


@dataclass(frozen=True, kw_only=True, slots=True)
class Attempt:
    """One HTTP attempt, successful or not (wall-clock seconds)."""

    url: str
    status: int | None
    error: str | None
    ttfb_s: float | None
    duration_s: float
    size_bytes: int
    request_id: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class FetchResult:
    url: str
    body: bytes
    status: int
    ttfb_s: float
    duration_s: float  # request sent -> last byte, of the successful attempt
    attempts: tuple[Attempt, ...]
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def size_bytes(self) -> int:
        return len(self.body)


class FetchError(Exception):
    """A request that failed for good; `permanent` when the server said no (4xx) rather than failing."""

    def __init__(self, message: str, *, attempts: Sequence[Attempt], permanent: bool, status: int | None = None):
        super().__init__(message)
        self.attempts = tuple(attempts)
        self.permanent = permanent
        self.status = status


ABANDONED = "abandoned"  # the error an attempt records when the caller abandoned it (not a failure)


class Abandoned(Exception):
    """The caller's progress callback asked to stop an in-flight download."""

    def __init__(self, bytes_received: int, elapsed_s: float) -> None:
        super().__init__(f"abandoned after {bytes_received} bytes")
        self.bytes_received = bytes_received
        self.elapsed_s = elapsed_s


ProgressCallback = Callable[[int, int, float], bool]  # (bytes received, expected total or 0, elapsed s) -> keep going
Observer = Callable[[Attempt], None]
Route = Callable[[str], Awaitable[str]]  # where to actually connect for a URL (e.g. through a shaper)


def host_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class Fetcher:
    """Fetches objects over one aiohttp session with the failover and retry policy above."""

    def __init__(self, session: aiohttp.ClientSession, config: FetchConfig | None = None, *,
                 rng: random.Random | None = None, observer: Observer | None = None,
                 clock: Callable[[], float] = time.monotonic, route: Route | None = None) -> None:
        self.session = session
        self.config = config or FetchConfig()
        self.rng = rng or random.Random(0)
        self.observer = observer
        self.clock = clock
        self.route = route
        self._excluded_until: dict[str, float] = {}

    def excluded(self, url: str) -> bool:
        return self._excluded_until.get(host_of(url), 0.0) > self.clock()

    def exclude(self, url: str) -> None:
        self._excluded_until[host_of(url)] = self.clock() + self.config.exclusion_s

    def order(self, urls: Sequence[str]) -> list[str]:
        """Alternatives with excluded hosts moved to the back (kept as a last resort)."""
        unique = list(dict.fromkeys(urls))
        return [u for u in unique if not self.excluded(u)] + [u for u in unique if self.excluded(u)]

    async def fetch(self, urls: Sequence[str], *, method: str = "GET", headers: Mapping[str, str] | None = None,
                    json_body: object = None, expected_bytes: int = 0,
                    on_progress: ProgressCallback | None = None) -> FetchResult:
        """The first successful answer among `urls`, retrying transient failures."""
        if not urls:
            raise ValueError("nothing to fetch: no URLs")
        attempts: list[Attempt] = []
        last_status: int | None = None
        for attempt_index in range(self.config.attempts):
            if attempt_index:
                await asyncio.sleep(self._backoff_s(attempt_index))
            url = self.order(urls)[0]  # a failed host was just excluded: the next alternative comes first
            try:
                return await self._attempt(url, method, headers, json_body, expected_bytes, on_progress, attempts)
            except _Permanent as exc:
                raise FetchError(f"{method} {redact_url(url)}: HTTP {exc.status}", attempts=attempts, permanent=True,
                                 status=exc.status) from None
            except _Transient as exc:
                last_status = exc.status
                self.exclude(url)
        tried = ", ".join(sorted({host_of(a.url) for a in attempts}))
        reason = attempts[-1].error if attempts and attempts[-1].error else f"HTTP {last_status}"
        raise FetchError(f"{method} {redact_url(urls[0])} failed after {len(attempts)} attempts on {tried}: {reason}",
                         attempts=attempts, permanent=False, status=last_status)

    def _backoff_s(self, attempt_index: int) -> float:
        ceiling = min(self.config.backoff_max_s, self.config.backoff_base_s * 2 ** (attempt_index - 1))
        return self.rng.uniform(0, ceiling)  # "full jitter": spreads retries of many clients

    async def _attempt(self, url: str, method: str, headers: Mapping[str, str] | None, json_body: object,
                       expected_bytes: int, on_progress: ProgressCallback | None, attempts: list[Attempt]) -> FetchResult:
        cfg = self.config
        start = self.clock()
        ttfb: float | None = None
        status: int | None = None
        received = 0
        request_id: str | None = None

        def record(error: str | None) -> Attempt:
            attempt = Attempt(url=url, status=status, error=error, ttfb_s=ttfb, duration_s=self.clock() - start,
                              size_bytes=received, request_id=request_id)
            attempts.append(attempt)
            if self.observer is not None:
                self.observer(attempt)
            return attempt

        timeout = aiohttp.ClientTimeout(total=None, sock_connect=cfg.connect_timeout_s,
                                        sock_read=cfg.read_timeout_s)
        try:
            target = await self.route(url) if self.route is not None else url
            async with asyncio.timeout(cfg.connect_timeout_s + cfg.first_byte_timeout_s):
                response = await self.session.request(method, target, headers=headers, json=json_body,
                                                      timeout=timeout, allow_redirects=False)
            try:
                ttfb = self.clock() - start
                status = response.status
                request_id = response.headers.get("X-Request-ID")
                if status in RETRYABLE_STATUS or status >= 500:
                    record(f"HTTP {status}")
                    raise _Transient(status)
                if status >= 400 or status in (301, 302, 303, 307, 308):
                    record(f"HTTP {status}")
                    raise _Permanent(status)
                total = response.content_length or expected_bytes
                chunks: list[bytes] = []
                next_check = start + cfg.progress_interval_s
                async for chunk in response.content.iter_chunked(cfg.chunk_bytes):
                    chunks.append(chunk)
                    received += len(chunk)
                    now = self.clock()
                    if on_progress is not None and now >= next_check:
                        next_check = now + cfg.progress_interval_s
                        if not on_progress(received, total, now - start):
                            record(ABANDONED)
                            raise Abandoned(received, now - start)
                if response.content_length is not None and received != response.content_length:
                    record(f"short body: {received} of {response.content_length} bytes")
                    raise _Transient(status)
                body = b"".join(chunks)
                attempt = record(None)
                return FetchResult(url=url, body=body, status=status, ttfb_s=ttfb, duration_s=attempt.duration_s,
                                   attempts=tuple(attempts), headers=dict(response.headers))
            finally:
                response.release()
        except (_Transient, _Permanent, Abandoned):
            raise
        except TimeoutError:
            record("timeout" if ttfb is not None else "no response (timeout)")
            raise _Transient(status) from None
        except (aiohttp.ClientError, OSError) as exc:
            record(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            raise _Transient(status) from None


class _Transient(Exception):
    def __init__(self, status: int | None) -> None:
        self.status = status


class _Permanent(Exception):
    def __init__(self, status: int) -> None:
        self.status = status
