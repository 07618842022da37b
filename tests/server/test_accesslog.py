"""The buffered access log: lines written in batches and periodically, in order, none lost on a clean
stop (in this process and in `abrkit edge` with one and with several workers), and anything else
attached to the access logger still hears every line."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.accesslog import BufferedLineHandler, fast_sink
from server.observability import (
    access_log,
    audit_log,
    choose_request_id,
    configure_logging,
    flush_access_log,
    new_request_id,
)

REPO = Path(__file__).resolve().parents[2]


class _Stream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_lines_wait_for_a_batch_then_leave_together_in_order() -> None:
    stream = _Stream()
    sink = BufferedLineHandler(stream, close_stream=False, batch_lines=50, flush_interval_s=60.0)
    try:
        for n in range(49):
            sink.write_line(f"line {n}")
        time.sleep(0.05)
        assert stream.getvalue() == ""  # not a batch yet, and the interval is long
        sink.write_line("line 49")
        deadline = time.monotonic() + 5.0
        while stream.getvalue().count("\n") < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stream.getvalue().splitlines() == [f"line {n}" for n in range(50)]
        assert stream.writes == 1
    finally:
        sink.close()


def test_a_quiet_log_is_still_written_within_the_flush_interval() -> None:
    stream = _Stream()
    sink = BufferedLineHandler(stream, close_stream=False, batch_lines=1000, flush_interval_s=0.05)
    try:
        sink.write_line("alone")
        deadline = time.monotonic() + 5.0
        while not stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stream.getvalue() == "alone\n"
    finally:
        sink.close()


def test_close_writes_every_line_even_from_many_threads() -> None:
    stream = _Stream()
    sink = BufferedLineHandler(stream, close_stream=False, batch_lines=7, flush_interval_s=0.001)

    def write(prefix: str) -> None:
        for n in range(2000):
            sink.write_line(f"{prefix}{n}")

    threads = [threading.Thread(target=write, args=(p,)) for p in "abc"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sink.close()
    lines = stream.getvalue().splitlines()
    assert sorted(lines) == sorted(f"{p}{n}" for p in "abc" for n in range(2000))
    for prefix in "abc":  # each writer's lines keep their order
        assert [line for line in lines if line[0] == prefix] == [f"{prefix}{n}" for n in range(2000)]


def test_a_failed_write_keeps_the_lines_for_the_next_batch() -> None:
    class Flaky(io.StringIO):
        fail = True

        def write(self, text: str) -> int:
            if self.fail:
                raise OSError("disk full")
            return super().write(text)

    stream = Flaky()
    sink = BufferedLineHandler(stream, close_stream=False, batch_lines=1000, flush_interval_s=60.0)
    sink.write_line("kept")
    with pytest.raises(OSError):
        sink.flush()
    stream.fail = False
    sink.write_line("next")
    sink.close()
    assert stream.getvalue() == "kept\nnext\n"


@pytest.mark.parametrize("settings", [{"batch_lines": 0}, {"flush_interval_s": 0.0}])
def test_bad_settings_are_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="batch_lines"):
        BufferedLineHandler(io.StringIO(), close_stream=False, **settings)  # type: ignore[arg-type]


@pytest.fixture
def restored_access_log() -> Iterator[None]:
    """The access and audit loggers as a fresh process has them (no listener, propagating), then as
    they were (configure_logging sets both up). Under `pytest -n` an earlier test in the same worker
    may have configured them: pytest then attaches its capture handlers to them at each phase, as to
    every logger that does not propagate, and the fast path rightly declines. pytest's own handlers
    are pytest's to add and remove."""
    def ours(handler: logging.Handler) -> bool:
        return not type(handler).__module__.startswith("_pytest")

    saved = [(logger, [h for h in logger.handlers if ours(h)], list(logger.filters), logger.level, logger.propagate,
              logger.disabled) for logger in (access_log, audit_log)]
    for logger, handlers, filters, *_ in saved:
        for handler in handlers:
            logger.removeHandler(handler)
        for f in filters:
            logger.removeFilter(f)
        logger.disabled = False
        logger.propagate = True
    yield
    for logger, handlers, filters, level, propagate, disabled in saved:
        for handler in [h for h in logger.handlers if ours(h)]:
            logger.removeHandler(handler)
            handler.close()
        for handler in handlers:
            logger.addHandler(handler)
        for f in filters:
            logger.addFilter(f)
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled


def test_configured_file_log_takes_the_fast_path_and_other_handlers_still_hear_every_line(
        tmp_path: Path, restored_access_log: None) -> None:
    configure_logging(tmp_path / "access.log", audit_log_to=None)
    sink = fast_sink(access_log)
    assert sink is not None, (access_log.handlers, access_log.filters, access_log.level, access_log.propagate,
                              access_log.disabled)
    sink.write_line('{"n":1}')
    heard: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            heard.append(record.getMessage())

    access_log.addHandler(Capture())
    assert fast_sink(access_log) is None  # a second listener: lines go through logging again
    access_log.info('{"n":2}')
    flush_access_log()
    assert (tmp_path / "access.log").read_text().splitlines() == ['{"n":1}', '{"n":2}']
    assert heard == ['{"n":2}']


def test_request_ids_are_unique_and_shaped_like_before() -> None:
    ids = {new_request_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_clean_stop_of_abrkit_edge_loses_no_access_log_line(tmp_path: Path, workers: int) -> None:
    log_path = tmp_path / "access.log"
    key = tmp_path / "verify.key"
    key.write_text("00" * 32)
    edge = subprocess.Popen(
        [sys.executable, "-m", "player", "edge", "--origin", "http://127.0.0.1:9", "--port", "0",
         "--workers", str(workers), "--key-file", str(key), "--access-log", str(log_path)],
        stdout=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert edge.stdout is not None
        line = edge.stdout.readline()
        assert "ready at" in line, line
        url = line.split("ready at ")[1].split()[0]
        requests = 300
        for n in range(requests):
            request = urllib.request.Request(f"{url}/healthz", headers={"X-Request-ID": f"req-{n}"})
            with urllib.request.urlopen(request, timeout=10) as resp:
                assert resp.status == 200
        edge.send_signal(signal.SIGTERM)
        assert edge.wait(timeout=30) == 0
    finally:
        if edge.poll() is None:
            edge.kill()
            edge.wait()
    logged = [json.loads(text) for text in log_path.read_text().splitlines()]
    assert sorted(entry["request_id"] for entry in logged) == sorted(f"req-{n}" for n in range(requests))


def test_a_clients_request_id_is_kept_only_when_the_whole_value_is_sane() -> None:
    assert choose_request_id("req-1.a:b_c") == "req-1.a:b_c"
    for hostile in ("req-1\n", "req 1", "x" * 129, "", "req-1\r\nX-Evil: 1", None):
        chosen = choose_request_id(hostile)
        assert chosen != hostile and chosen and "\n" not in chosen
