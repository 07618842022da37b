"""Reports of simulation sweeps: a console table, JSON, per-session CSV, per-segment JSONL, plots."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from abr.estimators import throughput_bps, throughput_bps_array
from player.research.sim import SessionResult
from player.research.stats import PairedComparison, mean_ci
from player.research.sweep import AbrSummary, SweepResult

SESSION_FIELDS = ("abr", "trace", "trace_offset_s", "segments", "qoe_lin", "qoe_log", "qoe_hd", "startup_s",
                  "rebuffer_s", "rebuffer_count", "rebuffer_ratio", "avg_bitrate_bps", "switches", "avg_switch_bps")


def format_table(summaries: Sequence[AbrSummary], qoe: str) -> str:
    """One row per algorithm: sessions, mean QoE with 95% CI, bitrate, rebuffer, switches, % of optimal
    (and abandoned downloads per session where any algorithm abandoned one)."""
    header = ["abr", "sessions", f"qoe_{qoe} (95% CI)", "bitrate Mbit/s", "rebuffer s", "switches", "% optimal"]
    rows = [
        [s.abr, str(s.sessions), str(s.qoe), f"{s.avg_bitrate_bps / 1e6:.3f}", f"{s.rebuffer_s:.2f}",
         f"{s.switches:.1f}", "-" if s.pct_of_optimal is None else f"{s.pct_of_optimal:.1f}"]
        for s in summaries
    ]
    if any(s.abandoned for s in summaries):
        header.append("abandoned")
        for row, s in zip(rows, summaries):
            row.append(f"{s.abandoned:.1f}")
    return _columns(header, rows)


def _columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def sabre_means(result: SweepResult) -> dict[str, dict[str, float]]:
    """Per algorithm, the mean of each of Sabre's metrics (sessions of a profile that reports them)."""
    out: dict[str, dict[str, float]] = {}
    for abr, sessions in result.sessions.items():
        reports = [r.metrics.sabre for r in sessions if r.metrics.sabre is not None]
        if reports:
            out[abr] = {k: float(np.mean([rep.as_dict()[k] for rep in reports])) for k in reports[0].as_dict()}
    return out


def format_sabre_table(result: SweepResult) -> str:
    """Sabre's report per algorithm (its sabre.py closing metrics, means over sessions)."""
    header = ("abr", "sessions", "bitrate kbit/s", "rebuffer ratio", "rebuffer events", "switch kbit/s/seg",
              "utility/seg", "score (95% CI)")
    rows = []
    for abr, means in sabre_means(result).items():
        scores = [r.metrics.sabre.score for r in result.sessions[abr] if r.metrics.sabre is not None]
        score = mean_ci(scores)
        rows.append((abr, str(len(scores)), f"{means['sabre_time_avg_bitrate_bps'] / 1e3:.1f}",
                     f"{means['sabre_rebuffer_ratio']:.5f}", f"{means['sabre_rebuffer_events']:.2f}",
                     f"{means['sabre_switch_bps_per_segment'] / 1e3:.2f}", f"{means['sabre_utility_per_segment']:.4f}",
                     f"{score.mean:.4f} ± {score.half_width:.4f}" if score.n > 1 else f"{score.mean:.4f}"))
    return _columns(header, rows)


def format_comparisons(comparisons: Sequence[PairedComparison], qoe: str) -> str:
    """Paired differences against the baseline, one line per algorithm."""
    if not comparisons:
        return ""
    base = comparisons[0].baseline
    lines = [f"against {base} (qoe_{qoe}, paired by session, 95% bootstrap CI; wins/ties/losses):"]
    for c in comparisons:
        d = c.difference
        lines.append(f"  {c.abr}: {d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}] ({c.relative_pct:+.1f}% of "
                     f"{base}'s {c.baseline_mean:.3f}), {c.wins}/{c.ties}/{c.losses} of {c.pairs}")
    return "\n".join(lines)


