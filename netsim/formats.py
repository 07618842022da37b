"""Read and write trace files: Pensieve cooked, Mahimahi (mm-link) and Sabre JSON.

- Pensieve: `<time_s> <throughput_Mbps>` per line; line i's rate covers (t[i-1], t[i]] (Pensieve
  `sim/env.py`), so line 0's rate is never used and the first pass starts at t[0].
- Mahimahi: one integer per line, a delivery opportunity for one 1500-byte packet at that ms; the
  schedule repeats every `last timestamp` ms, as mm-link's `LinkQueue` does (so a timestamp 0 and the
  last one fall on the same instant of consecutive passes).
- Sabre: JSON list of `{"duration_ms", "bandwidth_kbps", "latency_ms"}` periods, looped.

A malformed file raises `TraceFormatError` naming the file and line.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np

from netsim.trace import Trace

MAHIMAHI_PACKET_BYTES = 1500
TraceFormat = Literal["pensieve", "mahimahi", "sabre"]
FORMATS: tuple[TraceFormat, ...] = ("pensieve", "mahimahi", "sabre")
MAX_TRACE_FILE_BYTES = 1 << 30  # read whole into memory: a bound against hostile or mistaken input
_MAX_MAHIMAHI_MS = 2**53  # ms stay exact as float64 (and fit int64) below this


class TraceFormatError(ValueError):
    """A trace file that cannot be read; the message names the file (and line where known)."""


def _read_text(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_TRACE_FILE_BYTES:
            raise TraceFormatError(f"{path}: too large for a trace file (over {MAX_TRACE_FILE_BYTES >> 20} MiB)")
        data = path.read_bytes()
    except IsADirectoryError:
        raise TraceFormatError(f"{path}: is a directory, not a trace file") from None
    except FileNotFoundError:
        raise TraceFormatError(f"{path}: no such trace file") from None
    if b"\x00" in data:
        raise TraceFormatError(f"{path}: binary data (NUL byte), not a trace file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TraceFormatError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _data_lines(text: str) -> Iterable[tuple[int, str]]:
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            yield number, line


def parse_pensieve(text: str, *, name: str = "trace", source: str = "<text>") -> Trace:
    times: list[float] = []
    rates_mbps: list[float] = []
    for number, line in _data_lines(text):
        fields = line.split()
        if len(fields) != 2:
            raise TraceFormatError(f"{source}:{number}: expected 2 columns '<time_s> <Mbit/s>', got {len(fields)}")
        try:
            time_s, rate = float(fields[0]), float(fields[1])
        except ValueError:
            raise TraceFormatError(f"{source}:{number}: not a number: {line[:60]!r}") from None
        if not (math.isfinite(time_s) and math.isfinite(rate)):
            raise TraceFormatError(f"{source}:{number}: time and throughput must be finite, got {line[:60]!r}")
        if rate < 0:
            raise TraceFormatError(f"{source}:{number}: negative throughput {rate}")
        if time_s < 0:
            raise TraceFormatError(f"{source}:{number}: negative time {time_s}")
        if times and time_s <= times[-1]:
            raise TraceFormatError(f"{source}:{number}: time {time_s} does not increase (previous {times[-1]})")
        times.append(time_s)
        rates_mbps.append(rate)
    if len(times) < 2:
        raise TraceFormatError(f"{source}: a Pensieve trace needs at least 2 lines, found {len(times)}")
    t = np.asarray(times)
    bw = np.asarray(rates_mbps)
    if not np.any(bw[1:] > 0):
        raise TraceFormatError(f"{source}: throughput is zero on every line")
    with np.errstate(over="ignore"):  # Mbit/s overflowing as bit/s become inf: refused by Trace, named by load_trace
        bandwidth_bps = bw[1:] * 1e6
    return Trace(name=name, durations_s=np.diff(t), bandwidth_bps=bandwidth_bps)


def format_pensieve(trace: Trace) -> str:
    ends = trace.end_times_s
    mbps = trace.bandwidth_bps / 1e6
    lines = [f"0.0\t{mbps[0]:.9g}"]
    lines += [f"{end:.9g}\t{rate:.9g}" for end, rate in zip(ends, mbps)]
    return "\n".join(lines) + "\n"


def parse_mahimahi(text: str, *, name: str = "trace", source: str = "<text>") -> Trace:
    stamps: list[int] = []
    for number, line in _data_lines(text):
        try:
            ms = int(line)
        except ValueError:
            raise TraceFormatError(f"{source}:{number}: expected one integer (ms), got {line[:60]!r}") from None
        if ms < 0:
            raise TraceFormatError(f"{source}:{number}: negative timestamp {ms}")
        if ms > _MAX_MAHIMAHI_MS:
            raise TraceFormatError(f"{source}:{number}: timestamp {ms} ms is too large")
        if stamps and ms < stamps[-1]:
            raise TraceFormatError(f"{source}:{number}: timestamp {ms} decreases (previous {stamps[-1]})")
        stamps.append(ms)
    if not stamps:
        raise TraceFormatError(f"{source}: no timestamps found")
    period_ms = stamps[-1]
    if period_ms == 0:
        raise TraceFormatError(f"{source}: trace must last a nonzero time (last timestamp is 0)")
    # Opportunity at ms m is delivered during (m-1, m]; timestamp 0 coincides with `period_ms`.
    slots = np.asarray(stamps, dtype=np.int64)
    slots[slots == 0] = period_ms
    # One 1 ms interval per distinct timestamp and a zero-rate gap before each: memory follows the
    # number of lines, not the period (one huge timestamp must not allocate a per-ms array).
    ms, counts = np.unique(slots, return_counts=True)
    durations_ms = np.empty(2 * ms.size)
    durations_ms[0::2] = np.r_[ms[0] - 1, np.diff(ms) - 1]
    durations_ms[1::2] = 1.0
    rate_bps = np.zeros(2 * ms.size)
    rate_bps[1::2] = counts * MAHIMAHI_PACKET_BYTES * 8 / 1e-3
    keep = durations_ms > 0
    durations_ms, rate_bps = durations_ms[keep], rate_bps[keep]
    # Merge runs of equal rate so long constant stretches stay one interval.
    starts = np.r_[0, np.flatnonzero(np.diff(rate_bps)) + 1]
    return Trace(name=name, durations_s=np.add.reduceat(durations_ms, starts) * 1e-3, bandwidth_bps=rate_bps[starts])


def format_mahimahi(trace: Trace) -> str:
    """Packets per ms accumulated with a fractional carry; the mean rate is kept exactly."""
    period_ms = max(1, round(trace.duration_s * 1000))
    edges_s = np.arange(1, period_ms + 1) * 1e-3
    cumulative_bits = _cumulative_bits(trace, edges_s)
    packets = np.floor(cumulative_bits / (MAHIMAHI_PACKET_BYTES * 8) + 1e-9).astype(np.int64)
    per_ms = np.diff(np.r_[0, packets])
    stamps = np.repeat(np.arange(1, period_ms + 1), per_ms)
    if stamps.size == 0 or stamps[-1] != period_ms:
        # mm-link takes the last timestamp as the period; keep it by delivering one packet there.
        stamps = np.r_[stamps, period_ms]
    return "\n".join(map(str, stamps.tolist())) + "\n"


def _cumulative_bits(trace: Trace, at_s: np.ndarray) -> np.ndarray:
    ends = trace.end_times_s
    starts = ends - trace.durations_s
    bits_before = np.r_[0.0, np.cumsum(trace.durations_s * trace.bandwidth_bps)][:-1]
    index = np.minimum(np.searchsorted(ends, at_s, side="left"), ends.size - 1)
    return bits_before[index] + (at_s - starts[index]) * trace.bandwidth_bps[index]


def parse_sabre(text: str, *, name: str = "trace", source: str = "<text>") -> Trace:
    try:
        periods = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceFormatError(f"{source}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    except RecursionError:
        raise TraceFormatError(f"{source}: JSON nested too deeply") from None
    if not isinstance(periods, list) or not periods:
        raise TraceFormatError(f"{source}: a Sabre trace is a non-empty JSON list of periods")
    durations, rates, latencies = [], [], []
    for index, period in enumerate(periods):
        where = f"{source}: period {index}"
        if not isinstance(period, dict):
            raise TraceFormatError(f"{where}: expected an object, got {type(period).__name__}")
        try:
            duration_ms = period["duration_ms"]
            bandwidth_kbps = period["bandwidth_kbps"]
            latency_ms = period.get("latency_ms", 0)
        except KeyError as exc:
            raise TraceFormatError(f"{where}: missing key {exc.args[0]!r}") from None
        values = (duration_ms, bandwidth_kbps, latency_ms)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            raise TraceFormatError(f"{where}: duration_ms, bandwidth_kbps, latency_ms must be finite numbers")
        if duration_ms <= 0 or bandwidth_kbps < 0 or latency_ms < 0:
            raise TraceFormatError(f"{where}: needs duration_ms > 0, bandwidth_kbps >= 0, latency_ms >= 0")
        durations.append(duration_ms / 1000)
        rates.append(bandwidth_kbps * 1000)
        latencies.append(latency_ms / 1000)
    if not any(r > 0 for r in rates):
        raise TraceFormatError(f"{source}: bandwidth is zero in every period")
    return Trace(name=name, durations_s=np.asarray(durations), bandwidth_bps=np.asarray(rates), latency_s=np.asarray(latencies))


def format_sabre(trace: Trace, *, latency_ms: float = 0.0) -> str:
    latency = trace.latency_s if trace.latency_s is not None else np.full(trace.durations_s.size, latency_ms / 1000)
    periods = [
        {"duration_ms": round(float(d) * 1000, 6), "bandwidth_kbps": round(float(b) / 1000, 6), "latency_ms": round(float(l) * 1000, 6)}
        for d, b, l in zip(trace.durations_s, trace.bandwidth_bps, latency)
    ]
    return "[\n" + ",\n".join("    " + json.dumps(p) for p in periods) + "\n]\n"


_PARSERS = {"pensieve": parse_pensieve, "mahimahi": parse_mahimahi, "sabre": parse_sabre}
_FORMATTERS = {"pensieve": format_pensieve, "mahimahi": format_mahimahi, "sabre": format_sabre}


def sniff_format(path: Path, text: str) -> TraceFormat:
    """Guess a file's format from its extension, then from its first data line."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "sabre"
    if suffix in (".up", ".down"):
        return "mahimahi"
    for number, line in _data_lines(text):
        if line.startswith(("[", "{")):
            return "sabre"
        fields = line.split()
        if len(fields) == 2:
            return "pensieve"
        if len(fields) == 1 and fields[0].isdigit():
            return "mahimahi"
        raise TraceFormatError(f"{path}:{number}: unrecognised trace line {line[:60]!r} (not Pensieve, Mahimahi or Sabre)")
    raise TraceFormatError(f"{path}: empty trace file")


