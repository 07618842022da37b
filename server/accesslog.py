"""A buffered line sink for the JSON access log, outside `logging`'s per-record machinery.

An access log line costs a `LogRecord`, handler and formatter calls, a lock and a `write` + `flush`
per request through `logging`: on a cache hit of a small object that is a large share of the work.
`BufferedLineHandler` keeps finished lines in memory and a background thread writes them in batches
(when `batch_lines` are waiting, and at least every `flush_interval_s`); `flush()` and `close()` write
everything still waiting, and `logging.shutdown` (at interpreter exit) calls both, so a clean stop
loses no line. It is still a `logging.Handler`, so that anything else attached to the access logger
(a test's capture, another handler) keeps receiving records: `fast_sink` tells the access logger when
it may hand lines straight to the sink instead.
"""

from __future__ import annotations

import logging
import threading
from typing import TextIO

from server.config import ACCESS_LOG_FLUSH_INTERVAL_S

DEFAULT_BATCH_LINES = 256
DEFAULT_FLUSH_INTERVAL_S = ACCESS_LOG_FLUSH_INTERVAL_S


class BufferedLineHandler(logging.Handler):
    """Writes lines to `stream` in batches from a background thread (see the module docstring)."""

    def __init__(self, stream: TextIO, *, close_stream: bool, batch_lines: int = DEFAULT_BATCH_LINES,
                 flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S) -> None:
        if batch_lines < 1 or flush_interval_s <= 0:
            raise ValueError("batch_lines must be >= 1 and flush_interval_s > 0")
        super().__init__(logging.INFO)
        self.stream = stream
        self.batch_lines = batch_lines
        self.flush_interval_s = flush_interval_s
        self._close_stream = close_stream
        self._lines: list[str] = []
        self._buffer_lock = threading.Lock()  # guards _lines (appended on the loop, swapped by writers)
        self._write_lock = threading.Lock()  # one batch written at a time, in order
        self._wake = threading.Event()
        self._closed = False
        self._writer: threading.Thread | None = None

    def write_line(self, line: str) -> None:
        """Queue one line (without its newline); the hot path of the access log."""
        with self._buffer_lock:
            self._lines.append(line)
            waiting = len(self._lines)
        if self._writer is None:
            self._start_writer()
        if waiting == self.batch_lines:  # once per batch: setting the event on every line costs a lock
            self._wake.set()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write_line(self.format(record))
        except Exception:  # noqa: BLE001 - logging's contract: report, never raise into the caller
            self.handleError(record)

    def flush(self) -> None:
        """Write every line queued so far, now."""
        with self._write_lock:
            with self._buffer_lock:
                lines, self._lines = self._lines, []
            if self.stream.closed:
                return
            try:
                if lines:
                    self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
            except BaseException:
                with self._buffer_lock:  # not lost: written with the next batch
                    self._lines[:0] = lines
                raise

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        writer = self._writer
        if writer is not None and writer is not threading.current_thread():
            writer.join(timeout=10.0)
        self.flush()
        if self._close_stream and not self.stream.closed:
            self.stream.close()
        super().close()

    def _start_writer(self) -> None:
        with self._buffer_lock:
            if self._writer is not None or self._closed:
                return
            self._writer = threading.Thread(target=self._run, name="access-log-writer", daemon=True)
        self._writer.start()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            try:
                self.flush()
            except (OSError, ValueError):  # a full disk or a closed stream: keep the lines, retry later
                continue


def fast_sink(logger: logging.Logger) -> BufferedLineHandler | None:
    """The logger's sink when it is the only place its INFO records go (so a line may skip `logging`)."""
    handlers = logger.handlers
    if len(handlers) != 1 or logger.filters or logger.propagate or logger.disabled:
        return None
    handler = handlers[0]
    if type(handler) is not BufferedLineHandler or handler.filters or handler.level > logging.INFO:
        return None
    if logger.level > logging.INFO or logger.level == logging.NOTSET:
        return None
    return handler