def to_json(result: SweepResult, provenance: dict[str, Any] | None = None) -> dict[str, object]:
    qoe = result.config.table_qoe
    prof = result.config.profile
    out: dict[str, object] = {
        "video": result.video, "profile": prof.name, "qoe": qoe, "qoe_config": prof.qoe.as_dict(),
        "player": {"buffer_cap_s": prof.session.buffer_cap_s, "cap_rule": prof.session.cap_rule,
                   "startup_threshold_s": prof.session.startup_threshold_s, "abandonment": prof.abandonment},
        "offsets_per_trace": result.config.offsets, "seed": result.config.seed, "results": {},
    }
    results: dict[str, object] = {}
    sabre = sabre_means(result)
    for s in result.summaries():
        results[s.abr] = {
            "sessions": s.sessions,
            f"qoe_{qoe}_mean": s.qoe.mean,
            f"qoe_{qoe}_ci95": [s.qoe.low, s.qoe.high],
            **{f"qoe_{m}_mean": v for m, v in s.qoe_means.items()},
            "avg_bitrate_bps": s.avg_bitrate_bps, "rebuffer_s_mean": s.rebuffer_s,
            "rebuffer_ratio_mean": s.rebuffer_ratio, "startup_s_mean": s.startup_s, "switches_mean": s.switches,
            "abandoned_mean": s.abandoned, "pct_of_optimal": s.pct_of_optimal, "per_trace": s.per_trace,
            "engine": sorted({r.engine for r in result.sessions[s.abr]}),
            **({"sabre": sabre[s.abr]} if s.abr in sabre else {}),
        }
    out["results"] = results
    comparisons = result.comparisons()
    if comparisons:
        out["baseline"] = {"abr": result.config.baseline, "qoe": qoe,
                           "comparisons": {c.abr: c.as_dict() for c in comparisons}}
    if result.config.faults:
        out["faults"] = [{"kind": w.kind, "start_s": w.start_s, "duration_s": w.duration_s, "recovery_s": w.recovery_s}
                         for w in result.config.faults]
    if result.optimal:
        out["optimal"] = {"grid_s": result.config.optimal_grid_s,
                          "mean": float(np.mean(list(result.optimal.values()))), "per_trace": result.optimal}
    if result.optimal_note:
        out["optimal_note"] = result.optimal_note
    if provenance is not None:
        out["provenance"] = provenance
    return out


def write_outputs(result: SweepResult, out_dir: Path, *, plot_sessions: int = 2,
                  provenance: dict[str, Any] | None = None) -> list[Path]:
    """sessions.csv, per_trace.csv, segments.jsonl, summary.json and plots under `out_dir`; returns the
    files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [_write_sessions_csv(result, out_dir / "sessions.csv"), _write_per_trace(result, out_dir / "per_trace.csv"),
               _write_segments(result, out_dir / "segments.jsonl")]
    summary = out_dir / "summary.json"
    summary.write_text(json.dumps(to_json(result, provenance), indent=2))
    written.append(summary)
    written += write_plots(result, out_dir, plot_sessions=plot_sessions)
    return written


def _session_keys(result: SweepResult, abr: str) -> list[str]:
    return list(result.keys) if result.keys else [f"{r.trace}" for r in result.sessions[abr]]


def _write_sessions_csv(result: SweepResult, path: Path) -> Path:
    rows = []
    for abr, sessions in result.sessions.items():
        for key, r in zip(_session_keys(result, abr), sessions):
            rows.append({"abr": abr, "session": key, "trace": r.trace, "trace_offset_s": r.trace_offset_s,
                         "abandoned": r.abandoned, **r.metrics.as_dict()})
    fields = list(dict.fromkeys(["abr", "session", *SESSION_FIELDS, "abandoned",
                                 *(k for row in rows for k in row)]))
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in fields})
    return path


def _write_per_trace(result: SweepResult, path: Path) -> Path:
    """One row per session (trace and start offset): every algorithm's QoE side by side, the optimum,
    and each algorithm's difference from the baseline."""
    qoe = result.config.table_qoe
    abrs = list(result.sessions)
    first = abrs[0]
    keys = _session_keys(result, first)
    value = {abr: dict(zip(_session_keys(result, abr), (r.metrics.qoe[qoe] for r in result.sessions[abr])))
             for abr in abrs}
    baseline = result.config.baseline
    fields = ["session", "trace", "trace_offset_s", *(f"{abr}:qoe_{qoe}" for abr in abrs)]
    if result.optimal:
        fields.append(f"optimal:qoe_{qoe}")
    if baseline is not None:
        fields += [f"{abr} - {baseline}" for abr in abrs if abr != baseline]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(fields)
        for key, r in zip(keys, result.sessions[first]):
            row: list[object] = [key, r.trace, r.trace_offset_s, *(value[abr].get(key, "") for abr in abrs)]
            if result.optimal:
                row.append(result.optimal.get(key, ""))
            if baseline is not None:
                row += [value[abr][key] - value[baseline][key] for abr in abrs if abr != baseline]
            writer.writerow(row)
    return path


