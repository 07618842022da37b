"""The shaping proxy on real loopback sockets: fidelity to the link model, RTT, faults, offsets,
fair sharing, half-close and abort handling (the `abrkit shape` command: tests/player/commands)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest
from aiohttp import web

from netsim.clock import sleep_on
from netsim.faults import FaultWindow, parse_fault
from netsim.link import LinkModel
from netsim.shaper import Shaper, ShaperConfig
from netsim.trace import Trace

pytestmark = pytest.mark.wallclock  # the shaper's delivery against the trace, timed on the wall clock


def steps_trace(rates_mbps: list[float], step_s: float) -> Trace:
    """Piecewise-constant rates (Mbit/s), each for `step_s` (a local builder: conftest's `step_trace` has 10 s steps)."""
    return Trace(
        name="steps",
        durations_s=np.full(len(rates_mbps), step_s),
        bandwidth_bps=np.asarray(rates_mbps) * 1e6,
    )


class _Source(asyncio.Protocol):
    """Upstream that answers the first bytes it receives with an endless stream, as fast as allowed."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._paused = False
        self._started = False
        self._block = b"x" * 65536

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        if not self._started:
            self._started = True
            self._pump()

    def _pump(self) -> None:
        while self._transport is not None and not self._paused and not self._transport.is_closing():
            self._transport.write(self._block)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        # Not synchronously: a write failing inside asyncio's _write_ready makes CPython 3.11 call
        # connection_lost twice (AttributeError on a None protocol).
        asyncio.get_running_loop().call_soon(self._pump)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None


class _Meter(asyncio.Protocol):
    """Client that sends a request line and timestamps every chunk it receives (on `clock`: by default
    the event loop's time; `_meter` gives it the shaper's clock)."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock if clock is not None else asyncio.get_running_loop().time
        self.arrivals: list[tuple[float, int]] = []
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self.got_eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"GET /\r\n")

    def data_received(self, data: bytes) -> None:
        self.arrivals.append((self._clock(), len(data)))

    @property
    def total_bytes(self) -> int:
        return sum(n for _, n in self.arrivals)

    def bins(self, origin: float, bin_s: float, count: int) -> np.ndarray:
        """Bytes received in each of `count` bins of `bin_s` from `origin`."""
        out = np.zeros(count)
        for time_s, size in self.arrivals:
            index = int((time_s - origin) // bin_s)
            if 0 <= index < count:
                out[index] += size
        return out

    def eof_received(self) -> bool:
        self.got_eof = True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)


