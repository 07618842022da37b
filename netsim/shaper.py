"""A trace-shaping TCP proxy: real sockets paced by the simulator's link model.

Each client connection is relayed to the upstream. Downstream bytes (upstream -> client) leave only
as fast as `LinkModel.bytes_until` allows, so a backlogged stream receives exactly the trace's
capacity; the request direction carries the base RTT. See docs/SHAPER.md for the model and its limits.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from netsim.clock import WarpClock, WarpTimer
from netsim.corewait import RunDelay
from netsim.early import EarlyAnswers
from netsim.faults import DEFAULT_RECOVERY_S, FaultedLink, FaultKind, FaultWindow
from netsim.lagstamp import LagRestamp
from netsim.link import LinkModel
from netsim.pacing import LinkStats, PacedLink, Pipe, RateChanges, peak_bytes
from netsim.trace import Trace
from netsim.waits import RequestTargets
from server.formats.servertiming import HEAD_LIMIT_BYTES, head_end, head_publish_wait_s

logger = logging.getLogger(__name__)

DelaySplit = Literal["request", "symmetric"]

_DEFAULT_QUANTUM_MS = 10.0  # of trace time
_MIN_QUANTUM_MS = 2.0  # of wall time
_STALL_COVER_S = 0.2  # wall seconds
# An answer's first bytes from the server, its headers and its body's first read, are its head
# (netsim.pacing wakes for them as for a tail); a live channel's later chunks are not.
_HEAD_BYTES = 4096
# Kernel send buffer towards the client (Linux doubles it). Autotuning would let a client that stops
# reading soak up megabytes the link model never delivered, then get them as one burst.
_CLIENT_SNDBUF_BYTES = 64 * 1024


def pacing_quantum_ms(quantum_ms: float | None, speed: float) -> float:
    """The pacing period (wall ms) of a shaper configured with `quantum_ms` (None: the default) at `speed`."""
    if quantum_ms is not None:
        return quantum_ms
    # One period per 10 ms of trace time keeps each trace second paced alike at any speed.
    return max(_DEFAULT_QUANTUM_MS / speed, _MIN_QUANTUM_MS)


@dataclass(frozen=True, kw_only=True, slots=True)
class ShaperConfig:
    """One shaping proxy. Times in `trace`, `start_offset_s`, `faults` and `rtt_ms` are trace time;
    with `speed` K the proxy plays them K times faster (bandwidth x K, delays / K)."""

    upstream_host: str
    upstream_port: int
    trace: Trace
    listen_host: str = "127.0.0.1"
    listen_port: int = 0  # 0: any free port; read the bound one from `Shaper.port`
    rtt_ms: float = 80.0
    # "request": the whole RTT delays the client->server direction, so a download started at t
    # finishes at LinkModel.finish_time(t + rtt), as in the simulator's default profile.
    # "symmetric": half the RTT on each direction.
    delay_split: DelaySplit = "request"
    use_trace_latency: bool = True  # a trace with per-interval latency (Sabre) overrides rtt_ms
    speed: float = 1.0
    start_offset_s: float = 0.0  # where in the trace the link's clock starts
    faults: tuple[FaultWindow, ...] = ()  # in session time from the link's start
    per_connection: bool = False  # True: each connection its own link; False: one shared bottleneck
    upload_trace: Trace | None = None  # shape client->server too (None: only delayed)
    # Pacing period (wall ms) while backlogged; None: 10 ms of trace time, at least 2 ms of wall time.
    quantum_ms: float | None = None
    buffer_bytes: int = 256 * 1024  # read-ahead from the sender per connection and direction
    stats_bin_s: float = 1.0  # wall-clock width of the bins in `ShaperStats`
    # True: the link's clock (`Shaper.clock`) stands still from the moment a request reaches the
    # upstream until the first byte of its answer comes back, so the server's own time costs no
    # trace time at any speed (the simulator's model); the emulated player reads the same clock.
    exclude_server_time: bool = False
    # True: the clock also leaves out the times this event loop was stalled (netsim.clock): nothing
    # in it moved meanwhile, so neither does the link (nor a player timing itself on the clock).
    exclude_loop_stalls: bool = False
    # With exclude_loop_stalls: False leaves out only the stalls the clock's heartbeat finds, not the
    # lateness of each pacing tick (netsim.clock `exact_timers`); live emulation turns it off.
    exact_timers: bool = True
    # True: the clock also leaves out the loop thread's wait for a core, as Linux measures it (netsim.corewait;
    # where it does not, nothing): the process ran nothing meanwhile, however short and many the waits.
    exclude_core_waits: bool = False
    # True (with exclude_server_time): the clock also stands still from the moment a response's last
    # queued byte goes to the client until the client acts again (its next request arrives, it waits
    # or reads on; netsim.clock `hold_for_client`): the player's hops and decisions cost no link time,
    # as in the simulator, where the next request leaves the instant a download ends.
    exclude_client_time: bool = False
    # True: the player stamps its live requests' lag by this shaper's clock (player.client.harness):
    # it is stamped again as each request leaves the delay line (netsim.lagstamp).
    restamp_channel_lag: bool = False

    def __post_init__(self) -> None:
        for name in ("upstream_host", "listen_host"):
            if not getattr(self, name):
                raise ValueError(f"{name} must not be empty")
        for name in ("upstream_port", "listen_port"):
            port = getattr(self, name)
            if not isinstance(port, int) or not 0 <= port <= 65535:
                raise ValueError(f"{name} must be an integer in 0..65535, got {port!r}")
        if self.upstream_port == 0:
            raise ValueError("upstream_port must not be 0")
        if not isinstance(self.trace, Trace):
            raise ValueError(f"trace must be a Trace, got {type(self.trace).__name__}")
        if self.upload_trace is not None and not isinstance(self.upload_trace, Trace):
            raise ValueError(f"upload_trace must be a Trace or None, got {type(self.upload_trace).__name__}")
        if not (math.isfinite(self.rtt_ms) and self.rtt_ms >= 0):
            raise ValueError(f"rtt_ms must be finite and >= 0, got {self.rtt_ms}")
        if self.delay_split not in ("request", "symmetric"):
            raise ValueError(f"delay_split must be 'request' or 'symmetric', got {self.delay_split!r}")
        if not (math.isfinite(self.speed) and self.speed > 0):
            raise ValueError(f"speed must be finite and > 0, got {self.speed}")
        if not (math.isfinite(self.start_offset_s) and self.start_offset_s >= 0):
            raise ValueError(f"start_offset_s must be finite and >= 0, got {self.start_offset_s}")
        faults = tuple(self.faults)
        if not all(isinstance(f, FaultWindow) for f in faults):
            raise ValueError("faults must be FaultWindow objects")
        object.__setattr__(self, "faults", faults)
        if self.quantum_ms is not None and not 1 <= self.quantum_ms <= 100:
            raise ValueError(f"quantum_ms must be in [1, 100] or None, got {self.quantum_ms}")
        if not isinstance(self.buffer_bytes, int) or self.buffer_bytes < 16 * 1024:
            raise ValueError(f"buffer_bytes must be an integer >= 16384, got {self.buffer_bytes!r}")
        if not (math.isfinite(self.stats_bin_s) and self.stats_bin_s > 0):
            raise ValueError(f"stats_bin_s must be finite and > 0, got {self.stats_bin_s}")


@dataclass(frozen=True, kw_only=True, slots=True)
class ShaperStats:
    """A snapshot of a shaper's counters."""

    connections_accepted: int
    connections_open: int
    down_bytes: int  # written to clients
    up_bytes: int  # written to the upstream
    links: tuple[LinkStats, ...]  # downstream links: one if shared, else one per connection so far


