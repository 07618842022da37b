"""The flash crowd's client: the headless player without decoding, on a modeled access link.

Each session is `HeadlessPlayer` unchanged (the session core, the ABR from the registry, failover,
CMCD) after the bootstrap every player does (playback API, MPD, ClearKey license, `segments.json`)
and the init segments the decode pipeline would fetch. What makes it light:

- no decoding (`InitSegmentsOnly` fetches the init segments and drops the media);
- no shaper: the access link is modeled by `netsim.link.LinkModel`, the simulator's link model. Bytes
  cross loopback at full speed; each answer is handed to the player when the modeled link (the
  session's trace, its RTT, transfers in turn) would have delivered it;
- one aiohttp session (one connection pool) per worker process for all its sessions.

A shard (`ShardSpec`) is a batch of sessions run in one event loop; `crowd_task` runs it in a worker
process (a process pool or a Dask worker) and returns plain rows.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp

from netsim.link import LinkModel
from netsim.trace import Trace
from player.client.bootstrap import BootstrapError, bootstrap_stack
from player.client.decoding import DecodeSummary, InitUrls, TrackKind
from player.client.fetch import Attempt, FetchConfig, Fetcher, FetchError, FetchResult
from player.client.headless import HeadlessPlayer, PlayerConfig
from player.errors import CliError
from player.events import SessionEvent
from player.research.experiment import _lag_probe, _p99_ms  # one lateness probe for every runner
from player.session import SessionConfig
from server.formats.urls import SIGNED_PREFIX

Row = dict[str, Any]
GATEWAY_ENDPOINTS = ("auth", "playback", "license")


def _split(url: str) -> tuple[str, str]:
    """(host, path) of an absolute URL, by string operations: this runs on every request of the crowd."""
    begin = url.find("//") + 2
    slash = url.find("/", begin)
    if slash < 0:
        return url[begin:], "/"
    return url[begin:slash], url[slash:].partition("?")[0]


def _origin_of(url: str) -> str:
    """`scheme://host:port` of an absolute URL (what `player.client.fetch.host_of` gives)."""
    slash = url.find("/", url.find("//") + 2)
    return url if slash < 0 else url[:slash]


def endpoint_of(url: str) -> str:
    """Which service a player request went to: `auth`, `playback`, `license` (the gateway) or `edge`."""
    path = _split(url)[1]
    if path.startswith(SIGNED_PREFIX):
        return "edge"
    first = path[1:].split("/", 1)[0]
    return first if first in GATEWAY_ENDPOINTS else "other"


def content_key(url: str) -> str | None:
    """`host/<title>/<file>` of a signed edge URL (the token dropped), else None."""
    host, path = _split(url)
    if not path.startswith(SIGNED_PREFIX):
        return None
    return f"{host}/{path[len(SIGNED_PREFIX):].partition('/')[2]}"


@dataclass(kw_only=True, slots=True)
class Tally:
    """What one session's requests met: statuses per endpoint (None: no answer), the edges' X-Cache,
    and the edge objects it received."""

    statuses: dict[str, Counter[str]] = field(default_factory=dict)
    x_cache: Counter[str] = field(default_factory=Counter)
    objects: set[str] = field(default_factory=set)
    bytes_received: int = 0

    def attempts(self, attempts: Sequence[Attempt]) -> None:
        for attempt in attempts:
            status = "none" if attempt.status is None else str(attempt.status)
            self.statuses.setdefault(endpoint_of(attempt.url), Counter())[status] += 1

    def result(self, result: FetchResult) -> None:
        self.bytes_received += result.size_bytes
        cache = result.headers.get("X-Cache")
        if cache is not None:
            self.x_cache[cache] += 1
        key = content_key(result.url)
        if key is not None:
            self.objects.add(key)


class ModeledLinkFetcher(Fetcher):
    """A `Fetcher` whose answers arrive when the session's modeled access link would deliver them.

    Trace time is `offset_s` + session seconds since the fetcher was made (wall x `speed`). An
    answer's first byte comes one RTT after the server answered (server time counts `speed` times,
    as every wall second does in a time-warped session); its body then crosses the link after the
    bodies before it (one transfer at a time). Times in the result are wall seconds, as the
    `Fetcher`'s are. Downloads arrive whole: abandonment is not modeled.
    """

    def __init__(self, session: aiohttp.ClientSession, config: FetchConfig, *, link: LinkModel, offset_s: float,
                 rtt_s: float, speed: float, tally: Tally, rng: random.Random) -> None:
        super().__init__(session, config, rng=rng)
        self.link = link
        self.offset_s = offset_s
        self.rtt_s = rtt_s
        self.speed = speed
        self.tally = tally
        self._loop = asyncio.get_running_loop()
        self._t0 = self._loop.time()
        self._link_free_s = offset_s

    # Failover bookkeeping keyed by host, without `urlsplit` on every alternative of every request.
    def excluded(self, url: str) -> bool:
        return self._excluded_until.get(_origin_of(url), 0.0) > self.clock()

    def exclude(self, url: str, base: str | None = None) -> None:
        until = self.clock() + self.config.exclusion_s
        self._excluded_until[_origin_of(url)] = until
        if base is not None:  # the BaseURL the failed alternative was built from (see `Fetcher.exclude`)
            self._excluded_until[base] = until

    def trace_now(self) -> float:
        return self.offset_s + (self._loop.time() - self._t0) * self.speed

    async def fetch(self, urls: Sequence[str], **kwargs: Any) -> FetchResult:
        asked_s = self.trace_now()
        try:
            result = await super().fetch(urls, **kwargs)
        except FetchError as exc:
            self.tally.attempts(exc.attempts)
            raise
        self.tally.attempts(result.attempts)
        self.tally.result(result)
        first_byte_s = self.trace_now() + self.rtt_s
        start_s = max(first_byte_s, self._link_free_s)
        done_s = self.link.finish_time(start_s, result.size_bytes)
        self._link_free_s = done_s
        wait_wall_s = (done_s - self.trace_now()) / self.speed
        if wait_wall_s > 0:
            await asyncio.sleep(wait_wall_s)
        return replace(result, ttfb_s=(first_byte_s - asked_s) / self.speed,
                       duration_s=(done_s - asked_s) / self.speed)


class InitSegmentsOnly:
    """A `Decoder` that decodes nothing: it fetches every rendition's init segment, as the decode
    pipeline does before playback, and drops the media it is handed."""

    def __init__(self) -> None:
        self.segments = 0
        self.errors: list[str] = []  # one per init segment at most: no bound needed
        self._errors_taken = 0

    async def start(self, init_urls: InitUrls, fetcher: Fetcher, *, continuous: bool) -> None:
        async def one(rep_id: str, urls: Sequence[str], headers: Mapping[str, str]) -> None:
            try:
                await fetcher.fetch(list(urls), headers={"CMCD-Object": "ot=i", **headers})
            except FetchError as exc:
                self.errors.append(f"init segment of {rep_id}: {exc}")

        await asyncio.gather(*(one(rep_id, urls, headers) for rep_id, (urls, headers) in init_urls.items() if urls))

    def submit(self, kind: TrackKind, rep_id: str, index: int, data: bytes, *, ends_segment: bool = True) -> None:
        self.segments += 1

    def new_errors(self) -> tuple[str, ...]:
        new, self._errors_taken = tuple(self.errors[self._errors_taken:]), len(self.errors)
        return new

    async def finish(self) -> DecodeSummary:
        return DecodeSummary(frames_decoded=0, frames_failed=0, segments=self.segments, failed_segments=0,
                             first_frame_wall=None, errors=tuple(self.errors))

    def close(self) -> None:
        """Nothing to stop: it decodes nothing and has no thread."""


class _PlaySink:
    """An event sink that keeps only the wall time playback started (the rest is in the report)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.play_wall: float | None = None

    def emit(self, event: SessionEvent) -> None:
        if event.kind == "play" and self.play_wall is None:
            self.play_wall = self._loop.time()


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionSpec:
    """One viewer: which title, when it presses play (session seconds after the run's start), on
    which access link, signed in as whom."""

    index: int
    group: str  # "crowd" or "playing"
    title: str
    arrival_s: float
    trace: Trace
    offset_s: float  # where on its trace the session starts
    username: str
    password: str = field(repr=False)
    access_token: str | None = field(default=None, repr=False)  # None: the session logs in itself
    max_segments: int | None = None  # leave after this many segments (None: the whole title)