@asynccontextmanager
async def _serving(factory: Callable[[], asyncio.Protocol]) -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 for the duration; yields its port."""
    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def source_port() -> AsyncIterator[int]:
    async with _serving(_Source) as port:
        yield port


def _config(port: int, trace: Trace, **overrides: Any) -> ShaperConfig:
    return ShaperConfig(upstream_host="127.0.0.1", upstream_port=port, trace=trace, **overrides)


async def _meter(shaper: Shaper) -> _Meter:
    """A meter timing its arrivals on the shaper's clock (the loop's time, unless the clock leaves some out)."""
    _, meter = await asyncio.get_running_loop().create_connection(lambda: _Meter(shaper.clock.now), "127.0.0.1",
                                                                  shaper.port)
    return meter


def _capacity_bins(trace: Trace, bin_s: float, count: int, *, speed: float = 1.0, offset_s: float = 0.0) -> np.ndarray:
    """Bytes the link model offers in each wall-clock bin (the trace at `speed`, from `offset_s`)."""
    link = LinkModel(trace.rotated(offset_s).scaled(speed))
    edges = [link.bytes_until(i * bin_s) for i in range(count + 1)]
    return np.diff(edges)


async def _measure(shaper: Shaper, duration_s: float, meters: int = 1) -> tuple[float, list[_Meter]]:
    """Backlogged clients for `duration_s` of link time; returns the link's start (on the shaper's
    clock, as the meters time their arrivals) and them."""
    clients = [await _meter(shaper) for _ in range(meters)]
    await asyncio.sleep(0.05)
    origin = shaper.stats().links[0].started_clock_s  # bins on the link clock line up with the trace
    await sleep_on(shaper.clock.now, duration_s - (shaper.clock.now() - origin), acts=False)
    for client in clients:
        assert client.transport is not None
        client.transport.abort()
    return origin, clients


# -- fidelity ----------------------------------------------------------------------------------


def _assert_client_got_the_bins(meter: _Meter, origin: float, delivered: tuple[int, ...], bin_s: float) -> None:
    """The link's per-bin accounting is what the client received, bin edge by bin edge: one connection
    delivers in order and each read takes what is there, so the bytes counted before an edge lie
    between what the client had read before it and what it had by its first read after it. Exact, not
    a tolerance: whatever the time between a tick's write and the client's read, only the one read
    that straddles the edge is uncertain. (The client may have stopped before a read after the last edge.)"""
    times = np.array([t - origin for t, _ in meter.arrivals])
    received = np.cumsum([n for _, n in meter.arrivals])
    for k, counted in enumerate(np.cumsum(delivered), start=1):
        first_after = int(np.searchsorted(times, k * bin_s, side="left"))  # bins as `_Meter.bins` cuts them
        before = int(received[first_after - 1]) if first_after else 0
        through = int(received[first_after]) if first_after < len(times) else None
        assert before <= counted and (through is None or counted <= through), (k, before, counted, through)


@pytest.mark.parametrize(("speed", "step_s"), [(1.0, 2.0), (4.0, 4.0)])
async def test_backlogged_client_gets_the_trace_within_ten_percent(source_port: int, speed: float, step_s: float) -> None:
    # 1 s bins of the link's clock: the loop's time less its thread's waits for a core (netsim.corewait),
    # on a quiet machine the wall clock. A wait (a loaded machine) otherwise let the link release the
    # bytes due meanwhile as one late burst, and the client read a tick's bytes after the bin edge they
    # were counted before (4% of the 1 Mbit/s bin after the 4 -> 1 Mbit/s drop); on this clock the link
    # did not age while the process could not run. At speed K one second holds K trace seconds.
    trace = steps_trace([4, 1, 8], step_s=step_s)
    config = _config(source_port, trace, rtt_ms=0, speed=speed, exclude_core_waits=True)
    async with Shaper(config) as shaper:
        origin, [meter] = await _measure(shaper, duration_s=3 * step_s / speed)
        link_stats = shaper.stats().links[0]
    count = round(3 * step_s / speed)
    expected = _capacity_bins(trace, 1.0, count, speed=speed)
    got = meter.bins(origin, 1.0, count)
    np.testing.assert_allclose(got, expected, rtol=0.10)
    # The shaper's own per-bin accounting agrees with what the client received.
    _assert_client_got_the_bins(meter, origin, link_stats.delivered_bytes[:count], 1.0)
    np.testing.assert_allclose(link_stats.capacity_bytes[:count], expected)


async def test_offset_starts_the_link_clock_inside_the_trace(source_port: int) -> None:
    trace = steps_trace([8, 1], step_s=1.0)
    config = _config(source_port, trace, rtt_ms=0, start_offset_s=1.0)
    async with Shaper(config) as shaper:
        origin, [meter] = await _measure(shaper, duration_s=2.0)
    expected = _capacity_bins(trace, 0.5, 4, offset_s=1.0)
    np.testing.assert_allclose(expected, np.array([1, 1, 8, 8]) * 1e6 / 8 * 0.5)
    np.testing.assert_allclose(meter.bins(origin, 0.5, 4), expected, rtol=0.10)


async def test_shared_link_splits_capacity_fairly(source_port: int) -> None:
    trace = steps_trace([8], step_s=10.0)
    config = _config(source_port, trace, rtt_ms=0)
    async with Shaper(config) as shaper:
        origin, meters = await _measure(shaper, duration_s=1.5, meters=2)
    got = [meter.bins(origin, 0.5, 3)[1:].sum() for meter in meters]  # 0.5 s .. 1.5 s
    assert abs(got[0] - got[1]) / sum(got) < 0.05
    assert sum(got) == pytest.approx(8e6 / 8 * 1.0, rel=0.10)


async def test_routes_to_two_upstreams_share_one_link(source_port: int) -> None:
    trace = steps_trace([8], step_s=10.0)
    async with _serving(_Source) as other_port, Shaper(_config(source_port, trace, rtt_ms=0)) as shaper:
        route_port = await shaper.add_route("127.0.0.1", other_port)
        loop = asyncio.get_running_loop()
        _, first = await loop.create_connection(_Meter, "127.0.0.1", shaper.port)
        _, second = await loop.create_connection(_Meter, "127.0.0.1", route_port)
        await asyncio.sleep(0.05)
        origin = shaper.stats().links[0].started_s
        await asyncio.sleep(1.5 - (loop.time() - origin))
        for meter in (first, second):
            assert meter.transport is not None
            meter.transport.abort()
        assert len(shaper.stats().links) == 1  # both routes crossed the one shared link
    got = [meter.bins(origin, 0.5, 3)[1:].sum() for meter in (first, second)]
    assert min(got) > 0.4 * sum(got)
    assert sum(got) == pytest.approx(8e6 / 8 * 1.0, rel=0.10)


async def test_per_connection_links_each_get_the_whole_trace(source_port: int) -> None:
    trace = steps_trace([4], step_s=10.0)
    config = _config(source_port, trace, rtt_ms=0, per_connection=True)
    async with Shaper(config) as shaper:
        origin, meters = await _measure(shaper, duration_s=1.5, meters=2)
        assert len(shaper.stats().links) == 2
    for meter in meters:
        assert meter.bins(origin, 0.5, 3)[1:].sum() == pytest.approx(4e6 / 8 * 1.0, rel=0.10)


class _Sink(asyncio.Protocol):
    """Upstream that timestamps what it receives."""

    def __init__(self, arrivals: list[tuple[float, int]]) -> None:
        self.arrivals = arrivals

    def data_received(self, data: bytes) -> None:
        self.arrivals.append((asyncio.get_running_loop().time(), len(data)))


async def test_upload_trace_paces_the_request_direction() -> None:
    arrivals: list[tuple[float, int]] = []
    async with _serving(lambda: _Sink(arrivals)) as port:
        config = _config(port, steps_trace([8], 10.0), upload_trace=steps_trace([1], 10.0), rtt_ms=0)
        async with Shaper(config) as shaper:
            _, writer = await asyncio.open_connection("127.0.0.1", shaper.port)
            writer.write(bytes(1_000_000))
            await asyncio.sleep(1.1)
            origin = shaper.stats().links[0].started_s
            writer.close()
    received = sum(size for time_s, size in arrivals if time_s - origin < 1.0)
    assert received == pytest.approx(1e6 / 8, rel=0.10)


async def test_capacity_is_lost_while_the_client_does_not_read(source_port: int) -> None:
    trace = steps_trace([8], step_s=10.0)
    config = _config(source_port, trace, rtt_ms=0, stats_bin_s=0.5)
    async with Shaper(config) as shaper:
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small receive window fills fast
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", shaper.port))
        _, meter = await loop.create_connection(_Meter, sock=sock)
        assert meter.transport is not None
        meter.transport.pause_reading()
        await asyncio.sleep(1.5)
        meter.transport.resume_reading()
        await asyncio.sleep(1.0)
        stats = shaper.stats().links[0]
        meter.transport.abort()
    delivered = np.asarray(stats.delivered_bytes[:5], dtype=float)
    capacity = np.asarray(stats.capacity_bytes[:5])
    # Stalled: the link delivered far less than its capacity; afterwards no catch-up burst.
    assert delivered[1:3].sum() < 0.5 * capacity[1:3].sum()
    assert np.all(delivered[3:5] <= capacity[3:5] * 1.10)
    assert delivered[4] >= capacity[4] * 0.9


# -- latency -----------------------------------------------------------------------------------


@pytest.fixture
async def http_port() -> AsyncIterator[int]:
    async def small(request: web.Request) -> web.Response:
        return web.Response(body=b"ok")

    app = web.Application()
    app.router.add_get("/small", small)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert runner.addresses
    yield runner.addresses[0][1]
    await runner.cleanup()


async def _ttfb_s(port: int) -> float:
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = loop.time()
    writer.write(b"GET /small HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
    first = await reader.read(1)
    ttfb = loop.time() - start
    assert first == b"H"
    body = await reader.read()
    writer.close()
    await writer.wait_closed()
    assert body.endswith(b"ok")
    return ttfb


@pytest.mark.parametrize("split", ["request", "symmetric"])
async def test_rtt_delays_the_first_byte_of_a_small_request(http_port: int, split: str) -> None:
    config = _config(http_port, steps_trace([10], 10.0), rtt_ms=150, delay_split=split)
    async with Shaper(config) as shaper:
        assert await _ttfb_s(shaper.port) >= 0.150


async def test_speed_divides_the_rtt(http_port: int) -> None:
    config = _config(http_port, steps_trace([10], 10.0), rtt_ms=400, speed=4)
    async with Shaper(config) as shaper:
        ttfb = await _ttfb_s(shaper.port)
    assert 0.100 <= ttfb < 0.400


async def test_trace_latency_replaces_the_base_rtt(http_port: int) -> None:
    trace = Trace(name="sabre", durations_s=np.array([10.0]), bandwidth_bps=np.array([10e6]), latency_s=np.array([0.2]))
    config = _config(http_port, trace, rtt_ms=0)
    async with Shaper(config) as shaper:
        assert await _ttfb_s(shaper.port) >= 0.200


# -- faults ------------------------------------------------------------------------------------


async def test_scheduled_outage_delivers_nothing_then_resumes(source_port: int) -> None:
    trace = steps_trace([8], step_s=10.0)
    outage = FaultWindow(start_s=0.5, duration_s=1.0)
    config = _config(source_port, trace, rtt_ms=0, faults=(outage,))
    async with Shaper(config) as shaper:
        origin, [meter] = await _measure(shaper, duration_s=2.5)
    got = meter.bins(origin, 0.25, 10)
    assert got[:2].sum() == pytest.approx(8e6 / 8 * 0.5, rel=0.10)
    # 0.5 s .. 1.5 s; the first bin of the window still gets the bytes due at 0.5 s (a tick late).
    assert got[3:6].sum() == 0
    assert got[6:10].sum() == pytest.approx(8e6 / 8 * 1.0, rel=0.10)


async def test_loss_burst_blocks_until_the_recovery_timeout(source_port: int) -> None:
    trace = steps_trace([8], step_s=10.0)
    burst = parse_fault("0.5:0.5:0.5", "loss_burst")
    config = _config(source_port, trace, rtt_ms=0, faults=(burst,))
    async with Shaper(config) as shaper:
        origin, [meter] = await _measure(shaper, duration_s=2.0)
    got = meter.bins(origin, 0.25, 8)
    assert got[3:6].sum() == 0  # burst 0.5-1.0 s plus recovery to 1.5 s (first bin: as above)
    assert got[6:8].sum() == pytest.approx(8e6 / 8 * 0.5, rel=0.10)


async def test_runtime_outage_stops_delivery_for_its_duration(source_port: int) -> None:
    trace = steps_trace([8], step_s=10.0)
    config = _config(source_port, trace, rtt_ms=0, speed=2)
    async with Shaper(config) as shaper:
        meter = await _meter(shaper)
        await asyncio.sleep(0.5)
        start = asyncio.get_running_loop().time()
        shaper.outage(2.0)  # trace seconds: 1 s of wall time at speed 2
        await asyncio.sleep(1.5)
        assert meter.transport is not None
        meter.transport.abort()
    got = meter.bins(start, 0.25, 6)
    assert got[1:4].sum() == 0  # the first bin may hold bytes that were due before the call
    assert got[4:6].sum() == pytest.approx(16e6 / 8 * 0.5, rel=0.10)


@pytest.mark.parametrize(
    ("field", "value"),
    [("rtt_ms", -1.0), ("speed", 0.0), ("start_offset_s", -2.0), ("quantum_ms", 0.1), ("listen_port", 70000), ("buffer_bytes", 10)],
)
def test_config_rejects_bad_values(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        _config(80, steps_trace([1], 1.0), **{field: value})


# -- connection handling -----------------------------------------------------------------------


class _EchoAfterEof(asyncio.Protocol):
    """Upstream that replies only once the client half-closed, then closes."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.received = bytearray()

    def data_received(self, data: bytes) -> None:
        self.received += data

    def eof_received(self) -> bool:
        self.transport.write(b"got:" + bytes(self.received) + b"x" * 100_000)
        self.transport.close()
        return True


