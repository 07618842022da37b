"""LL-HLS at the origin and the edge: parts in the live media playlists, blocking playlist reload
(rfc8216bis 6.2.5.2), parts held until published, coalescing at the edge, and hostile queries.
The test clip's channel: 4 s segments of eight 0.5 s chunks."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter

import aiohttp
import m3u8
import pytest

from player.client.fetch import FetchConfig, Fetcher, FetchError
from server.formats.servertiming import publish_wait_s
from server.live.channel import LiveChannel
from server.live.hls import BadBlockingRequest, BlockingRequest, blocking_request, check_blocking, live_media_playlist
from tests.conftest import PackagedTitles
from tests.server.live.conftest import StackFactory, make_channel

START_S = 1_000_000.0


def _attrs(playlist: str, tag: str) -> dict[str, str]:
    line = next(line for line in playlist.splitlines() if line.startswith(tag + ":"))
    return dict(re.findall(r'([A-Z-]+)=("[^"]*"|[^,]*)', line.partition(":")[2]))


@pytest.mark.parametrize("media,rep", [("video", "v216p"), ("audio", "a128k")])
def test_playlist_lists_parts_and_a_preload_hint_that_m3u8_reads(channel: LiveChannel, media: str, rep: str) -> None:
    now = START_S + 9 * 4 + 1.7  # segment 10 in progress: three of its chunks published
    text = live_media_playlist(channel, media, rep, now)
    control = _attrs(text, "#EXT-X-SERVER-CONTROL")
    part_target = float(_attrs(text, "#EXT-X-PART-INF")["PART-TARGET"])
    assert control["CAN-BLOCK-RELOAD"] == "YES" and 0.5 <= part_target < 0.6
    assert float(control["PART-HOLD-BACK"]) >= 3 * part_target and float(control["HOLD-BACK"]) >= 3 * 4
    parsed = m3u8.loads(text)  # the world's parser
    assert parsed.server_control.can_block_reload == "YES" and parsed.part_inf.part_target == part_target
    assert parsed.preload_hint.hint_type == "PART" and parsed.preload_hint.uri == "10.3.m4s"
    complete = [s for s in parsed.segments if s.uri]
    assert complete[-1].uri == "9.m4s" and f"{parsed.media_sequence}.m4s" == complete[0].uri
    in_progress = parsed.segments[-1]
    assert in_progress.uri is None and [p.uri for p in in_progress.parts] == ["10.0.m4s", "10.1.m4s", "10.2.m4s"]
    assert in_progress.parts[0].independent == "YES"
    with_parts = [s for s in complete if s.parts]
    assert [s.uri for s in with_parts] == ["7.m4s", "8.m4s", "9.m4s"]  # three target durations of history
    for segment in with_parts:
        durations = [p.duration for p in segment.parts]
        assert len(durations) == 8 and all(d <= part_target for d in durations)
        assert sum(durations) == pytest.approx(segment.duration, abs=0.03)
        assert segment.parts[0].independent == "YES"
        assert all((p.independent == "YES") == (media == "audio") for p in segment.parts[1:])


def test_whole_segment_channels_have_no_parts(packaged: PackagedTitles) -> None:
    channel = make_channel(packaged, start_s=START_S)
    text = live_media_playlist(channel, "video", "v216p", START_S + 40.2)
    assert "EXT-X-PART" not in text and "SERVER-CONTROL" not in text and "PRELOAD-HINT" not in text
    assert check_blocking(channel, "video", "v216p", BlockingRequest(11), START_S + 40.2) is None  # an ordinary reload
    with pytest.raises(BadBlockingRequest, match="no parts"):
        check_blocking(channel, "video", "v216p", BlockingRequest(11, 0), START_S + 40.2)


@pytest.mark.parametrize("query,message", [
    ({"_HLS_msn": "abc"}, "decimal integer"), ({"_HLS_msn": "-1"}, "decimal integer"),
    ({"_HLS_msn": "1e3"}, "decimal integer"), ({"_HLS_msn": " 7"}, "decimal integer"),
    ({"_HLS_msn": "01"}, "decimal integer"), ({"_HLS_msn": "9" * 400}, "decimal integer"),
    ({"_HLS_msn": ""}, "decimal integer"), ({"_HLS_msn": "5", "_HLS_part": "x"}, "_HLS_part"),
    ({"_HLS_part": "2"}, "without _HLS_msn")])
def test_malformed_blocking_queries_are_named(query: dict[str, str], message: str) -> None:
    with pytest.raises(BadBlockingRequest, match=message):
        blocking_request(query)


def test_blocking_requests_too_far_ahead_are_refused(channel: LiveChannel) -> None:
    now = START_S + 9 * 4 + 1.7  # last complete 9, newest part 10.2
    assert blocking_request({"_HLS_msn": "11", "_HLS_part": "1", "other": "x"}) == BlockingRequest(11, 1)
    check_blocking(channel, "video", "v216p", BlockingRequest(11), now)  # last + 2: allowed
    check_blocking(channel, "video", "v216p", BlockingRequest(10, 8), now)  # 10.7: five parts ahead
    check_blocking(channel, "video", "v216p", BlockingRequest(11, 0), now)  # six parts ahead: the limit
    check_blocking(channel, "video", "v216p", BlockingRequest(3, 0), now)  # long published: at once
    for request, message in ((BlockingRequest(12), "more than two segments"),
                             (BlockingRequest(11, 1), "Advance Part Limit")):  # seven parts ahead
        with pytest.raises(BadBlockingRequest, match=message):
            check_blocking(channel, "video", "v216p", request, now)


@pytest.mark.parametrize("through_edge", [False, True])
async def test_a_blocking_reload_too_far_ahead_names_the_limit_to_the_player(live_stack: StackFactory,  # noqa: F811
                                                                            through_edge: bool) -> None:
    """The 400 says which limit and where the playlist's end stood, through the edge too, and the
    player's error keeps it (it said only "HTTP 400")."""
    stack = await live_stack(since_start_s=8.0 + 0.5 * 2 + 0.2)  # segment 3: chunks 0-1 published, 3.1 the newest
    assert stack.edge is not None
    base = stack.edge.url if through_edge else stack.origin_url
    async with aiohttp.ClientSession() as http:
        with pytest.raises(FetchError) as info:  # 4.3: ten parts past 3.1
            await Fetcher(http, FetchConfig(attempts=1)).fetch([f"{base}/live/video/v216p/playlist.m3u8?_HLS_msn=4"
                                                                "&_HLS_part=3"])
    assert info.value.status == 400
    assert info.value.server_text == ("blocking playlist reload: _HLS_msn=4&_HLS_part=3 is more than 6 parts past "
                                      "the playlist's last part, 3.1 (the Advance Part Limit)")


