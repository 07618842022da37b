"""`abrkit play URL` learns whether the stream is on demand, live DASH or live HLS from its manifest;
an option given for another kind (a target latency for an on-demand title, `--max-segments` for a
live channel, the clock-sync settings for live HLS, `--no-hls-low-latency-mode` for live DASH) is an
error naming it and the stream's kind, before playback, not an option silently ignored; `--speed K`
on a channel at 1x is an error naming the speed once the player has measured the channel's clock."""

from __future__ import annotations

import asyncio
import re

import pytest

from player.cli import main
from player.client.streamkind import StreamOptions
from player.errors import CliError
from tests.conftest import CLEAR_TITLE
from tests.player.client.conftest import Origin


@pytest.mark.parametrize("path,argv,named", [
    (f"{CLEAR_TITLE}/manifest.mpd", ("--target-latency-s", "5", "--duration-s", "9"),
     "is an on-demand stream, which these options do not apply to: --duration-s (live only), "
     "--target-latency-s (live only); leave them out"),
    (f"{CLEAR_TITLE}/master.m3u8", ("--no-hls-low-latency-mode", "--max-allowed-drift-ms", "50"),
     "is an on-demand stream, which these options do not apply to: --max-allowed-drift-ms (live DASH only), "
     "--hls-low-latency-mode/--no-hls-low-latency-mode (live HLS only)"),
    ("live/manifest.mpd", ("--max-segments", "3", "--no-hls-low-latency-mode", "--target-latency-s", "5"),
     "is a live DASH stream, which these options do not apply to: --max-segments (on-demand only), "
     "--hls-low-latency-mode/--no-hls-low-latency-mode (live HLS only)"),
    ("live/master.m3u8", ("--sync-background-attempts", "0", "--duration-s", "9"),
     "is a live HLS stream, which this option does not apply to: --sync-background-attempts (live DASH only); "
     "leave it out"),
], ids=["vod-dash", "vod-hls", "live-dash", "live-hls"])
async def test_options_for_another_kind_of_stream_are_an_error_naming_them(
        live_origin: Origin, path: str, argv: tuple[str, ...], named: str, capsys: pytest.CaptureFixture[str]) -> None:
    url, statuses = await live_origin()
    # The command runs its own event loop: in a thread, while this loop serves the origin.
    code = await asyncio.to_thread(main, ["play", "--headless", "--decode", "none", f"{url}/{path}", *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"abrkit play: error: {url}/{path} {named}" in err, err
    assert "Traceback" not in err and not statuses["segment 200"]  # refused before any media request


def test_options_for_the_streams_kind_pass_and_kinds_are_checked() -> None:
    live = frozenset({"live DASH", "live HLS"})
    StreamOptions(applies_to=(("--target-latency-s", live),)).check("live HLS", "x")  # type: ignore[arg-type]
    StreamOptions().check("on-demand", "x")
    with pytest.raises(CliError, match=r"^title 'bbb' is an on-demand stream, .*--target-latency-s \(live only\)"):
        StreamOptions(applies_to=(("--target-latency-s", live),)).check("on-demand", "title 'bbb'")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kinds must be some of one of"):
        StreamOptions(applies_to=(("--x", frozenset({"vod"})),))  # type: ignore[arg-type]


@pytest.mark.parametrize("path,named", [
    ("live/manifest.mpd", r"the live channel's clock runs at 1\.\dx the wall clock but the player at 10x: play it at "
                          r"--speed 1, or run the channel at the player's speed"),
    ("live/master.m3u8", r"has listed no new segment for [\d.]+ s \(target duration 4 s\): the stream stopped, or its "
                         r"clock runs slower than the player's \(--speed 10\)"),
], ids=["dash", "hls"])
async def test_play_sped_up_on_a_channel_at_1x_is_a_clear_error_naming_the_speed(
        live_origin: Origin, path: str, named: str, capsys: pytest.CaptureFixture[str]) -> None:
    # A live URL's channel may run K times faster (our stack's, `abrkit serve --live --live-speed K`), so
    # --speed is not refused up front: the player measures the channel's clock (DASH: at the first re-sync,
    # 30 s of session; HLS: the playlist stops listing new segments) and stops with an error naming it.
    url, _ = await live_origin(low_latency=False)
    argv = ["play", "--headless", "--decode", "none", f"{url}/{path}", "--speed", "10", "--duration-s", "60"]
    code = await asyncio.to_thread(main, argv)
    out = capsys.readouterr()
    assert code == 1 and re.search(named, out.out), out
    assert "Traceback" not in out.err, out.err
