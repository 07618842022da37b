"""The headless player end to end against the real stack (real sockets, real packaged segments)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import jwt
import numpy as np
import pytest
from aiohttp import web

from netsim import synthetic
from player.client.bootstrap import BootstrapError, request_license
from player.client.eventlog import EventLog
from player.client.fetch import Fetcher
from player.client.harness import LinkConfig, TitleTarget, UrlTarget, play_headless
from player.client.headless import PlaybackReport, PlayerConfig, print_report
from player.events import EVENT_KINDS
from player.media.pipeline import DecodePipeline
from player.research.experiment import model_download_s
from player.research.sim import PROFILES, run_session
from player.video import load_packaged_video
from server.keys import ed25519_private, load_secrets
from server.stack import RunningStack
from tests.conftest import CLEAR_TITLE, ENCRYPTED_TITLE, REPO_ROOT, PackagedTitles
from tests.player.conftest import LONG_TITLE, running_stack, serving_app, serving_origin

FRAMES_PER_S = 24


def _target(stack: RunningStack, password: str, title: str) -> TitleTarget:
    return TitleTarget(title=title, gateway_url=stack.gateway_url, username="demo", password=password)


def _decoder(mode: str = "all"):  # noqa: ANN202
    return lambda source: DecodePipeline(source, mode=mode)


async def test_plays_an_encrypted_title_through_the_stack_over_a_shaped_link(tmp_path: Path,
                                                                              packaged: PackagedTitles) -> None:
    events_path = tmp_path / "events.jsonl"
    async with running_stack(tmp_path, packaged.content_root) as (stack, password):
        report = await play_headless(
            _target(stack, password, ENCRYPTED_TITLE), PlayerConfig(abr="bba", speed=4.0),
            link=LinkConfig(trace=synthetic.constant(3e6, duration_s=600)), log_path=events_path,
            decoder_factory=_decoder())
    assert report.error is None
    assert report.metrics.segments == 3
    assert report.frames_decoded == packaged.frame_count and report.frames_failed == 0
    assert report.first_frame_s is not None and report.first_frame_s > 0
    assert set(report.bootstrap_s) == {"token_s", "playback_s", "manifest_s", "license_s", "init_s"}
    # The license and the init segments stand between the manifest and the first segment: on the
    # session clock (x speed 4), the startup counts them.
    preroll_s = 4.0 * (report.bootstrap_s["license_s"] + report.bootstrap_s["init_s"])
    assert report.metrics.startup_s > preroll_s > 0
    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    kinds = {e["type"] for e in events}
    assert {"bootstrap", "decision", "request", "download", "buffer", "play", "end"} <= kinds <= EVENT_KINDS
    assert all(list(e)[:2] == ["t", "type"] for e in events)
    assert all("<token>" in e["url"] for e in events if e["type"] == "request" and "/s/" in e["url"])
    assert all(e["reason"] for e in events if e["type"] == "decision")


async def test_edge_killed_mid_session_fails_over_without_a_stall(tmp_path: Path, long_content: Path) -> None:
    log = EventLog()
    async with running_stack(tmp_path, long_content, edges=2) as (stack, password):
        task = asyncio.create_task(play_headless(
            _target(stack, password, LONG_TITLE), PlayerConfig(abr="bba", speed=2.0),
            link=LinkConfig(trace=synthetic.constant(4e6, duration_s=600)), events=log, decoder_factory=None))
        while len(log.of_type("download")) < 3:
            await asyncio.sleep(0.02)
        used = log.of_type("request")[-1]["url"].split("/s/")[0]
        victim = stack.edge_urls.index(used)
        await stack.kill_edge(victim)
        report = await asyncio.wait_for(task, timeout=60)
    assert report.error is None
    assert report.metrics.segments == 10
    assert report.metrics.rebuffer_s == 0
    later = [e["url"] for e in log.of_type("request")[-5:]]
    assert all(not url.startswith(used) for url in later), "still fetching from the killed edge"


async def test_missing_segment_is_a_clear_error_not_a_hang(tmp_path: Path, packaged: PackagedTitles) -> None:
    content = tmp_path / "content"
    shutil.copytree(packaged.content_root / CLEAR_TITLE, content / CLEAR_TITLE)
    for rendition in (content / CLEAR_TITLE / "video").iterdir():
        (rendition / "2.m4s").unlink()
    async with running_stack(tmp_path, content) as (stack, password):
        started = time.monotonic()
        report = await asyncio.wait_for(play_headless(_target(stack, password, CLEAR_TITLE), PlayerConfig(abr="rate"),
                                                      decoder_factory=None), timeout=60)
    assert report.error is not None and "segment 1 could not be fetched" in report.error and "404" in report.error
    assert report.metrics.segments == 1
    assert time.monotonic() - started < 30


async def test_corrupt_segment_is_counted_and_playback_goes_on(tmp_path: Path, packaged: PackagedTitles) -> None:
    content = tmp_path / "content"
    shutil.copytree(packaged.content_root / CLEAR_TITLE, content / CLEAR_TITLE)
    for rendition in (content / CLEAR_TITLE / "video").iterdir():
        segment = rendition / "2.m4s"
        data = bytearray(segment.read_bytes())
        mdat = data.find(b"mdat")
        rng = np.random.default_rng(1)
        data[mdat + 64:] = rng.integers(0, 256, len(data) - mdat - 64, dtype=np.uint8).tobytes()
        segment.write_bytes(bytes(data))
    log = EventLog()
    async with running_stack(tmp_path, content) as (stack, password):
        report = await play_headless(_target(stack, password, CLEAR_TITLE), PlayerConfig(abr="bba"), events=log,
                                     decoder_factory=_decoder())
    assert report.error is None and report.metrics.segments == 3
    assert report.frames_failed > 0
    assert report.frames_decoded >= packaged.frame_count - 4 * FRAMES_PER_S  # the other segments decode
    assert log.of_type("decode_error")


async def test_decode_errors_are_logged_as_they_happen_not_at_the_end(tmp_path: Path, packaged: PackagedTitles,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    content = tmp_path / "content"
    shutil.copytree(packaged.content_root / CLEAR_TITLE, content / CLEAR_TITLE)
    for rendition in (content / CLEAR_TITLE / "video").iterdir():
        (rendition / "1.m4s").write_bytes(b"not a segment")  # the first segment (index 0) fails to decode
    log = EventLog()
    async with serving_origin(content) as origin:
        report = await play_headless(UrlTarget(url=f"{origin}/{CLEAR_TITLE}/manifest.mpd"),
                                     PlayerConfig(abr="bba", speed=8.0, audio=False), events=log,
                                     link=LinkConfig(trace=synthetic.constant(2e6, duration_s=600)),
                                     decoder_factory=_decoder())
    assert report.error is None and report.metrics.segments == 3
    assert len(report.decode_errors) == 1 and report.decode_errors[0].startswith("video segment 0 of "), \
        report.decode_errors
    kinds = [e["type"] for e in log.events if e["type"] in ("download", "decode_error", "end")]
    # logged once, while the next segments were still downloading (before: after the last one, at the end)
    assert kinds == ["download", "decode_error", "download", "download", "end"], kinds
    assert report.as_dict()["decode_error_count"] == 1
    # A stream that kept failing: the report keeps the first and last errors, and counts them all.
    print_report(replace(report, decode_errors=report.decode_errors * 2, decode_error_count=300), as_json=False)
    assert "(and 299 more)" in capsys.readouterr().out
    assert replace(report, decode_error_count=300).as_dict()["decode_error_count"] == 300


async def test_wrong_key_is_detected_as_failed_frames(packaged: PackagedTitles) -> None:
    keys = json.loads((packaged.content_root / ENCRYPTED_TITLE / "keys.json").read_text())["keys"]
    wrong = {k["kid"]: "00" * 16 for k in keys}
    log = EventLog()
    async with serving_origin(packaged.content_root) as origin:
        report = await play_headless(UrlTarget(url=f"{origin}/{ENCRYPTED_TITLE}/manifest.mpd", keys=wrong),
                                     PlayerConfig(abr="bba"), events=log, decoder_factory=_decoder())
    assert report.metrics.segments == 3
    # Garbage from a wrong key now and then happens to decode into a frame FFmpeg does not flag (1 of
    # ~100 in a segment, for a few keys in 300 tried): nearly all frames fail, and the key is blamed.
    assert report.frames_failed > 0 and report.frames_decoded <= 0.05 * (report.frames_decoded + report.frames_failed)
    assert any("key" in e["message"] or "decrypt" in e["message"] for e in log.of_type("decode_error"))
    assert not any("00" * 16 in json.dumps(e) for e in log.events), "a key reached the event log"


async def test_encrypted_url_without_keys_is_refused_clearly(packaged: PackagedTitles) -> None:
    async with serving_origin(packaged.content_root) as origin:
        with pytest.raises(BootstrapError, match="encrypted.*--key KID:KEY"):
            await play_headless(UrlTarget(url=f"{origin}/{ENCRYPTED_TITLE}/manifest.mpd"), PlayerConfig())


async def test_expired_token_gets_a_clear_license_error(tmp_path: Path, packaged: PackagedTitles) -> None:
    async with running_stack(tmp_path, packaged.content_root) as (stack, _):
        secret = ed25519_private(load_secrets(stack.config.resolved_secrets_path).jwt_signing_key)
        now = int(time.time())
        expired = jwt.encode({"iss": "abrkit-auth", "aud": "abrkit", "sub": "demo", "iat": now - 3600,
                              "nbf": now - 3600, "exp": now - 600, "jti": "x", "fam": "y", "titles": ["*"]},
                             secret, algorithm="EdDSA")
        import aiohttp

        async with aiohttp.ClientSession() as http:
            with pytest.raises(BootstrapError, match="license request failed: HTTP 401"):
                await request_license(Fetcher(http), stack.license_url, ["00" * 16], expired)


async def test_wrong_password_is_a_clear_login_error(tmp_path: Path, packaged: PackagedTitles) -> None:
    async with running_stack(tmp_path, packaged.content_root) as (stack, _):
        with pytest.raises(BootstrapError, match="login failed: HTTP 401"):
            await play_headless(_target(stack, "wrong", CLEAR_TITLE), PlayerConfig())


async def _emulate(stack: RunningStack, password: str, abr: str, trace: object, speed: float) -> PlaybackReport:
    return await play_headless(_target(stack, password, LONG_TITLE), PlayerConfig(abr=abr, speed=speed),
                               link=LinkConfig(trace=trace, shape_bootstrap=False), decoder_factory=None)  # type: ignore[arg-type]


@pytest.mark.wallclock
@pytest.mark.parametrize("abr", ["bba", "rate", "mpc-robust"])
async def test_simulation_and_emulation_agree(tmp_path: Path, long_content: Path, abr: str) -> None:
    # Documented tolerance (docs/PLAYER.md): >= 70% of segments at the same quality, mean bitrate
    # within 15%. Download times agree within a few percent, but a borderline decision (MPC weighing
    # two plans a hair apart) flips on such a difference and the sequences then drift apart.
    trace = synthetic.markov([0.4e6, 0.9e6, 1.8e6], duration_s=120, seed=5, stay_probability=0.8)
    video = load_packaged_video(long_content / LONG_TITLE)
    simulated = run_session(abr, video, trace, PROFILES["default"])
    async with running_stack(tmp_path, long_content) as (stack, password):
        emulated = await _emulate(stack, password, abr, trace, speed=2.0)
    assert emulated.error is None
    same = np.mean(np.asarray(emulated.qualities) == simulated.qualities)
    assert same >= 0.7, (emulated.qualities, simulated.qualities.tolist())
    assert emulated.metrics.avg_bitrate_bps == pytest.approx(simulated.metrics.avg_bitrate_bps, rel=0.15)
    downloads = np.array([r.download_s for r in emulated.records])
    diverged = np.flatnonzero(np.asarray(emulated.qualities) != simulated.qualities)
    first_diverged = int(diverged[0]) if diverged.size else len(downloads)
    # Each emulated download (video and audio pipelines on one shaped link) takes what the link model
    # gives it for the requests made meanwhile...
    model = model_download_s(trace, PROFILES["default"], 0.0, emulated.records, emulated.audio_records)
    np.testing.assert_allclose(downloads, model, rtol=0.15)
    # ...and where both fetched the same segments, they took as long in all. Segment by segment the two
    # differ more: a few ms of HTTP cost move an audio download onto the neighbouring video segment.
    assert downloads[:first_diverged].sum() == pytest.approx(simulated.download_s[:first_diverged].sum(), rel=0.1)


async def test_cli_headless_json_has_the_qoe_keys(packaged: PackagedTitles) -> None:
    keys = json.loads((packaged.content_root / ENCRYPTED_TITLE / "keys.json").read_text())["keys"]
    async with serving_origin(packaged.content_root) as origin:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "player", "play", f"{origin}/{ENCRYPTED_TITLE}/manifest.mpd", "--headless",
            "--json", "--abr", "rate", "--trace", "constant:5e6", "--speed", "4",
            *[arg for k in keys for arg in ("--key", f"{k['kid']}:{k['key']}")],
            cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, stderr.decode()
    result = json.loads(stdout)
    for key in ("qoe_lin", "qoe_log", "qoe_hd", "startup_s", "rebuffer_s", "avg_bitrate_bps", "switches",
                "frames_decoded", "frames_failed"):
        assert key in result
    assert result["frames_decoded"] == packaged.frame_count and result["frames_failed"] == 0


async def test_cli_bad_trace_is_one_error_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_text("0 1\n1 nan\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "player", "play", "http://127.0.0.1:9/x.mpd", "--headless", "--trace", str(bad),
        cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 2
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "bad:2" in lines[0] and "finite" in lines[0]


def serving_directory(root: Path) -> contextlib.AbstractAsyncContextManager[str]:
    """A plain static file server (with Range support): a stand-in for any third-party CDN."""
    app = web.Application()
    app.router.add_static("/", root)
    return serving_app(app)


@pytest.mark.parametrize("layout", ["timeline", "single"])
async def test_plays_dash_written_by_ffmpeg(tmp_path: Path, layout: str) -> None:
    from tests.player.client.conftest import write_ffmpeg_dash

    options = {"timeline": {"use_template": "1", "use_timeline": "1"},
               "single": {"use_template": "0", "single_file": "1", "global_sidx": "1"}}[layout]
    write_ffmpeg_dash(tmp_path / layout, **options)
    async with serving_directory(tmp_path) as server:
        report = await play_headless(UrlTarget(url=f"{server}/{layout}/manifest.mpd"), PlayerConfig(abr="rate"),
                                     decoder_factory=_decoder())
    assert report.error is None
    assert report.metrics.segments >= 2
    assert report.frames_decoded >= 5 * FRAMES_PER_S - 1 and report.frames_failed == 0


class AbandonOnce:
    """Top quality first; abandons that first download once, then picks the lowest quality."""

    name = "abandon-once"

    def __init__(self) -> None:
        self.abandoned = False
        self.offered = 0

    def decide(self, obs):  # noqa: ANN001, ANN201
        from abr.types import Decision

        return Decision(quality=0 if self.abandoned else obs.ladder.top, reason="scripted")

    def should_abandon(self, progress):  # noqa: ANN001, ANN201
        from abr.types import Decision

        self.offered += 1
        if self.abandoned or progress.bytes_received == 0:
            return None
        self.abandoned = True
        return Decision(quality=0, reason="too slow")


async def test_abandoned_download_is_decided_again(tmp_path: Path, long_content: Path) -> None:
    from player.client.headless import HeadlessPlayer

    abr = AbandonOnce()
    log = EventLog()

    def factory(source, config, fetcher, *, events, decoder):  # noqa: ANN001, ANN202
        return HeadlessPlayer(source, config, fetcher, events=events, decoder=decoder, abr=abr)

    async with running_stack(tmp_path, long_content) as (stack, password):
        report = await play_headless(_target(stack, password, LONG_TITLE), PlayerConfig(abr="bba", max_segments=3),
                                     link=LinkConfig(trace=synthetic.constant(1e6, duration_s=600)), events=log,
                                     player_factory=factory)
        offered_when_on = abr.offered
        off = await play_headless(_target(stack, password, LONG_TITLE),
                                  PlayerConfig(abr="bba", max_segments=1, abandonment=False),
                                  link=LinkConfig(trace=synthetic.constant(1e6, duration_s=600)),
                                  player_factory=factory)
    # abandonment off (`--no-abandon`): no download is offered, however willing the ABR
    assert off.error is None and off.abandoned == 0 and abr.offered == offered_when_on
    assert report.error is None and report.abandoned == 1
    assert report.failed_requests == 0  # an abandoned download is the player's choice, not a failure
    assert abr.offered >= 1
    assert log.of_type("abandon")[0]["segment"] == 0
    assert report.qualities == [0, 0, 0]  # segment 0 fetched again at the lower quality
