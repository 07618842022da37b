"""Packaging is reproducible: the same input and options give the same bytes in every file written
(segments, init segments, MPD, HLS playlists, segments.json), from the demo clip and from a file,
run after run in one process and with other processes competing for the CPU.

Two causes of differing bytes were found and fixed: rung threads reformatting one shared source
frame (PyAV rewrites its colour tags while scaling), and x264's AVX-512 code reading stale heap
memory for some widths (`x264_asm_cap`). The second showed in the 108p rung of a 384x216 clip (192
wide) and needs no load to show: encoding the same frames again in the same process was enough.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import pytest

from server.packager import PackageConfig, package, package_source
from server.packaging.demo import DemoClip, DemoClipConfig, write_demo_source
from server.packaging.planes import ColorTags
from server.packaging.settings import parse_ladder
from server.packaging.source import DemoSource
from server.packaging.tracks import VideoEncodeSettings, VideoRenditionEncoder, cpu_flags_have_avx512, x264_asm_cap

CLIP = DemoClipConfig(duration_s=3.0, width=384, height=216)
CONFIG = PackageConfig(ladder=parse_ladder("108p:150k,144p:250k,216p:500k"), segment_s=1.0)


def files_of(title_dir: Path) -> dict[str, bytes]:
    return {str(path.relative_to(title_dir)): path.read_bytes() for path in sorted(title_dir.rglob("*"))
            if path.is_file()}


def assert_identical(first: Path, second: Path) -> None:
    a, b = files_of(first), files_of(second)
    assert sorted(a) == sorted(b)
    assert sum(name.endswith(".m4s") for name in a) >= 3 * 3 + 3  # every rung and the audio, 3 segments each
    differing = [name for name in a if a[name] != b[name]]
    assert not differing, f"files differ between two identical runs: {differing}"


@pytest.fixture
def cpu_load() -> Iterator[None]:
    """Two processes spinning on the CPU for the test's length (the machine has 2 cores in CI), so the
    encoder threads are preempted at different points in each run."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def test_the_demo_clip_packaged_three_times_under_load_gives_identical_files(tmp_path: Path, cpu_load: None) -> None:
    for run in ("one", "two", "three"):
        package_source(DemoSource(CLIP), tmp_path / run, CONFIG, title="same")
    assert_identical(tmp_path / "one", tmp_path / "two")
    assert_identical(tmp_path / "one", tmp_path / "three")


@pytest.mark.parametrize("preset", ["faster"])
def test_a_file_packaged_twice_gives_identical_files(tmp_path: Path, preset: str) -> None:
    source = write_demo_source(tmp_path / "source.mp4", CLIP)
    config = PackageConfig(ladder=CONFIG.ladder, segment_s=CONFIG.segment_s, preset=preset)
    for run in ("one", "two"):
        package(source, tmp_path / run, config, title="same")
    assert_identical(tmp_path / "one", tmp_path / "two")


@pytest.mark.parametrize("width", [192, 320])  # chroma 96 and 160 wide: not multiples of 64
def test_a_rung_encoded_again_in_the_same_process_gives_the_same_bytes(tmp_path: Path, width: int) -> None:
    # Before the asm cap, 4 of 6 such encodes differed on an AVX-512 machine, without any load.
    clip = DemoClip(DemoClipConfig(duration_s=2.0, width=width, height=108))
    frames = [clip.video_frame(index) for index in range(48)]
    settings = VideoEncodeSettings(width=width, height=108, frame_rate=Fraction(24), bitrate_bps=150_000,
                                   gop_frames=24, preset="faster", threads=2)
    outputs = []
    for run in range(4):
        encoder = VideoRenditionEncoder(settings, tmp_path / f"{run}.mp4", key=None)
        encoder.start()
        for index, frame in enumerate(frames):
            encoder.put(frame, index, ColorTags.of(frame))
        encoder.finish()
        outputs.append((tmp_path / f"{run}.mp4").read_bytes())
    assert all(output == outputs[0] for output in outputs[1:]), "x264 gave different bytes for the same frames"


def test_x264_is_kept_off_avx512_only_where_the_cpu_has_it() -> None:
    base = dict(width=192, height=108, frame_rate=Fraction(24), bitrate_bps=150_000, gop_frames=24, preset="faster",
                threads=2)
    assert VideoEncodeSettings(**base, asm="avx2").codec_options()["x264-params"].endswith(":asm=avx2")
    assert "asm" not in VideoEncodeSettings(**base, asm=None).codec_options()["x264-params"]
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    assert x264_asm_cap() == ("avx2" if "avx512" in flags else None)
    assert VideoEncodeSettings(**base).asm == x264_asm_cap()


def test_avx512_is_read_from_linux_and_macos_flag_lists() -> None:
    assert cpu_flags_have_avx512(["flags\t\t: fpu vme sse4_2 avx2 avx512f avx512dq"])
    assert not cpu_flags_have_avx512(["flags\t\t: fpu vme sse4_2 avx2 bmi2"])
    assert cpu_flags_have_avx512(["RDWRFSGS TSC_THREAD_OFFSET BMI1 AVX2 SMEP BMI2 AVX512F AVX512DQ"])  # sysctl, macOS
    assert not cpu_flags_have_avx512(["RDWRFSGS TSC_THREAD_OFFSET BMI1 AVX2 SMEP BMI2"])
    assert not cpu_flags_have_avx512([])