class _Connection:
    """One client connection and its upstream: two pipes and the close/half-close bookkeeping."""

    __slots__ = ("_shaper", "client", "upstream", "down", "up", "down_link", "up_link", "_closed", "task", "peer",
                 "target", "_held", "_connecting", "_head", "_answer_bytes", "_targets", "_publish_at",
                 "_hold_timer", "early")

    def __init__(self, shaper: Shaper, client: asyncio.Transport, target: tuple[str, int]) -> None:
        self._shaper = shaper
        self.client = client
        self.target = target
        self.upstream: asyncio.Transport | None = None
        self.down_link, self.up_link = shaper._links_for_connection()
        down_delay, up_delay = shaper._delays(self.down_link)
        limit = shaper._pipe_limit_bytes
        client.set_write_buffer_limits(high=limit)
        warp = shaper.clock
        self.down = Pipe(shaper._loop, self, link=self.down_link, delay=down_delay, limit_bytes=limit, warp=warp)
        # (a live player's lone request reaches the server at its due time: netsim.clock `lone_request`)
        self.up = Pipe(shaper._loop, self, link=self.up_link, delay=up_delay, limit_bytes=limit, warp=warp,
                       exact_lone=True)
        self.down.sink = client
        self.up.source = client
        self._held = False  # a request of ours is at the upstream and the clock stands still for it
        self._head = bytearray()  # the held request's answer's head, until it is all in
        self._answer_bytes: int | None = None  # of the answer to the last request (None: none asked yet)
        # The requests' targets, matched against the waits a player announced (netsim.waits), and
        # the clock time the server publishes what the request on its way asks for (None: unknown).
        self._targets = RequestTargets()
        self._publish_at: float | None = None
        self._hold_timer: WarpTimer | None = None  # holds the clock at that time, if still at the server
        self.early = EarlyAnswers(warp, self.answer_received, shaper._answer_kept)  # answers ahead of the clock
        # Connecting to the upstream is the server's time too (the link model charges no handshake).
        self._connecting = shaper.exclude_server_time
        if self._connecting:
            shaper.clock.hold()
        self.up.on_write = self.request_delivered
        self.down.on_write = self.response_written
        self._closed = False
        self.task: asyncio.Task[None] | None = None
        self.peer = client.get_extra_info("peername")

    async def connect_upstream(self) -> None:
        host, port = self.target
        loop = self._shaper._loop
        try:
            await loop.create_connection(lambda: _UpstreamProtocol(self), host, port)
        except OSError as exc:
            # Once per outage of an upstream, not once per connection: a dead server behind a busy
            # route would otherwise flood the log.
            if self.target not in self._shaper._unreachable:
                self._shaper._unreachable.add(self.target)
                logger.warning("upstream %s:%s unreachable (client %s): %s", host, port, self.peer, exc)
            else:
                logger.debug("upstream %s:%s still unreachable (client %s)", host, port, self.peer)
            self.close()
            return
        if self.target in self._shaper._unreachable:
            self._shaper._unreachable.discard(self.target)
            logger.info("upstream %s:%s reachable again", host, port)

    def _connected(self) -> None:
        if self._connecting:
            self._connecting = False
            self._shaper.clock.release()

    def upstream_made(self, transport: asyncio.Transport) -> None:
        self._connected()
        if self._closed:
            transport.abort()
            return
        self.upstream = transport
        self.down.source = transport
        shaper = self._shaper
        restamp = shaper.config.restamp_channel_lag
        self.up.start_sink(LagRestamp(transport, lambda: shaper.clock.paused_s() * shaper.config.speed) if restamp
                           else transport)
        self.client.resume_reading()

    def request_sent(self, data: bytes) -> None:
        """Request bytes from the client: a request whose wait for a live channel its player announced
        (netsim.waits) is held only from that channel's publication on."""
        if self._targets.lost:
            return
        for target in self._targets.feed(data):
            self._publish_at = self._shaper.clock.expected_waits.take(target)
            self.early.request_sent(self._publish_at)

    def request_delivered(self) -> None:
        """Request bytes reached the upstream: its time until it answers is not link time, but for a
        wait for the live channel its player announced: that runs on the clock as it happens."""
        self._answer_bytes = 0
        self.early.request_delivered(restamped=self._shaper.config.restamp_channel_lag)
        if self._held or self._hold_timer is not None or not self._shaper.exclude_server_time:
            return
        clock = self._shaper.clock
        publish_at, self._publish_at = self._publish_at, None
        if publish_at is not None and publish_at > clock.now():
            self._hold_timer = clock.call_at(publish_at, self._hold_at_publication)
            return
        self._held = True
        clock.hold()

    def answer_received(self, data: bytes) -> None:
        """Bytes of the answer from the upstream; an answer to an announced wait that comes ahead of the
        clock waits for it (netsim.early), the rest of it too."""
        self.response_began(data)  # the clock runs again before these bytes are paced (or kept)
        if self.early.keep(data):
            return
        head = self.answer_head(len(data))  # an answer's first bytes (netsim.pacing: the head's wake)
        self.response_data()
        self.down.feed(data, head=head)

    def _hold_at_publication(self) -> None:
        """The channel published what the request waits for and no answer has come: the rest is the
        stack's time."""
        self._hold_timer = None
        self._held = True
        self._shaper.clock.hold()

    @property
    def client_key(self) -> object:
        """This connection's key for the clock's holds for the client: the client's port (its own
        `sockname` port, which `FetchResult.port` reports)."""
        return self.peer[1] if isinstance(self.peer, tuple) and len(self.peer) >= 2 else id(self)

    def response_data(self) -> None:
        """More of the answer came from the upstream: the wait for it (server time) is over."""
        self._shaper.clock.client_acted(self.client_key)

    def request_arrived(self) -> None:
        """Request bytes from the client: the player has acted (netsim.clock `hold_for_client`), and
        this connection's previous answer was complete."""
        self._shaper.clock.client_done(None, self.client_key)

    def response_written(self) -> None:
        """Bytes went to the client. If nothing of ours is left queued for it, either the response
        is complete, and the hop to the player and the player's own time until it acts (asks again,
        waits) are no link time; or the rest is still at the server, whose time is no link time
        either. Both end the hold: the client's act, or more bytes from the upstream."""
        if not self.down.buf and not self.down.delayed:
            self._shaper.clock.hold_for_client(self.client_key)

    def answer_head(self, size: int) -> bool:
        """Whether `size` more bytes from the upstream are part of its answer's head: its headers and
        first body bytes, within `_HEAD_BYTES` of the request (netsim.pacing: the head's wake)."""
        if self._answer_bytes is None:
            return False
        head = self._answer_bytes < _HEAD_BYTES
        self._answer_bytes += size
        return head

    def response_began(self, data: bytes | None = None) -> None:
        """The answer's first bytes came (None: none is coming): the clock runs again once its head is
        in, counting the time the server says it waited for a live channel (server.formats.servertiming)
        and the clock did not run through."""
        if self._hold_timer is not None:  # came before the announced publication: the clock ran all along
            self._hold_timer.cancel()
            self._hold_timer = None
        if not self._held:
            return
        waited_s = 0.0
        if data is not None:
            self._head += data
            end = head_end(self._head)
            if end < 0 and len(self._head) < HEAD_LIMIT_BYTES:
                return  # the rest of the head is still at the server
            waited_s = head_publish_wait_s(self._head[:end]) if end >= 0 else 0.0
        self._head.clear()
        self._held = False
        self._shaper.clock.release(waited_s=waited_s)

    def client_lost(self, exc: Exception | None) -> None:
        # Nobody is left to read the response: drop both directions at once.
        logger.debug("client %s disconnected%s", self.peer, f": {exc}" if exc else "")
        self.close()

    def upstream_lost(self, exc: Exception | None) -> None:
        logger.debug("upstream closed for client %s%s", self.peer, f": {exc}" if exc else "")
        self.response_began()  # no answer is coming: the clock runs on
        self.upstream = None
        self.up.kill()
        # Bytes already read from the upstream (kept ones too) still cross the link before the client sees the end.
        self.early.after(lambda: self._upstream_done(abort=exc is not None))

    def _upstream_done(self, *, abort: bool) -> None:
        self.down.feed_eof(abort=abort)
        self.pipe_finished()

    def pipe_finished(self) -> None:
        if self.down.done and (self.up.done or self.upstream is None):
            self.close()

    def close(self, *, abort: bool = False) -> None:
        """Close both sides: flushing what was written (a finished exchange) or at once (`abort`)."""
        if self._closed:
            return
        self._closed = True
        self._connected()
        self.early.drop()
        self.response_began()
        self._shaper.clock.client_acted(self.client_key)  # nobody is left to act on this connection
        self.down.kill()
        self.up.kill()
        for transport in (self.client, self.upstream):
            if transport is None or transport.is_closing():
                continue
            if abort:
                transport.abort()
            else:
                transport.close()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self._shaper._connection_closed(self)


