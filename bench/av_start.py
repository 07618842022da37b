"""A/V start offset of a packaged title as players present it: `abrkit package` against FFmpeg's HLS
and DASH muxers and Shaka Packager, on the same source (the demo clip written to an MP4, H.264 +
AAC, as a real input would be).

For each packaging and each way of reading it, the media time at which the clip's t=0 is seen and
heard is measured from decoded content (`server.packaging.avsync`: the flash and the pip at 1 s):
HLS "timestamps" (the fMP4 media times alone: hls.js, Safari), HLS "edit lists" (each init
segment's elst applied: FFmpeg, Chromium's MSE), DASH (either, less each AdaptationSet's
presentationTimeOffset). audio-video < 0 means sound early; one AAC frame is 21.3 ms, and early
sound is noticed from ~45 ms. The figures are media times, not wall clock: load does not change them.

    python bench/av_start.py [--duration-s 6] [--height 216] [--preset veryfast]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import m3u8
from defusedxml import ElementTree

sys.path.insert(0, str(Path(__file__).resolve().parent))
from package_vs_toolchain import ffmpeg_binary, ffmpeg_ladder_command, shaka_command, shaka_packager  # noqa: E402

from server.packager import package  # noqa: E402
from server.packaging.avsync import audio_origin_s, video_origin_s  # noqa: E402
from server.packaging.build import even_size  # noqa: E402
from server.packaging.demo import DemoClip, DemoClipConfig, write_demo_source  # noqa: E402
from server.packaging.settings import PackageConfig, parse_ladder  # noqa: E402

SEGMENT_S = 3.0  # the first segment must hold the flash and pip at 1 s plus the search margin (2.4 s)
MPD_NS = {"m": "urn:mpeg:dash:schema:mpd:2011"}


def hls_tracks(master_path: Path) -> tuple[bytes, bytes]:
    """(video, audio) init + first segment as an HLS player joins them; muxed variants give both."""
    master = m3u8.load(str(master_path))

    def first(uri: str) -> bytes:
        path = master_path.parent / uri
        playlist = m3u8.load(str(path))
        return (path.parent / playlist.segment_map[0].uri).read_bytes() + (
            path.parent / playlist.segments[0].uri).read_bytes()

    video = first(master.playlists[0].uri)
    audio_uris = [m.uri for m in master.media if m.type == "AUDIO" and m.uri]
    return video, first(audio_uris[0]) if audio_uris else video


def dash_tracks(mpd_path: Path) -> dict[str, tuple[bytes, float]]:
    """Per contentType: init + first segment of the first Representation, and the offset in s."""
    root = ElementTree.parse(mpd_path).getroot()
    out = {}
    for aset in root.iterfind(".//m:AdaptationSet", MPD_NS):
        rep = aset.find("m:Representation", MPD_NS)
        assert rep is not None
        template = rep.find("m:SegmentTemplate", MPD_NS) or aset.find("m:SegmentTemplate", MPD_NS)
        assert template is not None
        kind = aset.get("contentType") or str(aset.get("mimeType") or rep.get("mimeType")).split("/")[0]

        def name(pattern: str, number: int) -> str:
            pattern = pattern.replace("$RepresentationID$", str(rep.get("id")))
            return re.sub(r"\$Number(%0(\d+)d)?\$", lambda m: str(number).zfill(int(m.group(2) or 0)), pattern)

        start = int(template.get("startNumber", "1"))
        data = (mpd_path.parent / name(str(template.get("initialization")), start)).read_bytes()
        data += (mpd_path.parent / name(str(template.get("media")), start)).read_bytes()
        offset_s = int(template.get("presentationTimeOffset", "0")) / int(template.get("timescale", "1"))
        out[kind] = (data, offset_s)
    return out


def measure(video: bytes, audio: bytes, clip: DemoClip, *, ignore_editlist: bool) -> tuple[float, float]:
    return (video_origin_s(video, ignore_editlist=ignore_editlist),
            audio_origin_s(audio, clip, ignore_editlist=ignore_editlist))


def package_abrkit(source: Path, out: Path, config: PackageConfig, _: DemoClipConfig) -> tuple[Path, Path]:
    result = package(source, out, config, title="avstart")
    return result.title_dir / "master.m3u8", result.title_dir / "manifest.mpd"


def _ffmpeg(*args: str | Path) -> None:
    subprocess.run([ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *map(str, args)],
                   check=True)


def _x264_args(config: PackageConfig, clip: DemoClipConfig) -> list[str]:
    gop = round(SEGMENT_S * clip.frame_rate)
    return ["-c:v", "libx264", "-preset", config.preset, "-g", str(gop), "-keyint_min", str(gop),
            "-sc_threshold", "0", "-b:v", "300k", "-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2"]


def package_ffmpeg(source: Path, out: Path, config: PackageConfig, clip: DemoClipConfig) -> tuple[Path, Path]:
    """FFmpeg's own HLS (fMP4) and DASH muxers, encoding as `ffmpeg -i in ... -f hls|dash` does."""
    (out / "hls").mkdir(parents=True)
    (out / "dash").mkdir()
    _ffmpeg("-i", source, "-map", "0:v", "-map", "0:a", *_x264_args(config, clip), "-f", "hls",
            "-hls_segment_type", "fmp4", "-hls_time", f"{SEGMENT_S:g}", "-hls_playlist_type", "vod",
            "-master_pl_name", "master.m3u8", "-var_stream_map", "v:0,agroup:aud a:0,agroup:aud",
            "-hls_fmp4_init_filename", "init.mp4", "-hls_segment_filename", str(out / "hls" / "s%v_%d.m4s"),
            str(out / "hls" / "p%v.m3u8"))
    _ffmpeg("-i", source, "-map", "0:v", "-map", "0:a", *_x264_args(config, clip), "-f", "dash",
            "-seg_duration", f"{SEGMENT_S:g}", "-use_template", "1", "-use_timeline", "1",
            "-adaptation_sets", "id=0,streams=v id=1,streams=a", str(out / "dash" / "manifest.mpd"))
    return out / "hls" / "master.m3u8", out / "dash" / "manifest.mpd"


