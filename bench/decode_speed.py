"""Decode speed: segment bytes to first frame, frames per second and CPU per media second.

    python bench/decode_speed.py [--duration-s 16] [--height 1080] [--repeat 2] [--content-root DIR]

Packages the demo clip (default ladder, 216p..1080p) clear and encrypted once into the cache
(`$ABRKIT_CACHE/decode-bench`), then per rendition, with and without decryption:
- first frame: ms from segment bytes to the first frame out: with the long-lived decoder (kept,
  steady state), with a new SegmentDecoder (cold, start-up) and with the other design, a fresh
  decoder per segment (the container's own codec context, after FFmpeg's probe);
- all / keyframes / none: ms per segment, decode fps, CPU seconds per media second (process CPU,
  every thread: FFmpeg's decoding threads included);
then the RGBA conversion of a 1080p frame and audio decode + resample. Prints, asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import av

from player.media.decoder import AudioDecoder, DecoderConfig, DecodeResult, FrameConverter, SegmentDecoder
from server.config import default_cache_dir
from server.formats.segments import load_segments_json
from server.packager import ensure_demo_title


def _segments(rep_dir: Path) -> tuple[bytes, list[bytes]]:
    files = sorted(rep_dir.glob("*.m4s"), key=lambda p: int(p.stem))
    return (rep_dir / "init.mp4").read_bytes(), [f.read_bytes() for f in files]


def _ms(values: list[float]) -> str:
    values = sorted(values)
    p90 = values[min(len(values) - 1, round(0.9 * (len(values) - 1)))]
    return f"{statistics.median(values) * 1e3:6.1f} /{p90 * 1e3:6.1f}"


def _fresh_first_frame_s(init: bytes, segment: bytes, key_hex: str | None, thread_type: str) -> float:
    """The other design: the segment's own container opens a new decoder (probe and all)."""
    started = time.perf_counter()
    options = {"decryption_key": key_hex} if key_hex else {}
    with av.open(io.BytesIO(init + segment), "r", format="mp4", options=options) as container:
        stream = container.streams.video[0]
        stream.thread_type = thread_type
        for _ in container.decode(stream):
            return time.perf_counter() - started
    raise RuntimeError("no frame")


def _cold_first_frame_s(init: bytes, segment: bytes, key_hex: str | None) -> float:
    """Start-up: a new SegmentDecoder (init parsed, codec opened on first use), then its first frame."""
    started = time.perf_counter()
    decoder = SegmentDecoder(init, key_hex=key_hex)
    built_s = time.perf_counter() - started
    return built_s + (decoder.decode(segment).first_frame_s or 0.0)


def _fresh_decode_all(init: bytes, segment: bytes, key_hex: str | None) -> int:
    options = {"decryption_key": key_hex} if key_hex else {}
    with av.open(io.BytesIO(init + segment), "r", format="mp4", options=options) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for _ in container.decode(stream))


def _timed(run: Callable[[], object]) -> tuple[float, float]:
    wall0, cpu0 = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall0, time.process_time() - cpu0


def bench_rendition(rep: str, init: bytes, segments: list[bytes], key_hex: str | None, segment_s: float,
                    frame_rate: float, repeat: int) -> None:
    label = f"{rep:>6} {'cenc' if key_hex else 'clear':>5}"
    decoder = SegmentDecoder(init, key_hex=key_hex, name=rep)
    decoder.decode(segments[0])  # warm up: codec opened, threads started
    first = [decoder.decode(s, mode="all").first_frame_s or 0.0 for _ in range(repeat) for s in segments]
    cold_first = [_cold_first_frame_s(init, s, key_hex) for _ in range(repeat) for s in segments]
    fresh_first = [_fresh_first_frame_s(init, s, key_hex, "AUTO") for _ in range(repeat) for s in segments]
    media_s = repeat * len(segments) * segment_s
    frames = round(media_s * frame_rate)
    rows = [label, _ms(first), _ms(cold_first), _ms(fresh_first)]
    for mode in ("all", "keyframes", "none"):
        results: list[DecodeResult] = []
        wall, cpu = _timed(lambda: results.extend(decoder.decode(s, mode=mode) for _ in range(repeat) for s in segments))  # noqa: B023
        failed = sum(r.frames_failed + r.decode_errors for r in results)
        if failed:
            print(f"note: {rep} mode {mode}: {failed} failed frames or errors", file=sys.stderr)
        per_segment_ms = wall / len(results) * 1e3
        if mode == "all":
            rows.append(f"{frames / wall:7.0f} {cpu / media_s:6.3f}")
        else:
            rows.append(f"{per_segment_ms:6.1f} {cpu / media_s:6.3f}")
    wall, cpu = _timed(lambda: [_fresh_decode_all(init, s, key_hex) for _ in range(repeat) for s in segments])
    rows.append(f"{frames / wall:7.0f} {cpu / media_s:6.3f}")
    print("  ".join(rows))