class _ClientProtocol(asyncio.Protocol):
    def __init__(self, shaper: Shaper, target: tuple[str, int]) -> None:
        self._shaper = shaper
        self._target = target
        self._conn: _Connection | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()  # until the upstream is connected
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _CLIENT_SNDBUF_BYTES)
        self._conn = self._shaper._connection_opened(transport, self._target)

    def data_received(self, data: bytes) -> None:
        if self._conn is not None:
            self._conn.request_arrived()
            self._conn.request_sent(data)
            self._conn.up.feed(data)

    def eof_received(self) -> bool:
        if self._conn is not None:
            self._conn.up.feed_eof()
        return True  # keep the downstream open (half-close)

    def pause_writing(self) -> None:
        if self._conn is not None:
            self._conn.down.pause_sink()

    def resume_writing(self) -> None:
        if self._conn is not None:
            self._conn.down.resume_sink()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._conn.client_lost(exc)


class _UpstreamProtocol(asyncio.Protocol):
    def __init__(self, conn: _Connection) -> None:
        self._conn = conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._conn.upstream_made(transport)

    def data_received(self, data: bytes) -> None:
        self._conn.answer_received(data)

    def eof_received(self) -> bool:
        self._conn.early.after(self._conn.down.feed_eof)  # after an answer kept for its publication
        return True  # the client may still be sending

    def pause_writing(self) -> None:
        self._conn.up.pause_sink()

    def resume_writing(self) -> None:
        self._conn.up.resume_sink()

    def connection_lost(self, exc: Exception | None) -> None:
        self._conn.upstream_lost(exc)


