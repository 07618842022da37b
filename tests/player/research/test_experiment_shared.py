"""`abrkit run --players-per-link N`: groups of players on one link, simulated and emulated, with
fairness figures; one player per link leaves every result as it was."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from abr.types import Ladder
from netsim.trace import Trace
from player.bundled import ENVIVIO_DIR, TRACES_DIR
from player.cli import main
from player.client.eventlog import EventLog
from player.research.experiment_shared import abandoned_downloads, shared_model_download_s
from player.research.sim import profile
from player.research.sim_shared import SHARED_LINK_MODEL_VERSION
from player.session import Fetch, PlaybackSession, SegmentRecord
from player.video import AudioTrack, Video
from tests.player.conftest import LONG_TITLE, Scripted

TRACES = [str(TRACES_DIR / name) for name in ("norway_bus_1", "norway_ferry_10")]


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def _sim(out: Path, *extra: str) -> int:
    return main(["run", "--abr", "bba,bola", "--traces", *TRACES, "--video-or-title", str(ENVIVIO_DIR),
                 "--mode", "sim", "--out", str(out), "--workers", "1", "--quiet", "--timelines", "0", *extra])


def test_one_player_per_link_leaves_the_results_byte_identical(tmp_path: Path) -> None:
    assert _sim(tmp_path / "today") == 0
    assert _sim(tmp_path / "one", "--players-per-link", "1") == 0
    for name in ("results.jsonl", "results.csv"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "today" / name).read_bytes()


def test_players_per_link_writes_a_row_per_player_with_the_links_fairness(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert _sim(out, "--players-per-link", "3", "--join-spacing-s", "2") == 0
    rows = _rows(out)
    assert len(rows) == 2 * 2 * 3 and len({r["key"] for r in rows}) == 12
    for row in rows:
        assert row["link_players"] == 3 and row["link_join_s"] == 2.0 * row["link_player"]
        assert 1 / 3 <= row["link_jain_bitrate"] <= 1 and 0 < row["link_utilisation"] <= 1
    groups = {(r["abr"], r["trace"]) for r in rows}
    assert len(groups) == 4
    with (out / "results.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 12
    by_key = {(r["mode"], r["abr"], r["trace"], r["link_player"]): r for r in table}
    for row in rows:
        line = by_key[(row["mode"], row["abr"], row["trace"], str(row["link_player"]))]
        for field in ("link_players", "link_join_s", "link_jain_bitrate", "link_qoe_mean", "link_utilisation",
                      "instability"):
            assert float(line[field]) == pytest.approx(row[field])
    printed = capsys.readouterr().out
    assert "3 players per link" in printed and "jain" in printed
    # A rerun skips every finished group; a lost row runs its whole group again.
    lines = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text("\n".join(lines[1:]) + "\n")
    capsys.readouterr()
    assert _sim(out, "--players-per-link", "3", "--join-spacing-s", "2") == 0
    assert "3 sessions run" in capsys.readouterr().out
    # Rows an older shared-link model wrote (their keys have no model version, as before header bytes)
    # are not reused: every group runs again.
    old = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert all(f",model={SHARED_LINK_MODEL_VERSION}#" in r["key"] for r in old)
    (out / "results.jsonl").write_text("".join(
        json.dumps({**r, "key": r["key"].replace(f",model={SHARED_LINK_MODEL_VERSION}", "")}) + "\n" for r in old))
    assert _sim(out, "--players-per-link", "3", "--join-spacing-s", "2") == 0
    assert "12 sessions run" in capsys.readouterr().out


@pytest.mark.parametrize(("flag", "value", "message"), [("--players-per-link", "0", "--players-per-link must be >= 1"),
                                                        ("--join-spacing-s", "-1", "--join-spacing-s must be >= 0")])
def test_bad_link_settings_are_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str,
                                               value: str, message: str) -> None:
    assert _sim(tmp_path / "out", flag, value) == 2
    assert message in capsys.readouterr().err


@pytest.mark.wallclock
@pytest.mark.slow  # about 40 s: 40 s of media at 2x, plus a stack
def test_two_emulated_players_share_one_shaper_and_agree_with_the_simulator(
        tmp_path: Path, long_content: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 2 Mbit/s each once both play: BBA settles on the 800k rung after its start-up ramp. Speed 2, not
    # more: at K x, a wake-up of the loaded machine's event loop lands K times later in session time.
    # The second player joins 1 s later, on the link's warp clock (which by then lags loop time by the
    # first player's server time: its session clock must not start in the past).
    out = tmp_path / "out"
    args = ["run", "--abr", "bba", "--traces", "constant:4e6", "--video-or-title", str(long_content / LONG_TITLE),
            "--mode", "both", "--speed", "2", "--out", str(out), "--quiet", "--players-per-link", "2",
            "--join-spacing-s", "1", "--workers", "1"]
    assert main(args) == 0, capsys.readouterr().err
    rows = _rows(out)
    emulated = [r for r in rows if r["mode"] == "emulate"]
    simulated = [r for r in rows if r["mode"] == "sim"]
    assert len(emulated) == len(simulated) == 2
    assert all(r["error"] is None and r["segments"] == 10 for r in emulated)
    sim, emu = simulated[0], emulated[0]
    assert emu["link_jain_bitrate"] == pytest.approx(sim["link_jain_bitrate"], rel=0.10)
    assert emu["link_qoe_mean"] == pytest.approx(sim["link_qoe_mean"], rel=0.10)
    assert emu["link_utilisation"] == pytest.approx(sim["link_utilisation"], rel=0.10)
    # The link model's download times count both players' requests: the measured ones follow them (one
    # player's alone would be up to twice as fast while both download).
    measured = np.concatenate([r["timeline"]["download_s"] for r in emulated])
    model = np.concatenate([r["timeline"]["model_download_s"] for r in emulated])
    assert float(np.median(np.abs(measured / model - 1))) < 0.10
    # The link's clock held out each player's own time after its downloads (exclude_client_time), as
    # for one player alone: with N players in one loop it would otherwise be link time for all.
    assert emu["warp_clock"]["client_holds"] >= 20 and emu["warp_clock"]["stalled_s"] >= 0


def _record(request_time_s: float, size_bytes: int, media: str = "video") -> SegmentRecord:
    return SegmentRecord(segment_index=0, quality=0, bitrate_bps=0, size_bytes=size_bytes, request_time_s=request_time_s,
                         download_s=0.0, ttfb_s=0.0, rebuffer_s=0.0, buffer_before_s=0.0, buffer_after_s=0.0, wait_s=0.0,
                         reason="", media=media)  # type: ignore[arg-type]


def test_the_link_model_column_of_a_group_counts_every_players_requests() -> None:
    # 8 Mbit/s = 1 MB/s, 80 ms RTT. Player 0 fetches 1 MB of video and 0.5 MB of audio at its time 0;
    # player 1 joins 0.5 s later and fetches 1 MB. The audio ends when 1.5 MB have flowed in total
    # (3 transfers share the link 1/3 each from 0.58 s: it had 0.25 MB by then), and so on.
    trace = Trace(name="flat", durations_s=np.array([100.0]), bandwidth_bps=np.array([8e6]))
    prof = profile("default")
    players = [([_record(0.2, 1_000_000)], [_record(0.2, 500_000, "audio")]),  # session time 0.2: its pre-roll
               ([_record(0.0, 1_000_000)], [])]
    p0, p1 = shared_model_download_s(trace, prof, 0.0, [0.0, 0.5], players, header_bytes=0)
    # 0.08-0.58: player 0's two transfers, 0.25 MB each. Then three until its audio has the rest
    # (0.75 s: 1.33 s); then two until its video has its last 0.5 MB (1 s: 2.33 s); then player 1 alone
    # for its last 0.25 MB (2.58 s, 2.08 s after its request).
    assert p0 == pytest.approx([2.33], abs=1e-6)
    assert p1 == pytest.approx([2.08], abs=1e-6)
    alone = shared_model_download_s(trace, prof, 0.0, [0.0], players[:1], header_bytes=0)[0]
    assert alone == pytest.approx([1.58], abs=1e-6)  # 1.5 MB behind 80 ms
    # Each response's header bytes cross the link too (by default the stack's): 1000 B each here, so
    # 3000 B more cross before player 0's video is in, and before player 1's (3 ms later each).
    p0, p1 = shared_model_download_s(trace, prof, 0.0, [0.0, 0.5], players, header_bytes=1000)
    assert p0 == pytest.approx([2.333], abs=1e-6)
    assert p1 == pytest.approx([2.083], abs=1e-6)


def _av_video() -> Video:
    rates = np.array([300_000, 1_200_000, 2_850_000, 6_000_000])
    sizes = (rates * 4.0 / 8 * np.random.default_rng(3).uniform(0.8, 1.2, (12, rates.size))).astype(np.int64)
    audio = AudioTrack(ladder=Ladder(bitrates_bps=(128_000,), segment_duration_s=4.0),
                       sizes_bytes=np.full((12, 1), 64_000), durations_s=(4.0,) * 12)
    return Video(name="av", ladder=Ladder(bitrates_bps=tuple(int(r) for r in rates), segment_duration_s=4.0),
                 sizes_bytes=sizes, segment_count=12, audio=audio)


def test_abandoned_downloads_are_on_the_link_in_the_group_model() -> None:
    # The session's log gives each abandoned video download's request (its decision's time) and the
    # bytes it had; audio's and completed downloads are not abandoned ones.
    log = EventLog()
    session = PlaybackSession(Scripted(), _av_video(), profile("default").session, sink=log)
    assert isinstance(session.next_action("audio"), Fetch)
    session.advance(0.25)
    assert isinstance(session.next_action("video"), Fetch)
    session.on_abandon(0.75, bytes_received=500_000, media="video")
    assert isinstance(session.next_action("video"), Fetch)
    session.on_download(1.5, size_bytes=100_000, media="video")
    session.on_download(1.6, size_bytes=64_000, media="audio")
    assert abandoned_downloads(log.events) == [(0.25, 500_000)]
    # 1 MB/s, 80 ms RTT. Player 0 fetches 1 MB at 0 (alone: 1.08 s); player 1's abandoned download
    # (0.5 MB, its first request, at 0 too) shares the link until it has its bytes, so player 0's ends
    # at 1.58 s; player 1's next request, 2 s later, is alone.
    trace = Trace(name="flat", durations_s=np.array([100.0]), bandwidth_bps=np.array([8e6]))
    players = [([_record(0.0, 1_000_000)], []), ([_record(2.0, 100_000)], [])]
    (alone,) = shared_model_download_s(trace, profile("default"), 0.0, [0.0], players[:1], header_bytes=0)
    assert alone == pytest.approx([1.08], abs=1e-6)
    (shared,), (later,) = shared_model_download_s(trace, profile("default"), 0.0, [0.0, 0.0], players, header_bytes=0,
                                                  abandoned=[[], [(0.0, 500_000)]])
    assert shared == pytest.approx(1.58, abs=1e-6) and later == pytest.approx(0.18, abs=1e-6)
    with pytest.raises(ValueError, match="every player or of none"):
        shared_model_download_s(trace, profile("default"), 0.0, [0.0, 0.0], players, abandoned=[[]])


def test_the_group_link_model_replays_the_shared_link_simulator_exactly() -> None:
    # Given the simulator's own requests, the column's model gives back its download times: one
    # model of the shared link for both uses.
    from netsim.sources import open_traces
    from player.research.sim_shared import run_shared

    video = _av_video()
    prof = profile("default")
    (trace,) = open_traces([TRACES[0]])
    shared = run_shared(["bba"] * 3, video, trace, prof, join_spacing_s=1.5)
    players = [([_record(float(t), int(s)) for t, s in zip(r.request_time_s, r.size_bytes)], list(r.audio_records))
               for r in shared.players]
    for result, model in zip(shared.players, shared_model_download_s(trace, prof, 0.0, shared.joins_s, players)):
        assert model == pytest.approx(result.download_s, abs=1e-6)
