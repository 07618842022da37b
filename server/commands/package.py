"""`abrkit package`: a video file (or the demo clip) to multi-bitrate DASH in a title directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from server.commands import CommandError
from server.packager import (
    DEMO_TITLE,
    X264_PRESETS,
    PackageConfig,
    PackageResult,
    package,
    package_source,
    parse_ladder,
)
from server.packaging.demo import DemoClipConfig
from server.packaging.source import DemoSource

USAGE = """abrkit package INPUT OUTDIR [options]
       abrkit package --demo OUTDIR [--duration-s S] [--demo-height H] [options]"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "package",
        usage=USAGE,
        help="package a video (or the demo clip) as multi-bitrate DASH",
        description=(
            "Encode INPUT (any file FFmpeg reads) into an H.264/AAC ladder, split it into DASH segments "
            "and write OUTDIR/manifest.mpd, segments.json and (with --encrypt) keys.json. "
            "See docs/PACKAGING.md."
        ),
    )
    parser.add_argument("paths", nargs="+", metavar="INPUT OUTDIR", help=argparse.SUPPRESS)
    parser.add_argument("--demo", action="store_true", help="package the synthetic demo clip instead of INPUT")
    parser.add_argument("--duration-s", type=float, default=60.0, help="demo clip length (default 60)")
    parser.add_argument(
        "--demo-height", type=int, default=1080, help="demo clip height, 16:9 (default 1080)"
    )
    parser.add_argument(
        "--ladder",
        help="HEIGHTp:BITRATE rungs, ascending (default 216p:300k,360p:800k,540p:1600k,720p:3000k,1080p:6000k, "
        "trimmed to the source height)",
    )
    parser.add_argument("--segment-s", type=float, default=4.0, help="segment duration in seconds (default 4)")
    parser.add_argument("--encrypt", action="store_true", help="CENC-encrypt (ClearKey); writes keys.json (0600)")
    parser.add_argument("--title", help="title name (default: the input file name without extension)")
    parser.add_argument("--preset", choices=X264_PRESETS, default="faster", help="x264 preset (default faster)")
    parser.add_argument("--force", action="store_true", help="replace OUTDIR if it is not empty")
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None, help="always show progress")
    progress.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.demo and len(args.paths) != 1:
        raise CommandError("with --demo give only OUTDIR (usage: abrkit package --demo OUTDIR)")
    if not args.demo and len(args.paths) != 2:
        raise CommandError("give INPUT and OUTDIR (usage: abrkit package INPUT OUTDIR), or --demo OUTDIR")
    config = PackageConfig(
        ladder=parse_ladder(args.ladder) if args.ladder else None,
        segment_s=args.segment_s,
        encrypt=args.encrypt,
        preset=args.preset,
        progress=sys.stderr.isatty() if args.progress is None else args.progress,
        overwrite=args.force,
    )
    if args.demo:
        height = args.demo_height
        clip = DemoClipConfig(duration_s=args.duration_s, width=round(height * 16 / 9 / 2) * 2, height=height)
        result = package_source(DemoSource(clip), Path(args.paths[0]), config, title=args.title or DEMO_TITLE)
    else:
        result = package(Path(args.paths[0]), Path(args.paths[1]), config, title=args.title)
    _report(result)
    return 0


def _report(result: PackageResult) -> None:
    segments = result.segments
    print(
        f"packaged {segments.title!r}: {segments.segment_count} x {segments.segment_duration_s:g} s segments, "
        f"{segments.duration_s:.1f} s in {result.elapsed_s:.1f} s ({result.realtime_factor:.2f}x realtime)"
    )
    for video in segments.video:
        mean_q = sum(video.segment_quality) / len(video.segment_quality)
        print(
            f"  {video.id:>7} {video.width}x{video.height} target {video.bitrate_bps // 1000}k "
            f"measured {video.measured_bitrate_bps // 1000}k  PSNR {mean_q:.1f} dB  {video.codecs}"
        )
    for audio in segments.audio:
        print(f"  {audio.id:>7} {audio.sample_rate_hz} Hz x{audio.channels} {audio.codecs}")
    print(f"  manifest: {result.title_dir / 'manifest.mpd'}")
    if segments.encrypted:
        print(f"  keys (keep private): {result.title_dir / 'keys.json'}")