def _in_segment(channel: LiveChannel, chunks: float) -> float:
    """Seconds since the channel's start that put `chunks` chunks into segment 3."""
    return 8 + chunks * channel.chunk_duration_s


async def test_blocking_reload_and_parts_at_the_origin(live_stack: StackFactory) -> None:  # noqa: F811
    stack = await live_stack(since_start_s=8.0 + 0.5 * 2 + 0.2)  # segment 3: chunks 0-1 published
    channel, base = stack.channel, f"{stack.origin_url}/live/video/v216p/"
    async with aiohttp.ClientSession() as http:
        async with http.get(base + "playlist.m3u8") as response:
            text = await response.text()
            assert "Server-Timing" not in response.headers  # not held
        assert '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="3.2.m4s"' in text
        started = time.time()
        async with http.get(base + "playlist.m3u8?_HLS_msn=3&_HLS_part=3") as response:
            text = await response.text()
            assert response.status == 200 and "max-age=" in response.headers["Cache-Control"]
            # How long it was held for the channel (server.formats.servertiming): all but the
            # server's own milliseconds of the wait
            waited_s = publish_wait_s(response.headers["Server-Timing"])
        took_s = time.time() - started
        assert time.time() >= channel.chunk_available_at_s(3, 3) - 0.02 and took_s > 0.5
        assert took_s - 0.1 < waited_s <= took_s
        assert 'URI="3.3.m4s"' in text and '"3.4.m4s"' in text.split("PRELOAD-HINT")[1]
        started = time.time()
        async with http.get(base + "3.4.m4s") as response:  # the hint: held until published
            assert response.status == 200 and await response.read() == channel.segment_chunks("video", "v216p", 3)[4]
            waited_s = publish_wait_s(response.headers["Server-Timing"])
        assert time.time() >= channel.chunk_available_at_s(3, 4) - 0.02
        assert time.time() - started - 0.1 < waited_s <= time.time() - started
        for path, status, message in (("4.1.m4s", 404, "not available yet"), ("3.8.m4s", 404, "8 parts"),
                                      ("1.0.m4s", 200, ""),  # published long ago: not held
                                      ("playlist.m3u8?_HLS_msn=6", 400, "more than two segments"),
                                      ("playlist.m3u8?_HLS_msn=3&_HLS_part=-1", 400, "decimal integer"),
                                      ("playlist.m3u8?_HLS_part=1", 400, "without _HLS_msn")):
            async with http.get(base + path) as response:
                assert response.status == status, path
                assert "Server-Timing" not in response.headers, path
                if message:
                    assert message in (await response.json())["error"]
                    assert response.headers["Cache-Control"] == "no-store"


