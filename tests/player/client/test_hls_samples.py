"""The LL-HLS player's throughput samples: each part and the blocking playlist reload held for it
are answered at the same moment and share the link, so a part's time on the link includes the
playlist's bytes (as the simulator's twin counts them, player/research/live_sim.py)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from player.client import hlslive, liveplay
from player.client.harness import UrlTarget, play_headless
from player.client.headless import PlayerConfig
from player.client.hls import MasterPlaylist, parse_playlist
from player.client.hlslive import HlsLivePlayer
from player.client.liveplay import ChunkTimer, LivePlayConfig, LivePlayer
from player.errors import CliError
from player.research.experiment_live import channel_content
from tests.conftest import CLEAR_TITLE, PackagedTitles
from tests.player.client.conftest import Origin, mp4_box

_PART = mp4_box(b"moof", 8) + mp4_box(b"mdat", 976)  # 1000 bytes


def _second_part(others: list[tuple[float, int]]) -> tuple[float, float]:
    """A 1000 B/s link: part 0 in pieces 1.0-2.0 s (the link's rate measured), part 1 alone on the
    link after an idle wait, its first 400 bytes landing at 5.4 s, the rest 0.6 s later."""
    timer = ChunkTimer(requested_s=0.0, others=others)
    timer.feed(1.4, _PART[:400])
    timer.feed(2.0, _PART[400:])
    assert timer.rate_Bps == pytest.approx(1000.0)
    timer.feed(5.4, _PART[:400])
    (part,) = timer.feed(6.0, _PART[400:])
    return part.first_byte_s, part.last_byte_s


def test_a_part_that_shared_the_link_with_a_playlist_began_crossing_before_it() -> None:
    # Alone, the first 400 bytes crossed in the 0.4 s before they landed.
    assert _second_part([]) == (pytest.approx(5.0), 6.0)
    # A 300-byte playlist answer landed at 5.3 s, sent with the part: the link carried both, so
    # the part began 0.3 s earlier still (its sample 1000 B / 1.3 s, not / 1.0 s).
    assert _second_part([(5.3, 300)]) == (pytest.approx(4.7), 6.0)
    # Two of them, landed one after the other while the part's first piece crossed.
    assert _second_part([(5.1, 100), (5.3, 300)]) == (pytest.approx(4.6), 6.0)


def test_an_answer_landing_while_the_part_crossed_shared_its_first_piece() -> None:
    # Landed after the first piece, before the part ended: on a fair-shared link the first piece's
    # 400 bytes crossed beside as many of its bytes (or all of them, if fewer).
    assert _second_part([(5.5, 300)]) == (pytest.approx(4.7), 6.0)
    assert _second_part([(5.5, 1000)]) == (pytest.approx(4.6), 6.0)


def test_answers_that_did_not_share_a_parts_first_piece_are_not_counted() -> None:
    # Landed before that piece began crossing (the link idle between), after the part ended, or
    # before the previous piece: none moves the part's start.
    for others in ([(4.9, 300)], [(6.5, 300)], [(1.9, 300)]):
        assert _second_part(others) == (pytest.approx(5.0), 6.0), others
    # Never before the previous piece (the link carried that first).
    assert _second_part([(5.3, 5000)])[0] == pytest.approx(2.0)


async def test_the_hls_player_gives_its_part_timer_every_playlist_answer(live_origin: Origin) -> None:
    # The LL-HLS channel at 4x, unshaped: every reload's answer is kept, as its bytes on the link.
    url, _ = await live_origin(low_latency=True, speed=4.0)
    players: list[LivePlayer] = []
    seen: list[Sequence[tuple[float, int]]] = []
    real = liveplay.ChunkTimer

    def timer(*args: Any, **kwargs: Any) -> ChunkTimer:
        seen.append(kwargs["others"])
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(liveplay, "ChunkTimer", timer)
        patch.setattr(hlslive, "PARTS_KEPT", 4)  # the part log keeps the latest parts, not a whole session's
        report = await asyncio.wait_for(play_headless(
            UrlTarget(url=f"{url}/live/master.m3u8"), PlayerConfig(abr="bola", decode="none", speed=4.0, audio=False),
            live=LivePlayConfig(duration_s=8.0), on_live_player=players.append), 60.0)
    assert report.error is None, report.error
    (player,) = players
    assert isinstance(player, HlsLivePlayer) and player.chunk_s is not None and player.part_requests > 0
    landed = player.answers_landed
    assert len(landed) == min(player.reloads, landed.maxlen or player.reloads) and [t for t, _ in landed] == sorted(t for t, _ in landed)
    # A video playlist's answer: its body and, before it, the status line and headers.
    assert all(size > player.control_bytes["manifest"] // 2 for _, size in landed), landed
    assert max(size for _, size in landed) > player.control_bytes["manifest"] + 100
    assert seen and all(others is landed for others in seen)  # each video download's timer has them
    # Each part's request, first and last byte logged (bench/live_segments.py --protocol hls), the latest 4
    assert player.part_requests > 4 and len(player.part_log) == 4, (player.part_requests, player.part_log)
    assert all(p.requested_s <= p.first_byte_s <= p.last_byte_s and p.size_bytes > 0 for p in player.part_log)
    records = player.session.records  # the latest, not the first session's four
    assert len(records) >= 2 and player.part_log[0].segment >= records[-1].segment_index > records[0].segment_index


def test_an_hls_twins_ladder_is_the_master_playlists_bandwidths(packaged: PackagedTitles) -> None:
    # The HLS player's ABR sees each variant's BANDWIDTH (peak, with its audio): so does its twin.
    title = packaged.content_root / CLEAR_TITLE
    master = parse_playlist((title / "master.m3u8").read_bytes(), "http://h/master.m3u8")
    assert isinstance(master, MasterPlaylist)
    hls = channel_content(title, chunk_s=0.5, protocol="hls")
    dash = channel_content(title, chunk_s=0.5)
    assert hls.video.ladder.bitrates_bps == tuple(sorted(v.bandwidth_bps for v in master.variants))
    assert all(h > d for h, d in zip(hls.video.ladder.bitrates_bps, dash.video.ladder.bitrates_bps))
    assert np.array_equal(hls.video.sizes_bytes, dash.video.sizes_bytes)  # the bytes are the channel's all the same


def test_an_hls_ladder_that_does_not_match_the_mpd_is_a_clear_error(packaged: PackagedTitles, tmp_path: Path) -> None:
    title = tmp_path / "clip"
    shutil.copytree(packaged.content_root / CLEAR_TITLE, title)
    text = (title / "master.m3u8").read_text()
    first = text.index("#EXT-X-STREAM-INF")
    (title / "master.m3u8").write_text(text[:first] + text[text.index("#EXT-X-STREAM-INF", first + 1):])
    with pytest.raises(CliError, match="video variants of distinct BANDWIDTH needed, one per rung"):
        channel_content(title, chunk_s=0.5, protocol="hls")
    (title / "master.m3u8").unlink()
    with pytest.raises(CliError, match="needs the title's master playlist"):
        channel_content(title, chunk_s=0.5, protocol="hls")