@dataclass(frozen=True, kw_only=True, slots=True)
class PlayerSettings:
    """What every session of a run shares."""

    gateway_url: str
    speed: float
    abr: str = "bba"
    buffer_cap_s: float = 30.0
    rtt_ms: float = 40.0
    fetch: FetchConfig = field(default_factory=FetchConfig)
    seed: int = 0

    def player_config(self, max_segments: int | None) -> PlayerConfig:
        # Buffer samples every 5 session seconds (the default 0.5 s would be 20 wakeups a wall second
        # per session at 10x); nothing reads them here. No CMCD: dash.js and Shaka send none unless
        # asked, and building it is a tenth of the client's time per request.
        return PlayerConfig(abr=self.abr, session=SessionConfig(buffer_cap_s=self.buffer_cap_s), speed=self.speed,
                            decode="none", audio=True, max_segments=max_segments, buffer_sample_s=5.0, cmcd=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class ShardSpec:
    """Sessions run together in one event loop; `epoch` is the wall clock (`time.time()`) of
    session time 0, the same in every process so shards on several hosts stay aligned."""

    settings: PlayerSettings
    sessions: tuple[SessionSpec, ...]
    epoch: float


@dataclass(frozen=True, kw_only=True, slots=True)
class ShardResult:
    rows: tuple[Row, ...]
    objects: frozenset[str]  # `edge host/<title>/<file>` received, over the shard's sessions
    loop_lag_p99_ms: float | None
    cpu_s: float


async def play_session(http: aiohttp.ClientSession, spec: SessionSpec, settings: PlayerSettings, *,
                       epoch_loop: float) -> tuple[Row, Tally]:
    """Wait for the session's arrival, then bootstrap and play it; a row of what happened."""
    loop = asyncio.get_running_loop()
    planned = epoch_loop + spec.arrival_s / settings.speed
    await asyncio.sleep(max(0.0, planned - loop.time()))
    arrived = loop.time()
    tally = Tally()
    fetcher = ModeledLinkFetcher(http, settings.fetch, link=LinkModel(spec.trace), offset_s=spec.offset_s,
                                 rtt_s=settings.rtt_ms / 1000, speed=settings.speed, tally=tally,
                                 rng=random.Random(settings.seed * 1_000_003 + spec.index))
    row: Row = {"index": spec.index, "group": spec.group, "title": spec.title, "arrival_s": spec.arrival_s,
                "late_s": round((arrived - planned) * settings.speed, 4), "error": None, "startup_s": None}
    sink = _PlaySink(loop)
    decoder = InitSegmentsOnly()
    try:
        source = await bootstrap_stack(fetcher, settings.gateway_url, spec.title, username=spec.username,
                                       password=spec.password, access_token=spec.access_token)
        row["bootstrap_ms"] = {k: round(v * 1000, 2) for k, v in source.timings_s.items()}
        player = HeadlessPlayer(source, settings.player_config(spec.max_segments), fetcher, events=sink,
                                decoder=decoder)
        await decoder.start(player.init_urls(), fetcher, continuous=False)  # VOD: whole segments
        report = await player.run()
    except BootstrapError as exc:
        row["error"] = f"bootstrap: {exc}"
    except (CliError, aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        # One session failing must not end the others: its row says why.
        row["error"] = f"{type(exc).__name__}: {exc}"
    else:
        metrics = report.metrics
        row.update(error=report.error, segments=metrics.segments, qoe_lin=metrics.qoe["lin"],
                   rebuffer_s=metrics.rebuffer_s, rebuffer_count=metrics.rebuffer_count,
                   avg_bitrate_bps=metrics.avg_bitrate_bps, switches=metrics.switches,
                   init_errors=len(decoder.errors))
        if sink.play_wall is not None:
            row["startup_s"] = round((sink.play_wall - arrived) * settings.speed, 4)
    row["statuses"] = {endpoint: dict(counts) for endpoint, counts in tally.statuses.items()}
    row["x_cache"] = dict(tally.x_cache)
    row["bytes"] = tally.bytes_received
    return row, tally


async def run_shard(shard: ShardSpec) -> ShardResult:
    """Every session of the shard in this event loop, on one connection pool."""
    cpu0 = time.process_time()
    loop = asyncio.get_running_loop()
    epoch_loop = loop.time() + (shard.epoch - time.time())
    lags_s: list[float] = []
    probe = asyncio.create_task(_lag_probe(lags_s))
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
    try:
        async with aiohttp.ClientSession(connector=connector, trust_env=False) as http:
            played = await asyncio.gather(*(play_session(http, spec, shard.settings, epoch_loop=epoch_loop)
                                            for spec in shard.sessions))
    finally:
        probe.cancel()
    objects: set[str] = set()
    for _, tally in played:
        objects |= tally.objects
    return ShardResult(rows=tuple(row for row, _ in played), objects=frozenset(objects),
                       loop_lag_p99_ms=_p99_ms(lags_s), cpu_s=round(time.process_time() - cpu0, 3))


def crowd_task(shard: ShardSpec) -> ShardResult:
    """A shard in a worker process (module-level, so process pools and Dask can ship it)."""
    return asyncio.run(run_shard(shard))
