"""`abrkit trace info|convert|generate`: inspect traces, convert between Pensieve, Mahimahi and Sabre,
and generate seeded sets of Markov-modulated traces (`netsim.generate`) for training curricula."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from netsim.formats import FORMATS, dump_trace, load_trace
from netsim.generate import DEFAULT_LEVELS_BPS, MarkovSpec, Range, markov_set
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
    _register_generate(sub)


def _register_generate(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    gen = sub.add_parser(
        "generate", help="write a seeded set of synthetic traces (Markov-modulated levels, outages)",
        description="Write COUNT traces of a Markov-modulated bandwidth model (netsim.generate): a hidden level per "
                    "interval, left with --switch-prob; a Gaussian rate around it (--noise); outages (rate 0) "
                    "starting with --outage-prob. A value lo:hi draws each trace's value from that range, so a set "
                    "spans a distribution; the same --seed writes the same files.")
    gen.add_argument("out", type=Path, help="output directory (created; existing trace files are not overwritten)")
    gen.add_argument("--count", type=int, default=100, help="number of traces (default 100)")
    gen.add_argument("--seed", type=int, default=0, help="seed (trace i depends on seed and i only; default 0)")
    gen.add_argument("--format", dest="out_format", choices=("pensieve", "mahimahi"), default="pensieve",
                     help="file format (default pensieve: '<time_s> <Mbit/s>' lines)")
    gen.add_argument("--prefix", default="markov", help="file name prefix (default markov)")
    gen.add_argument("--levels-mbps", default=",".join(f"{v / 1e6:g}" for v in DEFAULT_LEVELS_BPS),
                     help="bandwidth levels of the chain, Mbit/s, comma-separated (default %(default)s)")
    gen.add_argument("--scale", default="1", help="per-trace factor on every level, or lo:hi (log-uniform)")
    gen.add_argument("--switch-prob", default="0.1", help="probability per interval of leaving the level, or lo:hi")
    gen.add_argument("--locality", type=float, default=0.5,
                     help="weight ratio per extra level of distance for the next level, in (0, 1] (default 0.5)")
    gen.add_argument("--noise", default="0.15", help="std of the rate around its level, fraction of it, or lo:hi")
    gen.add_argument("--outage-prob", default="0", help="probability per interval of an outage starting, or lo:hi")
    gen.add_argument("--outage-mean-s", type=float, default=2.0, help="mean outage length, s (default 2)")
    gen.add_argument("--interval-s", type=float, default=1.0, help="length of one interval, s (default 1)")
    gen.add_argument("--duration-s", type=float, default=320.0, help="trace length, s (default 320)")
    gen.add_argument("--floor-mbps", type=float, default=0.05, help="lowest rate outside outages (default 0.05)")
    gen.add_argument("--force", action="store_true", help="overwrite trace files of the same names")
    gen.set_defaults(func=run_generate)


def _range(text: str, option: str) -> Range:
    """`x` or `lo:hi` as (lo, hi)."""
    parts = text.split(":")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"{option} must be a number or lo:hi, got {text!r}") from None
    if len(values) == 1:
        return (values[0], values[0])
    if len(values) == 2:
        return (values[0], values[1])
    raise ValueError(f"{option} must be a number or lo:hi, got {text!r}")


def generate_spec(args: argparse.Namespace) -> MarkovSpec:
    """The `MarkovSpec` of `abrkit trace generate`'s options (its errors name the option)."""
    try:
        levels = tuple(float(v) * 1e6 for v in args.levels_mbps.split(","))
    except ValueError:
        raise ValueError(f"--levels-mbps must be comma-separated numbers, got {args.levels_mbps!r}") from None
    return MarkovSpec(levels_bps=levels, scale=_range(args.scale, "--scale"),
                      switch_probability=_range(args.switch_prob, "--switch-prob"), locality=args.locality,
                      noise=_range(args.noise, "--noise"), outage_probability=_range(args.outage_prob, "--outage-prob"),
                      outage_mean_s=args.outage_mean_s, interval_s=args.interval_s, duration_s=args.duration_s,
                      floor_bps=args.floor_mbps * 1e6)


def run_generate(args: argparse.Namespace) -> int:
    spec = generate_spec(args)
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    if not args.prefix or "/" in args.prefix or args.prefix.startswith("."):
        raise ValueError(f"--prefix must be a plain file name start, got {args.prefix!r}")
    traces = markov_set(spec, seed=args.seed, count=args.count, prefix=args.prefix)
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a directory")
    existing = [t.name for t in traces if (out / t.name).exists()]
    if existing and not args.force:
        raise ValueError(f"{out} already has {len(existing)} of these traces (e.g. {existing[0]}); "
                         "use --force to overwrite them or another directory")
    out.mkdir(parents=True, exist_ok=True)
    for trace in traces:
        dump_trace(trace, out / trace.name, args.out_format)
    # Provenance beside the traces in a file the trace loaders skip (README.md).
    params = {"command": "abrkit " + " ".join(getattr(args, "argv", ())), "seed": args.seed, "count": args.count,
              "format": args.out_format, "model": "markov", **spec.as_dict()}
    (out / "README.md").write_text("# Synthetic traces (abrkit trace generate)\n\n```json\n"
                                   + json.dumps(params, indent=2) + "\n```\n")
    means = np.array([t.mean_bandwidth_bps for t in traces]) / 1e6
    dark = np.array([float(t.durations_s[t.bandwidth_bps == 0].sum()) for t in traces])
    print(f"wrote {len(traces)} {args.out_format} traces to {out}: mean {means.mean():.3f} Mbit/s "
          f"(per trace {means.min():.3f}..{means.max():.3f}), outage {dark.mean():.1f} s per trace")
    return 0


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
