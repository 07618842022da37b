"""Playing a stream headless: an optional local stack, an optional shaped link, bootstrap, playback.

`play_headless` is what `abrkit play --headless` and the experiment runner call. What to play
(`PlayTarget`): `DemoTarget` starts an embedded stack with the demo title and plays it through the
gateway; `TitleTarget` plays a title through a running stack's gateway; `UrlTarget` plays an MPD URL
directly (keys from `keys`, or the MPD's ClearKey Laurl).
With a trace, every connection the player makes crosses one shaped link (`netsim.shaper.Shaper`,
one route per server), K times faster with `speed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from netsim.faults import FaultWindow
from netsim.shaper import Shaper, ShaperConfig
from netsim.trace import Trace
from player.client.bootstrap import PlaybackSource, StreamProtocol, bootstrap_stack, bootstrap_url
from player.client.decoding import Decoder
from player.client.eventlog import EventLog
from player.client.fetch import FetchConfig, Fetcher
from player.client.headless import HeadlessPlayer, PlaybackReport, PlayerConfig
from player.client.hlslive import live_player_class
from player.client.liveplay import LivePlayConfig, LivePlayer, play_live
from player.client.periods import PlayerFactory, play_periods
from player.client.renewal import keep_alive
from player.client.streamkind import StreamOptions, stream_kind
from player.events import EventSink, emit_event


@dataclass(frozen=True, kw_only=True, slots=True)
class DemoTarget:
    """The demo title, on an embedded stack started for this session (packaged on first use)."""

    protocol: StreamProtocol = "auto"  # "hls": its HLS playlists; else its MPD


@dataclass(frozen=True, kw_only=True, slots=True)
class TitleTarget:
    """A title played through a running stack's gateway, logged in as `username`."""

    title: str
    gateway_url: str
    username: str
    password: str = field(repr=False)
    protocol: StreamProtocol = "auto"  # "hls": the title's HLS playlists; else its MPD
    region: str | None = None  # the client region to say to the playback API (docs/STEERING.md)

    def __post_init__(self) -> None:
        if not (self.title and self.gateway_url and self.username):
            raise ValueError("playing a title needs a title name, a gateway URL and a username")


@dataclass(frozen=True, kw_only=True, slots=True)
class UrlTarget:
    """An MPD URL played directly; content keys (KID hex -> key hex) from `keys`, else from the
    MPD's ClearKey Laurl."""

    url: str
    keys: Mapping[str, str] = field(default_factory=dict, repr=False)
    protocol: StreamProtocol = "auto"  # "auto": HLS or DASH by content type, URL suffix or first line

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"an MPD URL is http:// or https://, got {self.url!r}")


PlayTarget = DemoTarget | TitleTarget | UrlTarget


# Builds the decoder for a bootstrapped source (None: no decoding).
DecoderFactory = Callable[[PlaybackSource], Decoder]


@dataclass(frozen=True, kw_only=True, slots=True)
class LinkConfig:
    """The shaped access link (None trace: unshaped loopback)."""

    trace: Trace | None = None
    rtt_ms: float = 80.0
    offset_s: float = 0.0
    # False: token/playback/manifest/license/init go unshaped (sim comparisons), and the session's
    # time starts at the first media request, as the simulator's does: `startup_s` leaves out the
    # pre-roll, which the report gives apart (`preroll_s`, wall seconds; docs/PLAYER.md "Startup").
    shape_bootstrap: bool = True
    faults: tuple[FaultWindow, ...] = ()  # outages and loss bursts, in trace seconds from the link's start
    # True: the link's clock, and with it the session's, stands still while a request is at the
    # server (netsim.clock), so the stack's own time is no trace time at any speed, as in the
    # simulator (the experiment runner's emulated sessions). False: the stack's time is link time.
    exclude_server_time: bool = False
    # True: the clock also leaves out the player's event-loop stalls (a busy worker, a loaded
    # machine), which would otherwise cost K times their length in trace time at speed K.
    exclude_loop_stalls: bool = False
    # False: leave out only the stalls the clock's heartbeat finds, not each late timer's lateness
    # (netsim.clock `exact_timers`; live emulation, whose channel streams on the wall clock).
    exact_timers: bool = True
    # True: the clock also leaves out the loop thread's measured wait for a core (netsim.corewait; Linux),
    # however short: a live player stamps its lag by this clock then, and the channel must follow it
    # (`live_player_clocks`, `LiveConfig.player_clocks`).
    exclude_core_waits: bool = False
    # True: the player's own time from a response's last byte to its next request (or wait) is no
    # link time either, as in the simulator (netsim.clock `hold_for_client`).
    exclude_client_time: bool = False

    @property
    def leaves_time_out(self) -> bool:
        """Whether the clock leaves time out that a live channel must be told of (its lag header)."""
        return self.exclude_server_time or self.exclude_loop_stalls or self.exclude_core_waits