async def test_half_close_reaches_the_upstream_and_its_close_reaches_the_client() -> None:
    async with _serving(_EchoAfterEof) as port, Shaper(_config(port, steps_trace([20], 10.0), rtt_ms=20)) as shaper:
        reader, writer = await asyncio.open_connection("127.0.0.1", shaper.port)
        writer.write(b"hello")
        writer.write_eof()
        reply = await asyncio.wait_for(reader.read(), timeout=5)
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.05)
        assert shaper.stats().connections_open == 0
    assert reply == b"got:hello" + b"x" * 100_000


async def test_client_abort_closes_the_upstream_without_errors(source_port: int, caplog: pytest.LogCaptureFixture) -> None:
    config = _config(source_port, steps_trace([8], 10.0), rtt_ms=0)
    with caplog.at_level(logging.DEBUG):
        async with Shaper(config) as shaper:
            meter = await _meter(shaper)
            await asyncio.sleep(0.2)
            assert meter.transport is not None
            meter.transport.abort()
            await asyncio.sleep(0.1)
            stats = shaper.stats()
    assert stats.connections_accepted == 1 and stats.connections_open == 0
    assert stats.down_bytes > 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_stop_ends_the_connection_of_a_client_that_stopped_reading(source_port: int) -> None:
    shaper = Shaper(_config(source_port, steps_trace([8], 10.0), rtt_ms=0))
    await shaper.start()
    meter = await _meter(shaper)
    assert meter.transport is not None
    meter.transport.pause_reading()
    await asyncio.sleep(0.5)  # the shaper's write buffer towards the client fills
    await asyncio.wait_for(shaper.stop(), timeout=5)
    meter.transport.resume_reading()
    await asyncio.wait_for(meter.closed, timeout=5)
    assert meter.got_eof and shaper.stats().connections_open == 0