def _write_segments(result: SweepResult, path: Path) -> Path:
    with path.open("w") as fh:
        for abr, sessions in result.sessions.items():
            for r in sessions:
                for i in range(r.qualities.size):
                    record = {
                        "abr": abr, "trace": r.trace, "segment": i, "quality": int(r.qualities[i]),
                        "bitrate_bps": int(r.bitrates_bps[i]), "size_bytes": int(r.size_bytes[i]),
                        "request_time_s": round(float(r.request_time_s[i]), 6),
                        "buffer_before_s": round(float(r.buffer_before_s[i]), 6),
                        "download_s": round(float(r.download_s[i]), 6),
                        "throughput_bps": round(throughput_bps(int(r.size_bytes[i]), float(r.download_s[i])), 1),
                        "rebuffer_s": round(float(r.rebuffer_s[i]), 6),
                        "buffer_after_s": round(float(r.buffer_s[i]), 6),
                        "reason": r.reasons[i] if r.reasons else None,  # the batch engine keeps no reasons
                    }
                    fh.write(json.dumps(record) + "\n")
    return path


def write_plots(result: SweepResult, out_dir: Path, *, plot_sessions: int = 2) -> list[Path]:
    """QoE CDF per algorithm and bitrate/buffer/throughput timelines of the first sessions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    qoe = result.config.table_qoe
    written = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for abr, sessions in result.sessions.items():
        plot_cdf(ax, [r.metrics.qoe[qoe] for r in sessions], label=abr)
    if result.optimal:
        plot_cdf(ax, list(result.optimal.values()), label="offline optimal", linestyle="--", color="black")
    ax.set_xlabel(f"QoE_{qoe} per session")
    ax.set_ylabel("CDF")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = out_dir / "qoe_cdf.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    for abr, sessions in result.sessions.items():
        for r in sessions[:plot_sessions]:
            written.append(plot_timeline(r, out_dir / f"timeline_{_safe(abr)}_{_safe(r.trace)}.png"))
    return written


def plot_cdf(ax: Any, values: Sequence[float], **style: Any) -> None:
    """An empirical CDF as a step line on a matplotlib axis."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    ax.step(x, np.arange(1, x.size + 1) / x.size, where="post", **style)


def buffer_curve(request_s: np.ndarray, download_s: np.ndarray, before_s: np.ndarray,
                 after_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(time, buffer) points of the buffer level: it drains while each segment downloads (to zero if
    the download outlasts it: a stall, or startup), jumps when the segment lands, and drains again
    until the next request."""
    xs: list[float] = []
    ys: list[float] = []
    for t0, dl, b0, b1 in zip(request_s.tolist(), download_s.tolist(), before_s.tolist(), after_s.tolist()):
        t1 = t0 + dl
        xs.append(t0)
        ys.append(b0)
        if dl > b0:  # ran dry at t0 + b0 and stayed empty until the segment landed
            xs += [t0 + b0, t1]
            ys += [0.0, 0.0]
        else:
            xs.append(t1)
            ys.append(b0 - dl)
        xs.append(t1)
        ys.append(b1)
    return np.array(xs), np.array(ys)


def plot_timeline(r: SessionResult, path: Path | BinaryIO) -> Path | BinaryIO:
    """Bitrate, measured throughput and buffer over session time; `path` may be a file object (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = r.request_time_s + r.download_s
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    top.step(r.request_time_s, r.bitrates_bps / 1e6, where="post", label="bitrate")
    top.plot(done, throughput_bps_array(r.size_bytes, r.download_s) / 1e6, ".", alpha=0.6, label="measured throughput")
    top.set_ylabel("Mbit/s")
    top.legend(loc="upper right")
    top.set_title(f"{r.abr} on {r.trace}: QoE_lin {r.qoe_lin:.1f}")
    bottom.plot(*buffer_curve(r.request_time_s, r.download_s, r.buffer_before_s, r.buffer_s), label="buffer")
    stalls = r.rebuffer_s > 0
    if stalls.any():
        bottom.hlines(np.zeros(int(stalls.sum())), done[stalls] - r.rebuffer_s[stalls], done[stalls], colors="red",
                      linewidth=4, label="stall")
    bottom.set_ylabel("buffer s")
    bottom.set_xlabel("session time s")
    bottom.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
    return path


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80]
