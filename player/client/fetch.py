"""HTTP fetching for the player, the way a CDN client does it: timeouts, retries with backoff and
jitter, failover, redirects, byte ranges checked, every attempt measured.

A request names its alternatives (the same object on several edges or BaseURLs, best first: the
steering ranking). A host that fails is excluded for `exclusion_s`; a transient failure (connection
error, timeout, 5xx, 429, short body) moves on to the next alternative in the ranking at once (a
region that died costs one failed connection per edge, not a backoff each), and every alternative
gets at least one try; coming back to one that already failed waits an exponential backoff with
full jitter. An alternative that says the object
is not there (404, 410) or cannot be followed (a bad redirect, a wrong `Content-Range`) is dropped
for this request and the next one is tried at once; the request fails when none is left. 400, 401
and 403 end it at once (retrying elsewhere cannot help). Redirects (301, 302, 303, 307, 308) are
followed up to `max_redirects` hops, http and https only, relative `Location`s resolved against the
URL that answered; the result names the final URL. A `Range` request accepts a 206 only with the
matching `Content-Range`; a server that ignores `Range` and answers 200 has the range cut out of
its body, counted in `Fetcher.counts` and noted on the attempt. Every attempt (each hop of a
redirect too) is measured (time to first byte, download time, bytes) and handed to an observer.

Time: every limit and wait of `FetchConfig` is in session seconds. A fetcher measures on its
`clock` (loop seconds by default; in an emulated session the shaper's `netsim.clock.WarpClock`,
which stands still while the server works) and runs `clock_speed` session seconds per clock second
(the time-warp K of the session once media fetching starts; 1 for bootstrap requests, which are no
part of session time): an 8 s first-byte timeout is 8 s of trace time at any K. A failed host's
exclusion (`exclusion_s`) stays in seconds of the clock: it is about the servers, which run on the
wall clock at any K. On a warp clock that holds for its client (netsim.clock `hold_for_client`),
the caller says when it is about to decide (`acting`) and when it waits or is done (`acted`); its
requests act by reaching the shaper. (The simulator
models no timeout; docs/EXPERIMENTS.md, "Time-warp", says how experiments keep the two alike.)
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urljoin, urlsplit

import aiohttp

from netsim.clock import sleep_on, warp_of
from player.abandon import AbandonRule
from player.client.progress import AbandonNow, ProgressWatch
from server.formats.urls import redact_url

_T = TypeVar("_T")
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
NOT_HERE_STATUS = frozenset({404, 410})  # this alternative lacks the object: try the next one
_RANGE_HEADER = re.compile(r"^\s*bytes\s*=\s*(\d+)\s*-\s*(\d+)\s*$", re.IGNORECASE)
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)\s*-\s*(\d+)\s*/\s*(\d+|\*)\s*$", re.IGNORECASE)
ERROR_BODY_BYTES = 2048  # read of a 4xx/5xx answer's body, for its error text
ERROR_TEXT_CHARS = 200  # kept of that text (a server's words go into logs and reports)


@dataclass(frozen=True, kw_only=True, slots=True)
class FetchConfig:
    """Limits of one request (session seconds: see the module's "Time"), the retry policy and the
    redirect limit."""

    connect_timeout_s: float = 3.0
    first_byte_timeout_s: float = 8.0  # request sent -> response headers
    read_timeout_s: float = 8.0  # longest gap between body chunks
    attempts: int = 4  # tries per request, across alternatives (at least one per alternative)
    backoff_base_s: float = 0.1
    backoff_max_s: float = 2.0
    exclusion_s: float = 10.0  # a failed host is skipped this long (unless nothing else is left)
    chunk_bytes: int = 64 * 1024
    abandon: AbandonRule = AbandonRule()  # when a download in flight is offered for abandonment (session s)
    max_redirects: int = 5  # hops followed per attempt (browsers allow 20; CDNs use one or two)

    def __post_init__(self) -> None:
        for name in ("connect_timeout_s", "first_byte_timeout_s", "read_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
        if self.attempts < 1:
            raise ValueError("attempts must be >= 1")
        if self.backoff_base_s < 0 or self.backoff_max_s < self.backoff_base_s or self.exclusion_s < 0:
            raise ValueError("need 0 <= backoff_base_s <= backoff_max_s and exclusion_s >= 0")
        if not 0 <= self.max_redirects <= 20:
            raise ValueError(f"max_redirects must be 0..20, got {self.max_redirects}")


@dataclass(frozen=True, kw_only=True, slots=True)
class Attempt:
    """One HTTP exchange, successful or not (seconds of the fetcher's clock); a redirect hop is one too.
    `note` says what the client did about a server's oddity (a redirect followed, a range cut)."""

    url: str
    status: int | None
    error: str | None
    ttfb_s: float | None
    duration_s: float
    size_bytes: int
    request_id: str | None = None
    note: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class FetchResult:
    url: str  # the URL that answered (after redirects): relative references resolve against it
    body: bytes
    status: int
    ttfb_s: float  # request sent -> first byte of the final answer (redirect hops included)
    duration_s: float  # request sent -> last byte, of the successful attempt
    attempts: tuple[Attempt, ...]
    headers: Mapping[str, str] = field(default_factory=dict)
    range_ignored: bool = False  # the server answered a Range request with the whole object
    port: int | None = None  # the local port of the connection the answer came on

    @property
    def size_bytes(self) -> int:
        return len(self.body)


class FetchError(Exception):
    """A request that failed for good; `permanent` when the server said no (4xx) rather than failing.
    `server_text`: what the last 4xx/5xx answer said about it (`error_text`; None: nothing), also at
    the end of the message ("GET ...: HTTP 400: _HLS_part ... is more than 6 parts past ...")."""

    def __init__(self, message: str, *, attempts: Sequence[Attempt], permanent: bool, status: int | None = None,
                 server_text: str | None = None):
        super().__init__(f"{message}: {server_text}" if server_text else message)
        self.attempts = tuple(attempts)
        self.permanent = permanent
        self.status = status
        self.server_text = server_text


def error_text(body: bytes, content_type: str = "") -> str:
    """A 4xx/5xx answer's own words, safe to log: a JSON body's `"error"` (the bundled servers'
    `json_error`), else the text; control and format characters (newlines, escapes, bidi overrides:
    a hostile server must not forge log lines or terminal output) become spaces, runs of spaces one,
    and at most `ERROR_TEXT_CHARS` characters are kept ("..." says more was cut). "" for none."""
    text = body[:ERROR_BODY_BYTES].decode("utf-8", "replace")
    if "json" in content_type.lower():
        try:
            said = json.loads(text)
        except ValueError:
            said = None
        if isinstance(said, dict) and isinstance(said.get("error"), str):
            text = said["error"]
    text = " ".join("".join(" " if unicodedata.category(c)[0] in "CZ" else c for c in text).split())
    return text if len(text) <= ERROR_TEXT_CHARS else text[:ERROR_TEXT_CHARS - 3] + "..."


ABANDONED = "abandoned"  # the error an attempt records when the caller abandoned it (not a failure)


class Abandoned(Exception):
    """The caller's progress callback asked to stop an in-flight download: at the check where it did,
    `bytes_received` of the body were in, `elapsed_s` after the request (`ttfb_s` to its first byte;
    seconds of the fetcher's clock)."""

    def __init__(self, bytes_received: int, elapsed_s: float, ttfb_s: float = 0.0) -> None:
        super().__init__(f"abandoned after {bytes_received} bytes")
        self.bytes_received = bytes_received
        self.elapsed_s = elapsed_s
        self.ttfb_s = ttfb_s


ProgressCallback = Callable[[int, int, float], bool]  # (bytes received, expected total or 0, elapsed s) -> keep going
Observer = Callable[[Attempt], None]
Route = Callable[[str], Awaitable[str]]  # where to actually connect for a URL (e.g. through a shaper)


def host_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def alternative_bases(urls: Sequence[str]) -> dict[str, str]:
    """What tells alternatives apart: each URL without the path they share at the end, up to a "/"
    (the BaseURL it was built from: `http://a/cdn1/` and `http://a/cdn2/` for `.../v/1.m4s`), so
    that a failing BaseURL is skipped by later requests even when all share one host."""
    if len(urls) < 2:
        return {u: host_of(u) for u in urls}
    reversed_common = os.path.commonprefix([u[::-1] for u in urls])
    shared = reversed_common[::-1]
    shared = shared[shared.find("/") + 1:] if "/" in shared else ""
    return {u: u[: len(u) - len(shared)] for u in urls}


def requested_range(headers: Mapping[str, str] | None) -> tuple[int, int] | None:
    """The inclusive (first, last) of a single-range `Range: bytes=first-last` header, else None."""
    for name, value in (headers or {}).items():
        if name.lower() == "range":
            match = _RANGE_HEADER.match(value)
            if match is None:
                raise ValueError(f"only Range: bytes=first-last is supported, got {value!r}")
            first, last = int(match.group(1)), int(match.group(2))
            if last < first:
                raise ValueError(f"Range {value!r} ends before it starts")
            return first, last
    return None


class Fetcher:
    """Fetches objects over one aiohttp session with the failover and retry policy above.

    `counts` tallies what a report should show about the servers: `redirects` followed,
    `range_ignored` (200 answers to Range requests, cut to the range), `not_here` (404/410 answers
    that sent a request on to another alternative), `bad_content_range` (206 answers refused).

    `clock` (seconds; every measured time is on it) and `clock_speed` (session seconds per clock
    second, settable: the harness raises it to the session's K when media fetching starts) put the
    config's limits on session time."""

    def __init__(self, session: aiohttp.ClientSession, config: FetchConfig | None = None, *,
                 rng: random.Random | None = None, observer: Observer | None = None,
                 clock: Callable[[], float] = time.monotonic, route: Route | None = None,
                 clock_speed: float = 1.0) -> None:
        if not clock_speed > 0:
            raise ValueError(f"clock_speed must be > 0, got {clock_speed}")
        self.session = session
        self.clock_speed = clock_speed
        self.config = config or FetchConfig()
        self.rng = rng or random.Random(0)
        self.observer = observer
        self.clock = clock
        self.route = route
        self.counts: Counter[str] = Counter()
        self._excluded_until: dict[str, float] = {}

    def acting(self) -> None:
        """Tell a warp clock that this client is about to act (decide, then request or wait): the
        emulated world waits for it (netsim.clock `hold_for_client`); nothing on any other clock."""
        warp = warp_of(self.clock)
        if warp is not None:
            warp.hold_for_client()

    def acted(self, port: int | None = None) -> None:
        """Tell a warp clock that this client acted (netsim.clock `hold_for_client`): it waits, or
        has nothing more to ask, and is done with the answer that came on local `port`; nothing on
        any other clock. (A request acts by reaching the shaper.)"""
        warp = warp_of(self.clock)
        if warp is not None:
            warp.client_done(None, port)

    def done_with(self, port: int | None) -> None:
        """The caller is done with the answer that came on local `port` (it asks again, perhaps on
        another connection): that connection's hold for the client ends."""
        warp = warp_of(self.clock)
        if warp is not None and port is not None:
            warp.client_done(port)

    def clock_s(self, session_s: float) -> float:
        """`session_s` session seconds in seconds of the fetcher's clock."""
        return session_s / self.clock_speed

    async def within(self, awaitable: Awaitable[_T], session_s: float) -> _T:
        """`awaitable`'s result, or TimeoutError (it is cancelled) once `session_s` session seconds
        have passed on the fetcher's clock: time the clock stood still does not count."""
        loop = asyncio.get_running_loop()
        deadline = self.clock() + self.clock_s(session_s)
        async with asyncio.timeout(None) as timeout:
            def check() -> None:
                nonlocal handle
                remaining = deadline - self.clock()
                if remaining > 0:  # the clock stood still for part of the wait: wait that much longer
                    handle = loop.call_later(remaining, check)
                else:
                    timeout.reschedule(loop.time())  # expires now: cancels the await, raises TimeoutError

            handle = loop.call_later(self.clock_s(session_s), check)
            try:
                return await awaitable
            finally:
                handle.cancel()

    def excluded(self, url: str) -> bool:
        """Whether the host of `url` failed recently."""
        return self._excluded_until.get(host_of(url), 0.0) > self.clock()

    def exclude(self, url: str, base: str | None = None) -> None:
        """Skip the host of `url` (and the BaseURL `base` it was built from) for `exclusion_s`."""
        # Not scaled to session time: a host's health is the servers', which live in wall time.
        until = self.clock() + self.config.exclusion_s
        self._excluded_until[host_of(url)] = until
        if base is not None:
            self._excluded_until[base] = until

    def order(self, urls: Sequence[str]) -> list[str]:
        """Alternatives with excluded hosts moved to the back (kept as a last resort), and behind
        them those whose own BaseURL failed (alternatives on one host are told apart by it)."""
        unique = list(dict.fromkeys(urls))
        bases = alternative_bases(unique)
        now = self.clock()

        def rank(url: str) -> int:
            return (self._excluded_until.get(bases[url], 0.0) > now) + self.excluded(url)

        return sorted(unique, key=rank)

    async def fetch(self, urls: Sequence[str], *, method: str = "GET", headers: Mapping[str, str] | None = None,
                    json_body: object = None, expected_bytes: int = 0,
                    on_progress: ProgressCallback | None = None, keep_hold: bool = False) -> FetchResult:
        """The first successful answer among `urls`, retrying transient failures. `keep_hold`: the
        caller acts on the answer (`done_with(result.port)`, `acted`); else the fetcher is done with
        it at once (netsim.clock `hold_for_client`)."""
        result = await self._fetch(urls, method, headers, json_body, expected_bytes, on_progress)
        if not keep_hold:
            self.done_with(result.port)
        return result

    async def _fetch(self, urls: Sequence[str], method: str, headers: Mapping[str, str] | None, json_body: object,
                     expected_bytes: int, on_progress: ProgressCallback | None) -> FetchResult:
        if not urls:
            raise ValueError("nothing to fetch: no URLs")
        alternatives = list(dict.fromkeys(urls))
        byte_range = requested_range(headers)
        attempts: list[Attempt] = []
        refused: dict[str, _Refused] = {}  # alternatives that cannot serve this object
        failures: Counter[str] = Counter()  # transient failures of each alternative in this request
        last_status: int | None = None
        last_text: str | None = None  # what the last 4xx/5xx answer said
        backoff_step = 0
        for _ in range(max(self.config.attempts, len(alternatives))):
            candidates = [u for u in alternatives if u not in refused]
            if not candidates:
                break
            # A failed host was just excluded, and alternatives on one host (two BaseURL paths)
            # take turns: the one that failed least in this request comes first.
            ranked = self.order(candidates)
            url = min(ranked, key=lambda u: (failures[u], ranked.index(u)))
            if failures[url]:  # back to one that failed: wait; the next in the ranking is tried at once
                await sleep_on(self.clock, self.clock_s(self._backoff_s(backoff_step)))
            try:
                return await self._attempt(url, method, headers, json_body, expected_bytes, on_progress, attempts,
                                           byte_range)
            except _Permanent as exc:
                raise FetchError(f"{method} {redact_url(url)}: HTTP {exc.status}", attempts=attempts, permanent=True,
                                 status=exc.status, server_text=exc.text or None) from None
            except _Refused as exc:
                refused[url] = exc
                last_text = exc.text or last_text
                if exc.status in NOT_HERE_STATUS and len(refused) < len(alternatives):
                    self.counts["not_here"] += 1
            except _Transient as exc:
                last_status = exc.status
                last_text = exc.text or None
                backoff_step += 1
                failures[url] += 1
                self.exclude(url, alternative_bases(alternatives)[url])
        if refused and len(refused) == len(alternatives):
            first = next(iter(refused.values()))
            where = f" (on all {len(alternatives)} alternatives)" if len(alternatives) > 1 else ""
            status = first.status if all(r.status == first.status for r in refused.values()) else None
            raise FetchError(f"{method} {redact_url(alternatives[0])}: {first.reason}{where}", attempts=attempts,
                             permanent=True, status=status, server_text=last_text)
        tried = ", ".join(sorted({host_of(a.url) for a in attempts}))
        reason = attempts[-1].error if attempts and attempts[-1].error else f"HTTP {last_status}"
        raise FetchError(f"{method} {redact_url(urls[0])} failed after {len(attempts)} attempts on {tried}: {reason}",
                         attempts=attempts, permanent=False, status=last_status, server_text=last_text)

    def _backoff_s(self, step: int) -> float:
        ceiling = min(self.config.backoff_max_s, self.config.backoff_base_s * 2 ** (step - 1))
        return self.rng.uniform(0, ceiling)  # "full jitter": spreads retries of many clients

    async def _attempt(self, url: str, method: str, headers: Mapping[str, str] | None, json_body: object,
                       expected_bytes: int, on_progress: ProgressCallback | None, attempts: list[Attempt],
                       byte_range: tuple[int, int] | None) -> FetchResult:
        """One try of one alternative, following its redirects."""
        cfg = self.config
        start = self.clock()
        current, request_headers, body = url, dict(headers or {}), json_body
        for hop in range(cfg.max_redirects + 1):
            exchange = _Exchange(self, current, start, attempts)
            response = await exchange.send(method, request_headers, body)
            if response is None:  # the exchange failed and was recorded
                raise _Transient(exchange.status)
            try:
                status = response.status
                if status not in REDIRECT_STATUS:
                    return await exchange.finish(response, expected_bytes, on_progress, byte_range)
                location = response.headers.get("Location")
                target = urljoin(current, location) if location else None
                problem = _redirect_problem(target, hop, cfg.max_redirects)
                exchange.record(problem, note=None if problem else f"redirect to {redact_url(target or '')}")
                if problem:
                    raise _Refused(status, problem)
            finally:
                response.release()
            assert target is not None
            self.counts["redirects"] += 1
            if status == 303 or (status in (301, 302) and method == "POST"):
                method, body = "GET", None  # what browsers do (RFC 9110 15.4.2-4)
            if host_of(target) != host_of(current):
                request_headers = {k: v for k, v in request_headers.items() if k.lower() != "authorization"}
            current = target
        raise AssertionError("unreachable: the last hop refuses to redirect further")


def _redirect_problem(target: str | None, hop: int, max_redirects: int) -> str | None:
    if target is None:
        return "a redirect without a Location header"
    if urlsplit(target).scheme not in ("http", "https"):
        return f"a redirect to a non-HTTP URL ({urlsplit(target).scheme or 'no scheme'}:) is refused"
    if hop >= max_redirects:
        return f"too many redirects (more than {max_redirects})"
    return None


class _Exchange:
    """One request and its answer, measured; `record` reports it to the fetcher's observer."""

    def __init__(self, fetcher: Fetcher, url: str, start: float, attempts: list[Attempt]) -> None:
        self.fetcher = fetcher
        self.url = url
        self.start = start  # of the whole attempt: the result's TTFB and duration include redirect hops
        self.hop_start = fetcher.clock()
        self.ttfb: float | None = None  # of this hop
        self.status: int | None = None
        self.received = 0
        self.request_id: str | None = None
        self.attempts = attempts  # every exchange of the request, across alternatives
        self.port: int | None = None  # the local port of the connection that answered

    def record(self, error: str | None, *, note: str | None = None) -> Attempt:
        attempt = Attempt(url=self.url, status=self.status, error=error, ttfb_s=self.ttfb,
                          duration_s=self.fetcher.clock() - self.hop_start, size_bytes=self.received,
                          request_id=self.request_id, note=note)
        self.attempts.append(attempt)
        if self.fetcher.observer is not None:
            self.fetcher.observer(attempt)
        return attempt

    async def send(self, method: str, headers: Mapping[str, str], json_body: object) -> aiohttp.ClientResponse | None:
        """The response (None when none came: recorded). 4xx and 5xx answers are recorded and raise."""
        fetcher, cfg = self.fetcher, self.fetcher.config
        # Connecting is timed by aiohttp (a local shaper accepts at once: no server time in it); the
        # first byte and the body's chunks on the fetcher's clock (`Fetcher.within`).
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=fetcher.clock_s(cfg.connect_timeout_s), sock_read=None)
        try:
            target = await fetcher.route(self.url) if fetcher.route is not None else self.url
            response = await fetcher.within(
                fetcher.session.request(method, target, headers=headers, json=json_body, timeout=timeout,
                                        allow_redirects=False),
                cfg.connect_timeout_s + cfg.first_byte_timeout_s)
        except TimeoutError:
            self.record("no response (timeout)")
            return None
        except (aiohttp.ClientError, OSError) as exc:
            self.record(_describe(exc))
            return None
        self.ttfb = fetcher.clock() - self.hop_start
        self.port = _local_port(response)
        self.status = status = response.status
        self.request_id = response.headers.get("X-Request-ID")
        if status < 400:
            return response
        text = await self._error_text(response)
        response.release()
        self.record(f"HTTP {status}")
        if status in RETRYABLE_STATUS or status >= 500:
            raise _Transient(status, text)
        if status in NOT_HERE_STATUS:
            raise _Refused(status, f"HTTP {status}", text)
        raise _Permanent(status, text)

    async def _error_text(self, response: aiohttp.ClientResponse) -> str:
        """`error_text` of a 4xx/5xx answer's first `ERROR_BODY_BYTES`, read within one `read_timeout_s`
        in all (a body that trickles cannot hold the error path longer; what came by then is used, ""
        when nothing did or the connection failed: the status alone then)."""
        body = bytearray()

        async def read() -> None:
            while len(body) < ERROR_BODY_BYTES:
                piece = await response.content.read(ERROR_BODY_BYTES - len(body))
                if not piece:
                    return
                body.extend(piece)

        try:
            await self.fetcher.within(read(), self.fetcher.config.read_timeout_s)
        except (TimeoutError, aiohttp.ClientError, OSError):
            pass
        return error_text(bytes(body), response.headers.get("Content-Type", ""))

    async def finish(self, response: aiohttp.ClientResponse, expected_bytes: int,
                     on_progress: ProgressCallback | None, byte_range: tuple[int, int] | None) -> FetchResult:
        """Reads the body of a final (non-redirect) answer, checking it against the range asked for."""
        cfg = self.fetcher.config
        clock = self.fetcher.clock
        cut: tuple[int, int] | None = None  # bytes to keep of a 200 answer to a Range request
        note = None
        total = response.content_length or expected_bytes
        if byte_range is not None and response.status == 206:
            problem = _content_range_problem(response.headers.get("Content-Range"), byte_range)
            if problem:
                self.record(problem)
                self.fetcher.counts["bad_content_range"] += 1
                raise _Refused(206, problem)
        elif byte_range is not None:
            cut = byte_range
            total = byte_range[1] - byte_range[0] + 1
            note = f"the server ignored Range: bytes {byte_range[0]}-{byte_range[1]} cut out of a {response.status} answer"
        chunks: list[bytes] = []
        fetcher = self.fetcher
        # The checks run on the clock's timers at the rule's times (player.client.progress), not as chunks come.
        watch = None if on_progress is None else ProgressWatch(
            clock, cfg.abandon.on_clock(fetcher.clock_speed), self.start, response.content, on_progress,
            total_bytes=total, skip_bytes=0 if cut is None else cut[0])
        try:
            while chunk := await fetcher.within(response.content.read(cfg.chunk_bytes), cfg.read_timeout_s):
                chunks.append(chunk)
                self.received += len(chunk)
                if watch is not None:
                    watch.arrived()
                if cut is not None and self.received > cut[1]:
                    break  # the rest of the whole object is not wanted: the connection is dropped
        except AbandonNow:
            assert watch is not None and watch.given_up is not None
            self.record(ABANDONED)
            raise Abandoned(*watch.given_up, ttfb_s=self.hop_start - self.start + (self.ttfb or 0.0)) from None
        except TimeoutError:
            self.record("timeout")
            raise _Transient(self.status) from None
        except aiohttp.ClientPayloadError:
            self.record(f"short body: {self.received} of {response.content_length or '?'} bytes (the connection "
                        "closed early)")
            raise _Transient(self.status) from None
        except (aiohttp.ClientError, OSError) as exc:
            self.record(_describe(exc))
            raise _Transient(self.status) from None
        finally:
            if watch is not None:
                watch.stop()
        body = b"".join(chunks)
        if cut is not None:
            if len(body) <= cut[1]:
                self.record(f"short body: {len(body)} bytes, the range asked for ends at byte {cut[1]}", note=note)
                raise _Transient(self.status)
            response.close()  # unread bytes may remain: never reuse this connection
            body = body[cut[0]:cut[1] + 1]
            self.fetcher.counts["range_ignored"] += 1
        elif response.content_length is not None and self.received != response.content_length:
            self.record(f"short body: {self.received} of {response.content_length} bytes")
            raise _Transient(self.status)
        self.record(None, note=note)
        return FetchResult(url=self.url, body=body, status=response.status, ttfb_s=self.hop_start - self.start
                           + (self.ttfb or 0.0), duration_s=clock() - self.start, attempts=tuple(self.attempts),
                           headers=dict(response.headers), range_ignored=cut is not None, port=self.port)


def _content_range_problem(header: str | None, wanted: tuple[int, int]) -> str | None:
    """Why a 206's Content-Range does not answer `Range: bytes=first-last` (None: it does).
    A range running past the end of the object may be answered up to its last byte (RFC 9110 14.1.2)."""
    if header is None:
        return f"a 206 answer without Content-Range to Range: bytes={wanted[0]}-{wanted[1]}"
    match = _CONTENT_RANGE.match(header)
    if match is None:
        return f"a 206 answer with Content-Range {header[:60]!r} (not bytes first-last/length)"
    first, last, length = int(match.group(1)), int(match.group(2)), match.group(3)
    clipped = length != "*" and last == int(length) - 1 and last < wanted[1]
    if first != wanted[0] or (last != wanted[1] and not clipped):
        return f"a 206 answer with Content-Range bytes {first}-{last} to Range: bytes={wanted[0]}-{wanted[1]}"
    return None


def _local_port(response: aiohttp.ClientResponse) -> int | None:
    """The local port of the connection `response` came on (None when it cannot be told)."""
    connection = response.connection
    transport = connection.transport if connection is not None else None
    name = transport.get_extra_info("sockname") if transport is not None else None
    return int(name[1]) if isinstance(name, tuple) and len(name) >= 2 else None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class _Transient(Exception):
    def __init__(self, status: int | None, text: str = "") -> None:
        self.status = status
        self.text = text  # the server's error text (`error_text`), "" for none


class _Permanent(Exception):
    def __init__(self, status: int, text: str = "") -> None:
        self.status = status
        self.text = text


class _Refused(Exception):
    """This alternative cannot serve the object (404/410, a bad redirect, a wrong Content-Range)."""

    def __init__(self, status: int, reason: str, text: str = "") -> None:
        self.status = status
        self.reason = reason
        self.text = text