class ShapedRoutes:
    """Sends every connection through one shaper, a listening port per upstream server."""

    def __init__(self, shaper: Shaper | None) -> None:
        self.shaper = shaper
        self.active = shaper is not None
        self._ports: dict[tuple[str, int], int] = {}
        self._lock = asyncio.Lock()

    def shape(self, active: bool) -> None:
        """From now on, route connections through the shaper (True) or straight to the servers."""
        self.active = active

    async def route(self, url: str) -> str:
        if not self.active or self.shaper is None:
            return url
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)
        key = (host, port)
        async with self._lock:
            if key not in self._ports:
                self._ports[key] = await self.shaper.add_route(host, port)
        return urlunsplit(parts._replace(netloc=f"{self.shaper.host}:{self._ports[key]}"))


@contextlib.asynccontextmanager
async def _shaper(link: LinkConfig, speed: float) -> AsyncIterator[Shaper | None]:
    if link.trace is None:
        yield None
        return
    # The shaper's own upstream is unused (routes carry the traffic); point it at a closed port.
    config = ShaperConfig(upstream_host="127.0.0.1", upstream_port=9, trace=link.trace, rtt_ms=link.rtt_ms,
                          speed=speed, start_offset_s=link.offset_s, faults=link.faults,
                          exclude_server_time=link.exclude_server_time, exclude_loop_stalls=link.exclude_loop_stalls,
                          exclude_client_time=link.exclude_client_time, exact_timers=link.exact_timers,
                          exclude_core_waits=link.exclude_core_waits,
                          # the live player stamps its lag by this clock then (`play_headless`: `excluding`)
                          restamp_channel_lag=link.leaves_time_out)
    async with Shaper(config) as shaper:
        yield shaper


@contextlib.asynccontextmanager
async def _demo_stack(protocol: StreamProtocol = "auto") -> AsyncIterator[TitleTarget]:
    """An embedded stack with the demo title on free ports, as a title to play through its gateway."""
    from server.config import StackConfig, default_cache_dir
    from server.stack import ensure_demo_title, start_stack_with_demo_user

    root = default_cache_dir()
    content = root / "content"
    await asyncio.to_thread(ensure_demo_title, content)
    config = StackConfig(config_path=root / "play-stack" / "stack.json", content_root=content, port=0,
                         access_log=False)
    async with start_stack_with_demo_user(config) as (stack, credentials):
        yield TitleTarget(title="demo", gateway_url=stack.gateway_url, username=credentials.username,
                          password=credentials.password, protocol=protocol)


async def _bootstrap(fetcher: Fetcher, target: TitleTarget | UrlTarget) -> PlaybackSource:
    if isinstance(target, UrlTarget):
        return await bootstrap_url(fetcher, target.url, keys=target.keys, protocol=target.protocol)
    return await bootstrap_stack(fetcher, target.gateway_url, target.title, username=target.username,
                                 password=target.password, protocol=target.protocol, region=target.region)