async def test_the_edge_coalesces_blocking_reloads_and_parts(live_stack: StackFactory) -> None:  # noqa: F811
    stack = await live_stack(since_start_s=8.0 + 0.5 * 2 + 0.2)
    assert stack.edge is not None
    base = stack.edge.url + "/live/video/v216p/"
    want = stack.channel.segment_chunks("video", "v216p", 3)[3]
    queries = ("_HLS_msn=3&_HLS_part=3", "_HLS_part=3&_HLS_msn=3", "_HLS_msn=3&_HLS_part=3&CMCD=ot%3Dm")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        async def playlist(query: str) -> tuple[int, str, str]:
            async with http.get(f"{base}playlist.m3u8?{query}") as response:
                return response.status, await response.text(), response.headers.get("X-Cache", "")

        async def part() -> tuple[int, bytes]:
            async with http.get(base + "3.3.m4s") as response:
                return response.status, await response.read()

        lists = asyncio.gather(*(playlist(queries[i % 3]) for i in range(60)))
        parts = asyncio.gather(*(part() for _ in range(60)))
        got_lists, got_parts = await lists, await parts
        assert all(status == 200 and 'URI="3.3.m4s"' in text for status, text, _ in got_lists)
        assert Counter(label for _, _, label in got_lists)["MISS"] == 1
        assert all(result == (200, want) for result in got_parts)
        assert stack.counts["/live/video/v216p/playlist.m3u8"] == 1  # one held origin request for all 60
        assert stack.counts["/live/video/v216p/3.3.m4s"] == 1
        by_path = stack.edge.edge.live.stats.by_path  # type: ignore[union-attr]
        assert by_path["/live/video/v216p/playlist.m3u8?_HLS_msn=3&_HLS_part=3"] == 1
        for query in ("_HLS_msn=x", "_HLS_msn=1&_HLS_msn=2", "_HLS_part=0", "_HLS_msn=" + "9" * 5000):
            async with http.get(f"{base}playlist.m3u8?{query}") as response:
                assert response.status == 400, query
                assert "blocking playlist reload" in (await response.json())["error"]
        assert stack.counts["/live/video/v216p/playlist.m3u8"] == 1  # refused at the edge, not forwarded


