"""Reports of experiments: results.csv, a static report.html with embedded PNG plots, and the
paired sim-vs-emulation gap (emulate - sim of QoE per trace, bootstrap 95% CI)."""

from __future__ import annotations

import base64
import csv
import html
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from player.research.experiment import MODES, Row, session_result
from player.research.stats import Interval, bootstrap_ci
from player.research.sweep import AbrSummary, summarize
from player.research.sweep_report import SESSION_FIELDS, plot_cdf, plot_timeline

CSV_FIELDS = ("mode", *SESSION_FIELDS, "preroll_s", "speed", "frames_decoded", "frames_failed", "error")


@dataclass(frozen=True, kw_only=True, slots=True)
class Gap:
    """Paired difference other - base of one algorithm's QoE over the traces both have."""

    abr: str
    pairs: int
    base_mean: float
    other_mean: float
    difference: Interval  # mean of the per-trace differences, bootstrap 95% CI

    @property
    def relative_pct(self) -> float:
        """The difference as a percentage of the base mean (NaN when that is 0)."""
        return 100.0 * self.difference.mean / abs(self.base_mean) if self.base_mean else math.nan


def ok_rows(rows: Sequence[Row]) -> list[Row]:
    return [r for r in rows if not r.get("error")]


def compare(base: Sequence[Row], other: Sequence[Row], *, qoe: str = "lin", seed: int = 0) -> list[Gap]:
    """Per algorithm, sessions paired by (trace, start offset): mean of other - base with a bootstrap CI."""
    def index(rows: Sequence[Row]) -> dict[tuple[str, str, float], float]:
        return {(r["abr"], r["trace"], r["trace_offset_s"]): r[f"qoe_{qoe}"] for r in ok_rows(rows)}

    first, second = index(base), index(other)
    gaps = []
    for abr in dict.fromkeys(k[0] for k in first):
        keys = [k for k in first if k[0] == abr and k in second]
        if not keys:
            continue
        a = np.array([first[k] for k in keys])
        b = np.array([second[k] for k in keys])
        gaps.append(Gap(abr=abr, pairs=len(keys), base_mean=float(a.mean()), other_mean=float(b.mean()),
                        difference=bootstrap_ci(b - a, seed=seed)))
    return gaps


def sim_emulation_gaps(rows: Sequence[Row], *, seed: int = 0) -> list[Gap]:
    return compare([r for r in rows if r["mode"] == "sim"], [r for r in rows if r["mode"] == "emulate"], seed=seed)


def summaries(rows: Sequence[Row], qoe: str = "lin") -> dict[str, list[AbrSummary]]:
    """Per mode, one summary per algorithm (mean QoE with a Student-t 95% CI, bitrate, stalls, switches)."""
    out: dict[str, list[AbrSummary]] = {}
    good = ok_rows(rows)
    for mode in MODES:
        in_mode = [r for r in good if r["mode"] == mode]
        abrs = list(dict.fromkeys(r["abr"] for r in in_mode))
        if abrs:
            out[mode] = [summarize(abr, [session_result(r) for r in in_mode if r["abr"] == abr], qoe, {})
                         for abr in abrs]
    return out


def write_csv(rows: Sequence[Row], path: Path) -> Path:
    """One row per session; with several players per link, their `link_*` fields and `instability` too."""
    shared = [k for k in dict.fromkeys(k for r in rows if r.get("link_players") is not None for k in r)
              if k.startswith("link_") or k == "instability"]
    fields = (*CSV_FIELDS, *shared)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in fields})
    return path


# -- plots ------------------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    _pyplot().close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _colors(abrs: Sequence[str]) -> dict[str, Any]:
    palette = _pyplot().get_cmap("tab10")
    return {abr: palette(i % 10) for i, abr in enumerate(abrs)}


def cdf_plot(rows: Sequence[Row], abrs: Sequence[str], qoe: str = "lin") -> str:
    plt = _pyplot()
    modes = [m for m in MODES if any(r["mode"] == m for r in rows)]
    fig, axes = plt.subplots(1, len(modes), figsize=(6.5 * len(modes), 4.2), squeeze=False, sharex=True)
    colors = _colors(abrs)
    for ax, mode in zip(axes[0], modes):
        for abr in abrs:
            values = [r[f"qoe_{qoe}"] for r in rows if r["mode"] == mode and r["abr"] == abr]
            if values:
                plot_cdf(ax, values, label=abr, color=colors[abr])
        ax.set_title(f"{mode}: QoE_{qoe} per session")
        ax.set_xlabel(f"QoE_{qoe}")
        ax.set_ylabel("CDF")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return _png(fig)


def scatter_plot(rows: Sequence[Row], abrs: Sequence[str]) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = _colors(abrs)
    for mode, marker in zip(MODES, ("o", "^")):
        for abr in abrs:
            chosen = [r for r in rows if r["mode"] == mode and r["abr"] == abr]
            if chosen:
                ax.scatter([100 * r["rebuffer_ratio"] for r in chosen], [r["avg_bitrate_bps"] / 1e6 for r in chosen],
                           marker=marker, color=colors[abr], alpha=0.7, label=f"{abr} ({mode})")
    ax.set_xlabel("rebuffering, % of session")
    ax.set_ylabel("average bitrate, Mbit/s")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return _png(fig)


