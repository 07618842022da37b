"""Resolve what a user typed after `--trace`/`--traces`: a file, a directory, or a synthetic spec."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from netsim import synthetic
from netsim.formats import load_trace, load_traces
from netsim.trace import Trace

SYNTHETIC_KINDS = ("constant", "step", "walk", "markov", "profile")


def is_synthetic_spec(source: str) -> bool:
    return source.partition(":")[0] in SYNTHETIC_KINDS and not Path(source).exists()


def open_trace(source: str) -> Trace:
    """One trace from a file or a synthetic spec such as `step:4e6,1e6@5`."""
    if is_synthetic_spec(source):
        return synthetic.from_spec(source)
    return load_trace(source)


def open_traces(sources: Sequence[str]) -> list[Trace]:
    """Traces from files, directories (README/dotfiles skipped) and synthetic specs, in order."""
    traces: list[Trace] = []
    files: list[str] = []
    for source in sources:
        if is_synthetic_spec(source):
            traces.extend(load_traces(files) if files else [])
            files = []
            traces.append(synthetic.from_spec(source))
        else:
            files.append(source)
    if files:
        traces.extend(load_traces(files))
    return traces