def load_trace(path: str | os.PathLike[str], fmt: TraceFormat | None = None) -> Trace:
    """Read one trace file; `fmt=None` detects the format."""
    file = Path(path)
    text = _read_text(file)
    chosen = fmt or sniff_format(file, text)
    if chosen not in _PARSERS:
        raise TraceFormatError(f"unknown trace format {chosen!r}; choose from {', '.join(FORMATS)}")
    try:
        return _PARSERS[chosen](text, name=file.name, source=str(file))
    except TraceFormatError:
        raise
    except ValueError as exc:  # values each fine alone, but not as a trace (e.g. bit/s overflowing)
        raise TraceFormatError(f"{file}: {exc}") from None


def dump_trace(trace: Trace, path: str | os.PathLike[str], fmt: TraceFormat) -> None:
    """Write `trace` in `fmt`, atomically (a reader never sees half a file)."""
    if fmt not in _FORMATTERS:
        raise ValueError(f"unknown trace format {fmt!r}; choose from {', '.join(FORMATS)}")
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(_FORMATTERS[fmt](trace))
    os.replace(tmp, target)


def is_trace_candidate(path: Path) -> bool:
    """Files a directory loader considers: not hidden, not documentation."""
    name = path.name
    if name.startswith(".") or not path.is_file():
        return False
    lower = name.lower()
    return not (lower.startswith("readme") or lower.endswith((".md", ".txt", ".rst", ".pdf", ".py")))


def trace_paths(sources: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand files and directories (one level, sorted by name) into trace files.

    A directory that holds folders of traces is an error rather than a silent choice of its top level."""
    paths: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            nested = [p.name for p in sorted(path.iterdir()) if p.is_dir() and not p.name.startswith(".")
                      and any(is_trace_candidate(f) for f in p.iterdir())]
            if nested:
                raise TraceFormatError(f"{path}: holds trace folders ({', '.join(nested)}) that are not read "
                                       f"recursively; pass the folders you mean, e.g. {path / nested[0]}")
            paths.extend(p for p in sorted(path.iterdir()) if is_trace_candidate(p))
        elif path.exists():
            paths.append(path)
        else:
            raise TraceFormatError(f"{path}: no such trace file or directory")
    if not paths:
        raise TraceFormatError(f"no trace files found in {', '.join(map(str, sources))}")
    return paths


def load_traces(sources: Iterable[str | os.PathLike[str]], fmt: TraceFormat | None = None) -> list[Trace]:
    """Load every trace in the given files/directories (directories skip README/dotfiles)."""
    return [load_trace(p, fmt) for p in trace_paths(list(sources))]