def gap_plot(gaps: Sequence[Gap], qoe: str = "lin") -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.4 * len(gaps) + 2), 3.8))
    x = np.arange(len(gaps))
    means = np.array([g.difference.mean for g in gaps])
    errors = np.array([[g.difference.mean - g.difference.low for g in gaps],
                       [g.difference.high - g.difference.mean for g in gaps]])
    ax.bar(x, means, yerr=errors, capsize=6, color="tab:gray")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(x, [g.abr for g in gaps])
    ax.set_ylabel(f"emulate - sim, QoE_{qoe}")
    ax.set_title("sim-vs-emulation gap (mean of paired differences, 95% bootstrap CI)", fontsize="medium")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return _png(fig)


def timeline_png(row: Row) -> str:
    labelled = replace(session_result(row), abr=f"{row['abr']} ({row['mode']})")
    buffer = io.BytesIO()
    plot_timeline(labelled, buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def timeline_rows(rows: Sequence[Row], traces: int) -> list[Row]:
    """Every session of the first `traces` traces (all algorithms and modes), for timelines."""
    chosen = list(dict.fromkeys(r["trace"] for r in rows))[:traces]
    return [r for t in chosen for r in rows if r["trace"] == t]


# -- HTML -------------------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f2f2f2; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; }
.meta td, .meta th { text-align: left; }
img { max-width: 100%; }
"""


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(data: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def summary_table(by_mode: Mapping[str, Sequence[AbrSummary]], qoe: str = "lin") -> str:
    header = ("algorithm", "mode", "sessions", f"mean QoE_{qoe} (95% CI)", "QoE_log", "QoE_hd", "bitrate Mbit/s",
              "rebuffer s", "rebuffer %", "switches", "startup s")
    rows = [(s.abr, mode, s.sessions, f"{s.qoe.mean:.2f} [{s.qoe.low:.2f}, {s.qoe.high:.2f}]",
             f"{s.qoe_means['log']:.2f}", f"{s.qoe_means['hd']:.2f}", f"{s.avg_bitrate_bps / 1e6:.3f}",
             f"{s.rebuffer_s:.2f}", f"{100 * s.rebuffer_ratio:.2f}", f"{s.switches:.1f}", f"{s.startup_s:.2f}")
            for mode, items in by_mode.items() for s in items]
    return _table(header, rows)


def gap_table(gaps: Sequence[Gap], qoe: str = "lin") -> str:
    header = ("algorithm", "paired traces", f"sim mean QoE_{qoe}", f"emulate mean QoE_{qoe}",
              "mean difference (95% bootstrap CI)", "relative")
    rows = [(g.abr, g.pairs, f"{g.base_mean:.2f}", f"{g.other_mean:.2f}",
             f"{g.difference.mean:+.2f} [{g.difference.low:+.2f}, {g.difference.high:+.2f}]", f"{g.relative_pct:+.1f}%")
            for g in gaps]
    return _table(header, rows)


def render_html(rows: Sequence[Row], *, meta: Mapping[str, object], abrs: Sequence[str], timeline_traces: int = 2,
                seed: int = 0) -> str:
    """The whole report as one self-contained HTML page (plots are PNG data URIs)."""
    good = ok_rows(rows)
    failed = [r for r in rows if r.get("error")]
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>abrkit experiment</title>"
             f"<style>{_STYLE}</style></head><body><h1>abrkit experiment</h1>"]
    meta_rows = [(k, v) for k, v in meta.items()]
    meta_rows.append(("sessions", f"{len(good)} finished, {len(failed)} failed"))
    parts.append("<table class='meta'>" + "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                                                   for k, v in meta_rows) + "</table>")
    if good:
        parts.append("<h2>Summary per algorithm and mode</h2>")
        parts.append(summary_table(summaries(good)))
        parts.append("<h2>QoE distribution</h2><div class='plots'>" + _img(cdf_plot(good, abrs), "QoE CDF") + "</div>")
        parts.append("<h2>Bitrate vs rebuffering</h2><div class='plots'>"
                     + _img(scatter_plot(good, abrs), "bitrate vs rebuffer scatter") + "</div>")
        gaps = sim_emulation_gaps(good, seed=seed)
        parts.append("<h2>Simulation vs emulation</h2>")
        if gaps:
            parts.append("<p>Per trace, emulated minus simulated QoE_lin of the same algorithm on the same trace and "
                         "start offset; mean over traces with a percentile bootstrap 95% interval.</p>")
            parts.append(gap_table(gaps))
            parts.append("<div class='plots'>" + _img(gap_plot(gaps), "sim-vs-emulation gap") + "</div>")
        else:
            parts.append("<p>No trace has both a simulated and an emulated session: run with --mode both.</p>")
        parts.append("<h2>Session timelines</h2><div class='plots'>")
        parts += [_img(timeline_png(r), f"timeline {r['abr']} {r['mode']} {r['trace']}")
                  for r in timeline_rows(good, timeline_traces)]
        parts.append("</div>")
    if failed:
        parts.append("<h2>Failed sessions</h2><p>These cells run again on the next run with the same output folder.</p>")
        parts.append(_table(("mode", "algorithm", "trace", "error"),
                            [(r["mode"], r["abr"], r["trace"], r["error"]) for r in failed]))
    parts.append("</body></html>\n")
    return "".join(parts)


def write_report(rows: Sequence[Row], out_dir: Path, *, meta: Mapping[str, object], abrs: Sequence[str],
                 timeline_traces: int = 2, seed: int = 0) -> list[Path]:
    """results.csv and report.html under `out_dir`; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = write_csv(rows, out_dir / "results.csv")
    html_path = out_dir / "report.html"
    html_path.write_text(render_html(rows, meta=meta, abrs=abrs, timeline_traces=timeline_traces, seed=seed),
                         encoding="utf-8")
    return [csv_path, html_path]
