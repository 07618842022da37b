"""A live request's lag header is stamped again as it leaves the shaper's delay line (netsim.lagstamp)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from netsim import synthetic
from netsim.lagstamp import LagRestamp
from netsim.shaper import Shaper, ShaperConfig
from tests.netsim.conftest import held_server


class _Sink(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()
        self.eof = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return False

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True


def test_each_head_s_lag_is_stamped_again_and_bodies_pass_as_they_are() -> None:
    stream = (b"GET /a.m3u8?_HLS_msn=3 HTTP/1.1\r\nX-Abrkit-Channel-Lag: 1.000000\r\nHost: x\r\n\r\n"
              b"POST /p HTTP/1.1\r\nContent-Length: 27\r\n\r\nX-Abrkit-Channel-Lag: 9\r\n\r\n"  # a body, not a head
              b"GET /b.m4s HTTP/1.1\r\nHost: x\r\n\r\n"
              b"GET /c.m4s HTTP/1.1\r\nx-abrkit-channel-lag:0.5\r\n\r\n"
              b"GET /unfinished HTTP/1.1\r\nX-Abrkit-Channel-Lag: 3")
    sink = _Sink()
    stamp = LagRestamp(sink, lambda: 2.5)
    for i in range(0, len(stream), 5):  # heads and bodies split at every 5th byte
        stamp.write(stream[i:i + 5])
    stamp.write_eof()
    assert bytes(sink.data) == (
        b"GET /a.m3u8?_HLS_msn=3 HTTP/1.1\r\nX-Abrkit-Channel-Lag: 2.500000\r\nHost: x\r\n\r\n"
        b"POST /p HTTP/1.1\r\nContent-Length: 27\r\n\r\nX-Abrkit-Channel-Lag: 9\r\n\r\n"
        b"GET /b.m4s HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /c.m4s HTTP/1.1\r\nx-abrkit-channel-lag:2.500000\r\n\r\n"
        b"GET /unfinished HTTP/1.1\r\nX-Abrkit-Channel-Lag: 3")  # never ended: as it came, before the end
    assert stamp.restamped == 2 and sink.eof and not stamp.lost
    chunked = LagRestamp(_Sink(), lambda: 2.5)
    chunked.write(b"POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunked.write(b"GET / HTTP/1.1\r\nX-Abrkit-Channel-Lag: 1\r\n\r\n")  # cannot be told from the body: as it is
    assert chunked.lost and chunked.restamped == 0


@pytest.mark.wallclock
@pytest.mark.parametrize("restamp", [True, False])
async def test_a_stall_in_the_delay_line_is_in_the_lag_the_server_reads(restamp: bool) -> None:
    """The clock leaves out 300 ms while a request stamped with lag 0 is in the link's 100 ms delay
    line: the server reads the lag as it stands then (0.3 s and the little left out before), not the
    stamp, which would put its view of the player's clock 0.3 s ahead; without the option, the stamp."""
    heads: list[bytes] = []
    async with held_server(0.0, stated_s=None, heads=heads) as port:
        config = ShaperConfig(upstream_host="127.0.0.1", upstream_port=port, trace=synthetic.constant(5e6, duration_s=60),
                              rtt_ms=100, exclude_server_time=True, exclude_loop_stalls=True, speed=2.0,
                              restamp_channel_lag=restamp)
        async with Shaper(config) as shaper:
            reader, writer = await asyncio.open_connection(shaper.host, shaper.port)
            writer.write(b"GET /a.m3u8 HTTP/1.1\r\nX-Abrkit-Channel-Lag: 0.000000\r\nHost: x\r\n\r\n")
            await asyncio.sleep(0.02)  # the shaper has read it: in the delay line
            loop = asyncio.get_running_loop()
            stalled_s = loop.time()
            shaper.clock.hold(counted=False)
            await asyncio.sleep(0.3)
            shaper.clock.release()
            stalled_s = loop.time() - stalled_s
            await asyncio.wait_for(reader.readuntil(b"ok"), 5.0)
            left_out_s = shaper.clock.paused_s()
            writer.close()
    (head,) = heads
    lag = float(head.split(b"X-Abrkit-Channel-Lag: ")[1].split(b"\r\n")[0])
    if restamp:
        assert 2.0 * stalled_s <= lag <= 2.0 * left_out_s + 1e-6  # channel seconds at 2x
    else:
        assert lag == 0.0


def test_the_header_is_named_once_in_server_formats() -> None:
    # The player stamps it, the shaper re-stamps it, the edge and the origin read it: one name, in
    # server.formats (netsim may import only that of server), never a copy that could drift apart.
    from player.client.liveplay import CHANNEL_LAG_HEADER as stamped
    from server.formats.names import CHANNEL_LAG_HEADER
    from server.live.origin import CHANNEL_LAG_HEADER as read

    assert stamped is read is CHANNEL_LAG_HEADER
    root = Path(__file__).resolve().parents[2]
    defined = [str(path.relative_to(root)) for folder in ("abr", "netsim", "player", "server")
               for path in sorted((root / folder).rglob("*.py")) if "CHANNEL_LAG_HEADER = " in path.read_text()]
    assert defined == ["server/formats/names.py"]