class Shaper:
    """A running shaping proxy: `async with Shaper(config) as shaper: ... shaper.port ...`.

    One shaper per emulated session is cheap; all of them may share one event loop. The link clock
    (trace time `start_offset_s`) starts at the first connection (shared link) or at each
    connection (`per_connection`).
    """

    def __init__(self, config: ShaperConfig) -> None:
        self.config = config
        speed = config.speed
        self._down_model = LinkModel(config.trace.rotated(config.start_offset_s).scaled(speed), payload_factor=1.0)
        self._up_model = (
            None
            if config.upload_trace is None
            else LinkModel(config.upload_trace.rotated(config.start_offset_s).scaled(speed), payload_factor=1.0)
        )
        self._faults = tuple(f.scaled(speed) for f in config.faults)
        quantum_s = self.quantum_ms / 1000.0
        # Read-ahead and the client's write buffer cover an event-loop stall of _STALL_COVER_S at the
        # trace's peak, so neither a short queue nor our own burst pausing the writer loses capacity.
        window_s = max(4 * quantum_s, _STALL_COVER_S)
        peak = max(peak_bytes(m.trace, window_s) for m in (self._down_model, self._up_model) if m is not None)
        self._pipe_limit_bytes = max(config.buffer_bytes, int(peak))
        self._down_changes = RateChanges(self._down_model.trace, quantum_s)
        self._up_changes = None if self._up_model is None else RateChanges(self._up_model.trace, quantum_s)
        self._rtt_s = config.rtt_ms / 1000.0 / speed
        self._runtime_faults: list[tuple[float, FaultWindow]] = []  # (loop time when triggered, window from 0)
        self._server: asyncio.Server | None = None
        self._routes: list[asyncio.Server] = []
        self._unreachable: set[tuple[str, int]] = set()  # upstreams whose outage was logged
        self.early_answers = 0  # answers kept until the clock reached the server's view they were made at (netsim.early)
        self.early_kept_s = 0.0  # clock seconds they were kept, in all
        self._loop: asyncio.AbstractEventLoop  # set by start()
        self.clock: WarpClock  # the link's clock (set by start()); see `ShaperConfig.exclude_server_time`
        self._run_delay: RunDelay | None = None  # the loop thread's wait for a core (exclude_core_waits)
        self._exclude_server_time = config.exclude_server_time  # may be turned off at run time
        self._shared: tuple[PacedLink, PacedLink | None] | None = None
        self._down_links: list[PacedLink] = []
        self._live_links: list[PacedLink] = []
        self._connections: set[_Connection] = set()
        self._accepted = 0
        self._down_bytes_closed = 0
        self._up_bytes_closed = 0

    async def __aenter__(self) -> Shaper:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Bind the listening socket."""
        if self._server is not None:
            raise RuntimeError("shaper already started")
        self._loop = asyncio.get_running_loop()
        self._run_delay = RunDelay.open() if self.config.exclude_core_waits else None  # this (the loop's) thread
        self.clock = WarpClock(self._loop, cover_stalls=self.config.exclude_loop_stalls,
                               exact_timers=self.config.exact_timers,
                               run_delay=None if self._run_delay is None else self._run_delay.seconds)
        self._update_clock_modes()
        target = (self.config.upstream_host, self.config.upstream_port)
        self._server = await self._loop.create_server(
            lambda: _ClientProtocol(self, target), self.config.listen_host, self.config.listen_port
        )

    async def add_route(self, upstream_host: str, upstream_port: int, listen_port: int = 0) -> int:
        """Listen on another port that forwards to another upstream through the same link(s).

        A player talks to a gateway and to several edges over one access link: one shaper with a
        route per server shapes all of it as one bottleneck. Returns the bound listening port.
        """
        if self._server is None:
            raise RuntimeError("shaper not started")
        target = (upstream_host, upstream_port)
        server = await self._loop.create_server(lambda: _ClientProtocol(self, target), self.config.listen_host,
                                                listen_port)
        self._routes.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is None:
            return
        self._server.close()
        for route in self._routes:
            route.close()
        for conn in list(self._connections):
            conn.close(abort=True)  # a client that stopped reading must not hold the stop up
        for link in self._live_links:
            link.close()
        self.clock.close()
        if self._run_delay is not None:  # the closed clock reads it no more
            self._run_delay.close()
            self._run_delay = None
        await self._server.wait_closed()
        for route in self._routes:
            await route.wait_closed()

    @property
    def port(self) -> int:
        """The bound listening port (the real one when `listen_port` is 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("shaper not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def quantum_ms(self) -> float:
        """The pacing period in use (wall ms)."""
        return pacing_quantum_ms(self.config.quantum_ms, self.config.speed)

    @property
    def host(self) -> str:
        return self.config.listen_host

    @property
    def exclude_server_time(self) -> bool:
        """`ShaperConfig.exclude_server_time`, settable at run time (the player's time is held out
        only with it: `exclude_client_time`)."""
        return self._exclude_server_time

    @exclude_server_time.setter
    def exclude_server_time(self, value: bool) -> None:
        self._exclude_server_time = value
        if self._server is not None:
            self._update_clock_modes()
            if not self.excludes_client_time:
                self.clock.client_acted()

    def _update_clock_modes(self) -> None:
        """The clock holds for the client with `exclude_client_time`; if it also leaves the loop's
        stalls out on exact timers (a bounded clock), every wait outside the link model is held, and
        it moves at the link's events only (`WarpClock.events_only`: the CPU time between events is
        no link time either)."""
        self.clock.holds_for_client = self.excludes_client_time
        self.clock.events_only = self.excludes_client_time and self.clock.bounded  # exact timers, stalls out

    @property
    def excludes_client_time(self) -> bool:
        """Whether the player's time is held out now (`exclude_client_time`; off with server time)."""
        return self._exclude_server_time and self.config.exclude_client_time

    def outage(self, duration_s: float) -> None:
        """Deliver nothing for `duration_s` seconds of trace time from now (wall: / speed)."""
        self._fault_now(duration_s, "outage", 0.0)

    def loss_burst(self, duration_s: float, recovery_s: float = DEFAULT_RECOVERY_S) -> None:
        """Lose every packet for `duration_s` trace seconds from now, then stall `recovery_s` more."""
        self._fault_now(duration_s, "loss_burst", recovery_s)

    def _fault_now(self, duration_s: float, kind: FaultKind, recovery_s: float) -> None:
        if self._server is None:
            raise RuntimeError("shaper not started")
        speed = self.config.speed
        now = self.clock.now()
        window = FaultWindow(start_s=0.0, duration_s=duration_s / speed, kind=kind, recovery_s=recovery_s / speed)
        self._runtime_faults.append((now, window))
        for link in self._live_links:
            link.add_fault(FaultWindow(start_s=link.clock(), duration_s=window.duration_s, kind=kind, recovery_s=window.recovery_s))

    def stats(self) -> ShaperStats:
        open_down = sum(c.down.written for c in self._connections)
        open_up = sum(c.up.written for c in self._connections)
        return ShaperStats(
            connections_accepted=self._accepted,
            connections_open=len(self._connections),
            down_bytes=self._down_bytes_closed + open_down,
            up_bytes=self._up_bytes_closed + open_up,
            links=tuple(link.stats() for link in self._down_links),
        )

    # -- internals used by _Connection ---------------------------------------------------------

    def _new_link(self, model: LinkModel, changes: RateChanges) -> PacedLink:
        link = PacedLink(
            self._loop,
            FaultedLink(model, self._faults),
            changes,
            quantum_s=self.quantum_ms / 1000.0,
            bin_s=self.config.stats_bin_s,
            owed_limit_bytes=self._pipe_limit_bytes,
            warp=self.clock,
        )
        for at, window in self._runtime_faults:
            # A fault triggered before this link started still blocks whatever is left of it.
            left_s = at + window.blocked_until_s - self.clock.now()
            if left_s > 0:
                link.add_fault(FaultWindow(start_s=0.0, duration_s=left_s, kind="outage"))
        self._live_links.append(link)
        return link

    def _links_for_connection(self) -> tuple[PacedLink, PacedLink | None]:
        if not self.config.per_connection and self._shared is not None:
            return self._shared
        down = self._new_link(self._down_model, self._down_changes)
        self._down_links.append(down)
        up = None if self._up_model is None or self._up_changes is None else self._new_link(self._up_model, self._up_changes)
        if not self.config.per_connection:
            self._shared = (down, up)
        return down, up

    def _delays(self, down_link: PacedLink) -> tuple[Callable[[], float], Callable[[], float]]:
        """One-way delay functions (seconds) for the downstream and upstream pipes."""
        trace = down_link.model.link.trace
        if self.config.use_trace_latency and trace.latency_s is not None:
            def latency() -> float:
                return trace.latency_at(down_link.clock())
        else:
            rtt_s = self._rtt_s

            def latency() -> float:
                return rtt_s

        if self.config.delay_split == "request":
            return (lambda: 0.0), latency
        return (lambda: latency() / 2), (lambda: latency() / 2)

    def _answer_kept(self, kept_s: float) -> None:
        self.early_answers += 1
        self.early_kept_s += kept_s

    def _connection_opened(self, client: asyncio.Transport, target: tuple[str, int]) -> _Connection:
        conn = _Connection(self, client, target)
        self._accepted += 1
        self._connections.add(conn)
        conn.task = self._loop.create_task(conn.connect_upstream())
        return conn

    def _connection_closed(self, conn: _Connection) -> None:
        if conn in self._connections:
            self._connections.discard(conn)
            self._down_bytes_closed += conn.down.written
            self._up_bytes_closed += conn.up.written
        if self.config.per_connection:
            for link in (conn.down_link, conn.up_link):
                if link is not None and link in self._live_links:
                    link.close()
                    self._live_links.remove(link)
