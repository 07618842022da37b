"""Hostile trace files: whatever the bytes, `load_trace` returns a valid Trace or raises a
`TraceFormatError` naming the file (and line where there is one), quickly and in bounded memory;
never another exception."""

from __future__ import annotations

import json
import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netsim.formats import FORMATS, TraceFormatError, load_trace
from netsim.trace import Trace

# A value that overflows in the trace's sums would warn and leave an infinite mean: make that a failure.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
MEMORY_BUDGET_BYTES = 64 * 1024 * 1024

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-10**30, max_value=10**30),
    st.sampled_from(["nan", "NaN", "inf", "-inf", "1e309", "-0", "0x10", "1_000", "", "1e-400", "٣"]),
)


def _check(path: Path, fmt: str | None) -> None:
    tracemalloc.start()
    try:
        trace = load_trace(path, fmt)  # type: ignore[arg-type]
    except TraceFormatError as exc:
        assert str(path) in str(exc), f"error does not name the file: {exc}"
    else:
        assert isinstance(trace, Trace)
        assert np.all(np.isfinite(trace.durations_s)) and np.all(trace.durations_s > 0)
        assert np.all(np.isfinite(trace.bandwidth_bps)) and trace.mean_bandwidth_bps > 0
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < MEMORY_BUDGET_BYTES, f"parsing took {peak / 2**20:.0f} MiB"


@FUZZ
@given(rows=st.lists(st.tuples(numbers, numbers), max_size=12), fmt=st.sampled_from([None, "pensieve"]))
def test_pensieve_lines_with_hostile_numbers(tmp_path: Path, rows: list[tuple[object, object]], fmt: str | None) -> None:
    path = tmp_path / "p.log"
    path.write_text("".join(f"{t} {r}\n" for t, r in rows))
    _check(path, fmt)


@FUZZ
@given(stamps=st.lists(st.one_of(st.integers(min_value=-5, max_value=10**12), numbers), min_size=1, max_size=12))
def test_mahimahi_timestamps_negative_decreasing_or_huge(tmp_path: Path, stamps: list[object]) -> None:
    path = tmp_path / "m.down"
    path.write_text("".join(f"{s}\n" for s in stamps))
    _check(path, None)


sabre_values = st.one_of(numbers, st.booleans(), st.none(), st.text(max_size=5), st.lists(st.integers(), max_size=2))


@FUZZ
@given(periods=st.one_of(
    st.lists(st.dictionaries(st.sampled_from(["duration_ms", "bandwidth_kbps", "latency_ms", "x"]), sabre_values),
             max_size=6),
    st.recursive(st.none() | st.integers() | st.text(max_size=3),
                 lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                 max_leaves=10)))
def test_sabre_json_of_any_shape(tmp_path: Path, periods: object) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps(periods, allow_nan=True))
    _check(path, None)


@FUZZ
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".log", ".down", ".json", ".txt", ""]),
       fmt=st.sampled_from([None, *FORMATS]))
def test_binary_junk_any_suffix_and_format(tmp_path: Path, data: bytes, suffix: str, fmt: str | None) -> None:
    path = tmp_path / f"junk{suffix}"
    path.write_bytes(data)
    _check(path, fmt)


@pytest.mark.parametrize("text, where", [
    ("0 1\n1 nan\n", ":2:"), ("0 1\n1 -2\n", ":2:"), ("0 1\n2 1\n1 1\n", ":3:"), ("0 1\n1 1e400\n", ":2:"),
    ("0 1\n1 1e305\n", "p.log"),  # finite Mbit/s whose bit/s overflow
    ("0 1\n1e300 1\n", "p.log"),  # finite times and rates whose bits carried overflow (the mean was inf)
    ("0 1\n1 2e9\n", "p.log"),  # 2 Pbit/s
])
def test_pensieve_errors_name_file_and_line(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "p.log"
    path.write_text(text)
    with pytest.raises(TraceFormatError, match=str(path)) as info:
        load_trace(path)
    assert where in str(info.value)


def test_deeply_nested_json_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(TraceFormatError, match=str(path)):
        load_trace(path)


def test_one_huge_mahimahi_timestamp_is_refused_without_allocating_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.down"
    path.write_text("1\n2\n99999999999999\n")
    _check(path, None)


def test_huge_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.log"
    with path.open("wb") as f:  # sparse: no disk used, but stat says 2 GiB
        f.truncate(2 * 1024**3)
    with pytest.raises(TraceFormatError, match="too large"):
        load_trace(path)


def test_long_valid_trace_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "long.log"
    times = np.arange(200_000, dtype=float)
    path.write_text("".join(f"{t} {1 + (t % 7)}\n" for t in times))
    trace = load_trace(path)
    assert trace.durations_s.size == 199_999 and math.isclose(trace.duration_s, 199_999.0)


@pytest.mark.parametrize("periods", [
    [{"duration_ms": 1e-310, "bandwidth_kbps": 1}],  # a sub-microsecond interval (hypothesis found a denormal)
    [{"duration_ms": 1e-3, "bandwidth_kbps": 1e-322}, {"duration_ms": 1e-3, "bandwidth_kbps": 0}],  # carries 0 bit
])
def test_sabre_float_noise_is_refused(tmp_path: Path, periods: list[dict[str, float]]) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps(periods))
    _check(path, None)