def package_shaka(source: Path, out: Path, config: PackageConfig, clip: DemoClipConfig) -> tuple[Path, Path]:
    """FFmpeg encoding the rung as package_vs_toolchain does, then Shaka Packager (DASH + HLS)."""
    out.mkdir(parents=True)
    ladder = config.ladder or ()
    subprocess.run(ffmpeg_ladder_command(ffmpeg_binary(), source, out, ladder, width=clip.width,
                                         height=clip.height, frame_rate=clip.frame_rate, config=config), check=True)
    subprocess.run(shaka_command(shaka_packager(), out, ladder, SEGMENT_S), check=True, stdout=subprocess.DEVNULL)
    return out / "dash" / "master.m3u8", out / "dash" / "manifest.mpd"


PACKAGERS: dict[str, Callable[[Path, Path, PackageConfig, DemoClipConfig], tuple[Path, Path]]] = {
    "abrkit package": package_abrkit,
    "ffmpeg -f hls/dash": package_ffmpeg,
    "ffmpeg + shaka packager": package_shaka,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration-s", type=float, default=6.0)
    parser.add_argument("--height", type=int, default=216)
    parser.add_argument("--preset", default="veryfast")
    parser.add_argument("--only", choices=sorted(PACKAGERS), action="append")
    args = parser.parse_args()
    clip_config = DemoClipConfig(duration_s=args.duration_s, width=even_size(args.height * 16 / 9), height=args.height)
    clip = DemoClip(clip_config)
    config = PackageConfig(ladder=parse_ladder(f"{args.height}p:300k"), preset=args.preset, segment_s=SEGMENT_S)
    print(f"load average {os.getloadavg()[0]:.1f} (media times: load does not change them)")
    print(f"{'packager':<24} {'read as':<20} {'video ms':>9} {'audio ms':>9} {'audio-video ms':>15}")
    with tempfile.TemporaryDirectory(prefix="av-start-") as tmp:
        source = write_demo_source(Path(tmp) / "source.mp4", clip_config)
        for label, run in PACKAGERS.items():
            if args.only and label not in args.only:
                continue
            master, mpd = run(source, Path(tmp) / f"p{list(PACKAGERS).index(label)}", config, clip_config)
            video, audio = hls_tracks(master)
            dash = dash_tracks(mpd)
            rows = []
            for ignore in (True, False):
                v, a = measure(video, audio, clip, ignore_editlist=ignore)
                rows.append((f"HLS {'timestamps' if ignore else 'edit lists'}", v, a))
            for ignore in (True, False):
                v, a = measure(dash["video"][0], dash["audio"][0], clip, ignore_editlist=ignore)
                rows.append((f"DASH {'timestamps' if ignore else 'edit lists'}",
                             v - dash["video"][1], a - dash["audio"][1]))
            for how, v, a in rows:
                v_ms, a_ms = round(v * 1000, 1) + 0.0, round(a * 1000, 1) + 0.0  # + 0.0: no "-0.0"
                print(f"{label:<24} {how:<20} {v_ms:>9.1f} {a_ms:>9.1f} {round(a_ms - v_ms, 1) + 0.0:>15.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