def bench_first_frame_threads(rep: str, init: bytes, segments: list[bytes], repeat: int) -> None:
    for thread_type in ("AUTO", "FRAME", "SLICE", "NONE"):
        decoder = SegmentDecoder(init, name=rep, config=DecoderConfig(thread_type=thread_type))  # type: ignore[arg-type]
        decoder.decode(segments[0])
        first = [decoder.decode(s).first_frame_s or 0.0 for _ in range(repeat) for s in segments]
        keyframe = [decoder.decode(s, mode="keyframes").first_frame_s or 0.0 for _ in range(repeat) for s in segments]
        wall, _ = _timed(lambda: [decoder.decode(s) for s in segments])  # noqa: B023
        frames = sum(decoder.decode(s, mode="none").packets for s in segments)
        print(f"{rep:>6} {thread_type:>5}  first frame {_ms(first)} ms  keyframes mode {_ms(keyframe)} ms  "
              f"{frames / wall:5.0f} fps")


def bench_converter(init: bytes, segments: list[bytes], repeat: int) -> None:
    frames = SegmentDecoder(init).decode(segments[0], keep_frames=True).frames[:48]
    source = frames[0].frame
    for width, height in ((1920, 1080), (1280, 720), (960, 540)):
        for fmt in ("rgba", "rgb24"):
            converter = FrameConverter(width, height, format=fmt)  # type: ignore[arg-type]
            converter.to_ndarray(source)
            times = []
            for _ in range(repeat):
                for decoded in frames:
                    started = time.perf_counter()
                    converter.to_bytes(decoded.frame)
                    times.append(time.perf_counter() - started)
            print(f"{source.width}x{source.height} {source.format.name} -> {width}x{height} {fmt:<5} "
                  f"to_bytes {_ms(times)} ms per frame (median / p90)")


def bench_audio(title: Path, key_hex: str | None, segment_s: float, repeat: int) -> None:
    init, segments = _segments(title / "audio" / "a128k")
    decoder = AudioDecoder(init, key_hex=key_hex)
    results: list[DecodeResult] = []
    wall, cpu = _timed(lambda: results.extend(decoder.decode(s, keep_pcm=True) for _ in range(repeat) for s in segments))
    media_s = repeat * len(segments) * segment_s
    print(f"a128k {'cenc' if key_hex else 'clear':>5}: {wall / len(results) * 1e3:5.1f} ms per segment "
          f"(decode + resample to s16 48 kHz stereo), CPU {cpu / media_s:.4f} s per media s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=16.0, help="demo clip length (4 s segments)")
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--repeat", type=int, default=2, help="passes over every segment")
    parser.add_argument("--content-root", type=Path, default=None,
                        help="where to package the demo (default: the abrkit cache)")
    args = parser.parse_args()

    root = args.content_root or default_cache_dir() / "decode-bench"
    titles = {}
    for encrypt in (False, True):
        print(f"packaging the demo clip ({'encrypted' if encrypt else 'clear'}) unless cached...", file=sys.stderr)
        titles[encrypt] = ensure_demo_title(root / ("encrypted" if encrypt else "clear"), duration_s=args.duration_s,
                                            encrypt=encrypt, height=args.height, progress=sys.stderr.isatty())
    keys = {e["tracks"][0]: e["key"] for e in json.loads((titles[True] / "keys.json").read_text())["keys"]}
    info = load_segments_json(titles[False])
    segment_s = info.segment_duration_s
    print(f"demo clip {info.duration_s:.0f} s, {info.segment_count} segments of {segment_s:g} s, "
          f"{os.cpu_count()} cores, PyAV {av.__version__}, FFmpeg libavcodec {av.library_versions['libavcodec']}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print("\nfirst frame: ms (median / p90) from segment bytes; fps and CPU s per media s; none/keyframes: ms per segment")
    print(f"{'rep':>6} {'drm':>5}  {'first, kept':>13}  {'first, cold':>13}  {'first, fresh':>13}  {'all fps':>7} {'CPU':>6}  "
          f"{'key ms':>6} {'CPU':>6}  {'none ms':>6} {'CPU':>6}  {'fresh fps':>7} {'CPU':>6}")
    for video in info.video:
        for encrypt in (False, True):
            init, segments = _segments(titles[encrypt] / "video" / video.id)
            bench_rendition(video.id, init, segments, keys["video"] if encrypt else None, segment_s,
                            video.frame_rate, args.repeat)
    print("\nthreading and first-frame latency (clear):")
    for video in info.video[-2:]:
        init, segments = _segments(titles[False] / "video" / video.id)
        bench_first_frame_threads(video.id, init, segments, args.repeat)
    print("\nFrameConverter (one reused VideoReformatter):")
    top = info.video[-1].id
    bench_converter(*_segments(titles[False] / "video" / top), args.repeat)
    print()
    bench_audio(titles[False], None, segment_s, args.repeat)
    bench_audio(titles[True], keys["audio"], segment_s, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