class _ResetAfterData(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(b"y" * 50_000)
        asyncio.get_running_loop().call_later(0.05, transport.abort)


async def test_upstream_reset_delivers_queued_bytes_then_ends_the_client() -> None:
    async with _serving(_ResetAfterData) as port, Shaper(_config(port, steps_trace([2], 10.0), rtt_ms=0)) as shaper:
        meter = await _meter(shaper)
        await asyncio.wait_for(meter.closed, timeout=5)  # 50 kB at 2 Mbit/s: 0.2 s
        assert shaper.stats().connections_open == 0
    assert meter.total_bytes == 50_000


async def test_unreachable_upstream_closes_the_client(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="netsim.shaper")
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    config = _config(dead_port, steps_trace([8], 10.0))
    async with Shaper(config) as shaper:
        reader, writer = await asyncio.open_connection("127.0.0.1", shaper.port)
        assert await asyncio.wait_for(reader.read(), timeout=5) == b""
        writer.close()
    assert any("unreachable" in r.getMessage() for r in caplog.records)


async def test_an_unreachable_upstream_is_logged_once_per_outage(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="netsim.shaper")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    async with Shaper(_config(dead_port, steps_trace([8], 10.0))) as shaper:
        for _ in range(5):
            reader, writer = await asyncio.open_connection("127.0.0.1", shaper.port)
            assert await asyncio.wait_for(reader.read(), timeout=5) == b""
            writer.close()
    assert sum("unreachable" in r.getMessage() for r in caplog.records) == 1


# -- per-flow fair sharing of one link (several players behind one bottleneck) -----------------


async def test_four_backlogged_flows_each_get_a_quarter(source_port: int) -> None:
    trace = steps_trace([8], step_s=10.0)
    async with Shaper(_config(source_port, trace, rtt_ms=0)) as shaper:
        origin, meters = await _measure(shaper, duration_s=1.5, meters=4)
    got = np.array([meter.bins(origin, 0.5, 3)[1:].sum() for meter in meters])
    assert got.sum() ** 2 / (4 * (got**2).sum()) > 0.99  # Jain's index of the flows' shares
    assert got.sum() == pytest.approx(8e6 / 8 * 1.0, rel=0.10)


async def test_an_idle_flow_leaves_the_other_the_whole_link(source_port: int) -> None:
    trace = steps_trace([8], step_s=10.0)
    async with Shaper(_config(source_port, trace, rtt_ms=0)) as shaper:
        loop = asyncio.get_running_loop()
        idle_transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", shaper.port)  # asks nothing
        origin, [busy] = await _measure(shaper, duration_s=1.5)
        idle_transport.close()
    assert busy.bins(origin, 0.5, 3)[1:].sum() == pytest.approx(8e6 / 8 * 1.0, rel=0.10)


async def test_when_one_flow_ends_the_other_gets_the_whole_link(source_port: int) -> None:
    trace = steps_trace([8], step_s=10.0)
    async with Shaper(_config(source_port, trace, rtt_ms=0)) as shaper:
        loop = asyncio.get_running_loop()
        first, second = await _meter(shaper), await _meter(shaper)
        await asyncio.sleep(0.05)
        origin = shaper.stats().links[0].started_s
        await asyncio.sleep(1.0 - (loop.time() - origin))
        assert first.transport is not None and second.transport is not None
        first.transport.abort()  # the first player is done: its share goes to the other
        await asyncio.sleep(2.0 - (loop.time() - origin))
        second.transport.abort()
    shared = [m.bins(origin, 0.5, 2)[1] for m in (first, second)]  # 0.5-1.0 s: half each
    assert shared[0] == pytest.approx(shared[1], rel=0.10)
    alone = second.bins(origin, 0.5, 4)[3]  # 1.5-2.0 s: the whole link
    assert alone == pytest.approx(8e6 / 8 * 0.5, rel=0.10)
