"""`abrkit trace info|convert`: inspect traces and convert between Pensieve, Mahimahi and Sabre."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from netsim.formats import FORMATS, dump_trace, load_trace
from netsim.link import LinkBatch
from netsim.sources import open_traces
from netsim.trace import Trace


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("trace", help="inspect and convert network traces")
    sub = parser.add_subparsers(dest="trace_command", metavar="ACTION", required=True)
    info = sub.add_parser("info", help="duration and throughput statistics of traces")
    info.add_argument("sources", nargs="+", help="trace files, directories or synthetic specs (e.g. step:4e6,1e6@5)")
    info.add_argument("--json", action="store_true", help="one JSON object per trace on stdout")
    info.set_defaults(func=run_info)
    convert = sub.add_parser("convert", help="convert a trace to another format")
    convert.add_argument("source", help="input trace file or synthetic spec")
    convert.add_argument("output", type=Path, help="output file")
    convert.add_argument("--to", dest="to_format", choices=FORMATS, required=True, help="output format")
    convert.add_argument("--from", dest="from_format", choices=FORMATS, help="input format (default: detect)")
    convert.set_defaults(func=run_convert)


def binned_mbps(trace: Trace, bin_s: float = 1.0) -> np.ndarray:
    """Mean capacity in consecutive bins over one pass (Mahimahi's per-ms rates are 0 or 12 Mbit/s;
    what users mean by a trace's throughput is a rate over a second or so)."""
    link = LinkBatch([trace])
    bins = max(1, int(trace.duration_s // bin_s))
    edges = np.minimum(np.arange(bins + 1) * bin_s, trace.duration_s)
    delivered = link.bytes_until(edges, np.zeros(edges.size, dtype=np.int64))
    return np.diff(delivered) * 8 / np.diff(edges) / 1e6


def trace_summary(trace: Trace) -> dict[str, float | str | int]:
    """Duration and throughput statistics (Mbit/s; percentiles over 1 s bins) over one pass."""
    weights = trace.durations_s / trace.durations_s.sum()
    binned = binned_mbps(trace, min(1.0, trace.duration_s))

    def percentile(p: float) -> float:
        return float(np.percentile(binned, p))

    return {
        "name": trace.name, "intervals": int(trace.durations_s.size), "duration_s": round(trace.duration_s, 3),
        "mean_mbps": round(trace.mean_bandwidth_bps / 1e6, 4), "p5_mbps": round(percentile(5), 4),
        "p50_mbps": round(percentile(50), 4), "p95_mbps": round(percentile(95), 4),
        "min_mbps": round(float(binned.min()), 4), "max_mbps": round(float(binned.max()), 4),
        "outage_s": round(float(np.count_nonzero(binned == 0) * min(1.0, trace.duration_s)), 3),
        "latency_ms": round(float(np.dot(weights, trace.latency_s)) * 1000, 1) if trace.latency_s is not None else "",
    }


def run_info(args: argparse.Namespace) -> int:
    rows = [trace_summary(t) for t in open_traces(args.sources)]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    header = ("name", "duration_s", "mean_mbps", "p5_mbps", "p50_mbps", "p95_mbps", "outage_s", "latency_ms")
    widths = [max(len(h), *(len(str(r[h])) for r in rows)) for h in header]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(str(row[h]).ljust(w) for h, w in zip(header, widths)))
    return 0


def run_convert(args: argparse.Namespace) -> int:
    if args.from_format:
        trace = load_trace(args.source, args.from_format)
    else:
        (trace,) = open_traces([args.source])
    dump_trace(trace, args.output, args.to_format)
    summary = trace_summary(trace)
    print(f"wrote {args.output} ({args.to_format}): {summary['duration_s']} s, mean {summary['mean_mbps']} Mbit/s")
    return 0