async def play_headless(target: PlayTarget, config: PlayerConfig, *, link: LinkConfig = LinkConfig(),
                        fetch: FetchConfig = FetchConfig(), log_path: Path | None = None,
                        events: EventSink | None = None, decoder_factory: DecoderFactory | None = None,
                        player_factory: PlayerFactory = HeadlessPlayer,
                        on_link: Callable[[Shaper], None] | None = None, shared_link: Shaper | None = None,
                        before_playback: Callable[[], Awaitable[object]] | None = None,
                        live: LivePlayConfig | None = None,
                        on_live_player: Callable[[LivePlayer], object] | None = None,
                        stream_options: StreamOptions = StreamOptions()) -> PlaybackReport:
    """Bootstrap and play one session; returns its report (errors inside playback are in `report.error`).
    `player_factory(source, config, fetcher, events=, decoder=)` builds the player (the desktop player
    passes one that keeps a handle for its controls). `on_link(shaper)` is handed the shaped link once
    it runs (chaos runs cut it with `Shaper.outage`). `shared_link`: a running shaper this player's
    connections cross instead of a link of its own (several players behind one bottleneck; `link.trace`
    must then be None); `before_playback()` is awaited between bootstrap and playback (to start
    several players together). A live MPD (dynamic, open-ended template) plays with the live player
    (`player.client.liveplay`) for `live.duration_s` (default `LivePlayConfig()`), decoding with the
    decoder when one is made; `on_live_player(player)` is handed that player before it runs.
    `stream_options`: options given that apply to some kinds of stream only; one the bootstrapped
    stream would ignore is a `CliError` before playback (`player.client.streamkind`)."""
    if shared_link is not None and link.trace is not None:
        raise ValueError("a player behind a shared link takes its trace from that shaper: give no link.trace")
    connector = aiohttp.TCPConnector(limit=16, ttl_dns_cache=300)
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession(connector=connector, trust_env=False))
        shaper = shared_link if shared_link is not None else await stack.enter_async_context(_shaper(link, config.speed))
        if shaper is not None and on_link is not None:
            on_link(shaper)
        routes = ShapedRoutes(shaper)
        routes.active = shaper is not None and link.shape_bootstrap
        # The session's clock is the link's (standing still while the stack works, see LinkConfig);
        # bootstrap requests are timed at speed 1, media requests in session time from `media()` on.
        fetcher = Fetcher(http, fetch, route=routes.route, clock=shaper.clock.now if shaper is not None else time.monotonic)

        def media() -> None:
            routes.shape(shaper is not None)
            fetcher.clock_speed = config.speed

        if isinstance(target, DemoTarget):
            target = await stack.enter_async_context(_demo_stack(target.protocol))
        source = await _bootstrap(fetcher, target)
        stream_options.check(stream_kind(source.manifest),
                             target.url if isinstance(target, UrlTarget) else f"title {target.title!r}")
        if events is None:  # written to `log_path` only: a window's live session plays for hours
            events = stack.enter_context(EventLog(log_path, keep=False))
        emit_event(events, 0.0, "bootstrap", **{k: round(v, 4) for k, v in source.timings_s.items()})
        decoder = decoder_factory(source) if decoder_factory is not None else None
        if decoder is not None:  # every path stops its threads: VOD, live (which never finishes it), errors
            stack.push_async_callback(asyncio.to_thread, decoder.close)
        if before_playback is not None:
            await before_playback()
        async with keep_alive(fetcher, source.stack):  # signed URLs and the token outlive the session
            live_class = live_player_class(source.manifest)  # a dynamic MPD or a live HLS playlist
            if live_class is not None:
                # The live player runs on the link's clock. When that clock leaves out the stack's time
                # (or the loop's stalls), the channel must follow it: the player says by how much on
                # each request (player.client.liveplay, docs/LIVE-EMULATION.md "The stack's time in live emulation").
                # (HLS too: its clock comes from the playlists' dates, which the channel then dates on
                # the player's clock; an LL-HLS hold for publication is counted as it happens where the
                # player announced it, player.client.hlswait, else at its answer, netsim.clock.)
                excluding = shaper is not None and shared_link is None and link.leaves_time_out
                if shaper is not None and not excluding:
                    shaper.exclude_server_time = False
                return await play_live(source, config, fetcher, live=live or LivePlayConfig(), events=events,
                                       before_media=lambda: routes.shape(shaper is not None),
                                       decoder=decoder, finish_decoder=on_live_player is None,  # headless
                                       on_player=on_live_player, player_class=live_class,
                                       clock_lag_s=shaper.clock.paused_s if excluding and shaper is not None else None)
            return await play_periods(source, config, fetcher, events=events, decoder=decoder,
                                      player_factory=player_factory, before_media=media,
                                      preroll_in_startup=link.shape_bootstrap or shaper is None)


def pipeline_factory(mode: str) -> DecoderFactory | None:
    """The headless decoder for `--decode MODE` (`DecodePipeline`); None for `none`, which decodes
    nothing (and so loads no PyAV)."""
    if mode == "none":
        return None
    from player.media.pipeline import DecodePipeline

    def factory(source: PlaybackSource) -> Decoder:
        return DecodePipeline(source, mode=mode)

    return factory


async def headless_session(target: PlayTarget, config: PlayerConfig, link: LinkConfig,
                           log: Path | None, live: LivePlayConfig | None = None,
                           stream_options: StreamOptions = StreamOptions()) -> PlaybackReport:
    """`play_headless` with the decoder `config.decode` asks for (the command-line default)."""
    return await play_headless(target, config, link=link, log_path=log, decoder_factory=pipeline_factory(config.decode),
                               live=live, stream_options=stream_options)
