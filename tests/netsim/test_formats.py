from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netsim import synthetic
from netsim.formats import (
    TraceFormatError,
    dump_trace,
    load_trace,
    load_traces,
    parse_mahimahi,
    parse_pensieve,
    parse_sabre,
)
from netsim.link import LinkModel
from netsim.trace import Trace


def _bytes_delivered(trace: Trace, start_s: float, end_s: float) -> float:
    link = LinkModel(trace)
    return link.bytes_until(end_s) - link.bytes_until(start_s)


def test_pensieve_line_rate_applies_to_the_interval_before_it() -> None:
    trace = parse_pensieve("0.0 9\n1.0 2\n3.0 4\n")
    np.testing.assert_allclose(trace.durations_s, [1.0, 2.0])
    np.testing.assert_allclose(trace.bandwidth_bps, [2e6, 4e6])


def test_mahimahi_one_packet_per_ms_is_12_mbps() -> None:
    trace = parse_mahimahi("\n".join(str(i) for i in range(1, 1001)))
    assert trace.mean_bandwidth_bps == pytest.approx(12e6)
    assert trace.durations_s.size == 1  # runs of equal rate are merged


def test_mahimahi_timestamp_zero_coincides_with_the_period_end() -> None:
    # mm-link repeats the schedule every `last timestamp` ms: 0 and 4 fall on the same instant.
    trace = parse_mahimahi("0\n1\n2\n3\n4\n")
    assert trace.duration_s == pytest.approx(0.004)
    assert trace.mean_bandwidth_bps == pytest.approx(5 * 1500 * 8 / 0.004)


def test_sabre_periods_carry_latency() -> None:
    trace = parse_sabre('[{"duration_ms": 1000, "bandwidth_kbps": 500, "latency_ms": 75}]')
    assert trace.bandwidth_bps[0] == 500e3
    assert trace.latency_at(0.5) == pytest.approx(0.075)


@pytest.mark.parametrize("fmt", ["pensieve", "mahimahi", "sabre"])
def test_round_trip_keeps_delivered_bytes(tmp_path: Path, fmt: str) -> None:
    original = synthetic.markov([0.5e6, 2e6, 6e6], duration_s=30, seed=4)
    path = tmp_path / f"t.{ {'sabre': 'json', 'mahimahi': 'down'}.get(fmt, 'txt') }"
    dump_trace(original, path, fmt)  # type: ignore[arg-type]
    loaded = load_trace(path)
    assert loaded.duration_s == pytest.approx(original.duration_s, abs=1e-3)
    tolerance = 1500 * 2 if fmt == "mahimahi" else 1.0  # mahimahi quantises to whole packets per ms
    for start, end in [(0, 30), (3.2, 11.7), (20, 29.9)]:
        assert _bytes_delivered(loaded, start, end) == pytest.approx(_bytes_delivered(original, start, end), abs=tolerance)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 1\n1 nan\n", "bad.txt:2: time and throughput must be finite"),
        ("0 1\n1 -3\n", "bad.txt:2: negative throughput"),
        ("0 1\n2 3\n1 3\n", "bad.txt:3: time 1.0 does not increase"),
        ("0 1\n1 2 3\n", "bad.txt:2: expected 2 columns"),
        ("0 1\n1 abc\n", "bad.txt:2: not a number"),
        ("0 1\n", "at least 2 lines"),
        ("", "empty trace file"),
    ],
)
def test_malformed_pensieve_file_names_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(TraceFormatError, match=message.replace(".", r"\.")):
        load_trace(path, None if text == "" else "pensieve")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("m.down", "5\n3\n", "m.down:2: timestamp 3 decreases"),
        ("m.down", "0\n", "nonzero time"),
        ("m.down", "1\nx\n", "m.down:2: expected one integer"),
        ("s.json", "[{\"duration_ms\": 10}]", "missing key 'bandwidth_kbps'"),
        ("s.json", "[{\"duration_ms\": -1, \"bandwidth_kbps\": 1}]", "duration_ms > 0"),
        ("s.json", "[1, 2", "s.json:1: invalid JSON"),
        ("s.json", "[{\"duration_ms\": 10, \"bandwidth_kbps\": NaN}]", "finite numbers"),
    ],
)
def test_malformed_mahimahi_and_sabre_files_are_named(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(TraceFormatError, match=message.replace("[", r"\[").replace(".", r"\.")):
        load_trace(path)


def test_binary_junk_is_rejected_clearly(tmp_path: Path) -> None:
    path = tmp_path / "junk"
    path.write_bytes(bytes(range(256)))
    with pytest.raises(TraceFormatError, match="junk: binary data"):
        load_trace(path)


def test_directory_loader_skips_readmes_and_dotfiles(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# not a trace\n")
    (tmp_path / ".hidden").write_text("junk")
    (tmp_path / "a").write_text("0 1\n1 2\n")
    (tmp_path / "b.json").write_text('[{"duration_ms": 1000, "bandwidth_kbps": 100}]')
    traces = load_traces([tmp_path])
    assert [t.name for t in traces] == ["a", "b.json"]


def test_shared_pensieve_test_traces_load(shared_dir: Path) -> None:
    traces = load_traces([shared_dir / "traces/pensieve/test-public"])
    assert len(traces) == 71
    bus1 = next(t for t in traces if t.name == "norway_bus_1")
    assert bus1.mean_bandwidth_bps / 1e6 == pytest.approx(2.912, abs=0.001)


def test_shared_mahimahi_derivative_matches_its_pensieve_source(shared_dir: Path) -> None:
    # The shared README says the .down files keep the source trace's time-weighted mean.
    down = load_trace(shared_dir / "traces/mahimahi/pensieve/norway_bus_1.down")
    assert down.mean_bandwidth_bps / 1e6 == pytest.approx(2.912, abs=0.002)


def test_a_folder_of_trace_folders_is_refused_naming_them(tmp_path: Path) -> None:
    (tmp_path / "example.json").write_text('[{"duration_ms": 1000, "bandwidth_kbps": 100}]')
    for sub in ("3Glogs", "4Glogs"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "t.json").write_text('[{"duration_ms": 1000, "bandwidth_kbps": 100}]')
    (tmp_path / "empty").mkdir()
    with pytest.raises(TraceFormatError, match=r"holds trace folders \(3Glogs, 4Glogs\) that are not read"):
        load_traces([tmp_path])
    assert len(load_traces([tmp_path / "3Glogs", tmp_path / "4Glogs"])) == 2