async def test_the_edge_tells_each_client_its_own_share_of_a_blocking_hold(live_stack: StackFactory) -> None:  # noqa: F811
    """Two clients held on one origin wait (coalesced): each is told how long it waited, the later
    one less; a cached answer was not held at all (server.formats.servertiming). Checked on the loop's
    time against the edge's own record of the fetch, not against wall-clock spans (on a loaded machine
    the stack's own time is not the few ms it is on an idle one)."""
    stack = await live_stack(since_start_s=8.0 + 0.5 * 2 + 0.2)  # part 3.3 is due in about 0.8 s
    assert stack.edge is not None
    path = "/live/video/v216p/playlist.m3u8?_HLS_msn=3&_HLS_part=3"
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as http:
        async def ask(delay_s: float) -> tuple[float, float, float, str]:
            await asyncio.sleep(delay_s)
            started = loop.time()  # the edge's and the origin's clock too (one loop)
            async with http.get(stack.edge.url + path) as response:  # type: ignore[union-attr]
                assert response.status == 200
                return (started, loop.time() - started, publish_wait_s(response.headers.get("Server-Timing")),
                        response.headers["X-Cache"])

        (started_1, took_1, waited_1, label_1), (started_2, took_2, waited_2, label_2) = await asyncio.gather(
            ask(0.0), ask(0.3))
        assert time.time() >= stack.channel.chunk_available_at_s(3, 3) - 0.02  # answered once published
        fetch = stack.edge.edge.live.cache.get(path)  # type: ignore[union-attr]
        assert fetch is not None and fetch.publish_wait_s > 0
        assert (label_1, label_2) == ("MISS", "HIT-INFLIGHT")
        # The first client joined as the fetch began: the origin's whole wait, all within its request
        assert started_1 <= fetch.started_s and waited_1 == pytest.approx(fetch.publish_wait_s, abs=1e-6)
        assert 0 < waited_1 <= took_1
        # The later one: less by at least what of the fetch had passed when it asked
        assert 0 < waited_2 <= min(took_2, fetch.publish_wait_s - (started_2 - fetch.started_s) + 1e-6)
        assert waited_2 < waited_1 - 0.2
        _, _, waited_3, label_3 = await ask(0.0)
        assert label_3 == "HIT" and waited_3 == 0.0


async def test_the_edge_keeps_a_blocking_reloads_answer_on_the_channels_clock(live_stack: StackFactory) -> None:  # noqa: F811
    """The origin's max-age for a pinned answer is a segment of channel time: at 8x the edge keeps it
    1/8 as long (else a late ask for an old part gets a playlist segments behind the channel)."""
    stack = await live_stack(since_start_s=12.2, edge_speed=8.0)
    assert stack.edge is not None
    url = stack.edge.url + "/live/video/v216p/playlist.m3u8?_HLS_msn=1"
    async with aiohttp.ClientSession() as http:
        labels = []
        for wait_s in (0.0, 0.0, 0.7):
            await asyncio.sleep(wait_s)
            async with http.get(url) as response:
                assert response.status == 200 and response.headers["Cache-Control"] == "public, max-age=4"
                labels.append(response.headers["X-Cache"])
    assert labels == ["MISS", "HIT", "MISS"]  # kept 4 s / 8 = 0.5 s, not 4 s


async def test_a_blocking_reload_that_would_wait_too_long_is_a_503(live_stack: StackFactory,  # noqa: F811
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from server.live import origin

    monkeypatch.setattr(origin, "BLOCKING_TIMEOUT_TARGET_DURATIONS", 0.05)  # 0.2 s of 4 s segments
    stack = await live_stack(since_start_s=8.0 + 0.5 * 2 + 0.2)
    async with aiohttp.ClientSession() as http:
        started = time.time()
        async with http.get(f"{stack.origin_url}/live/video/v216p/playlist.m3u8?_HLS_msn=3&_HLS_part=5") as response:
            assert response.status == 503 and "within 0.2 s" in (await response.json())["error"]
            assert response.headers["Cache-Control"] == "no-store"
            assert 0.15 < publish_wait_s(response.headers["Server-Timing"]) < 1.0  # the channel's time too
        assert 0.15 < time.time() - started < 1.0  # after the timeout, not when the part came
        async with http.head(f"{stack.origin_url}/live/video/v216p/3.0.m4s") as response:
            assert response.status == 200 and response.headers["Cache-Control"].endswith("immutable")
