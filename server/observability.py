"""Request IDs, structured JSON access logs and Prometheus metrics, shared by every service.

- `request_id_middleware`: reuses an incoming `X-Request-ID` (if sane) or makes one, stores it in
  `request[REQUEST_ID]`, and echoes it on the response; services pass it on to their backends.
- `JsonAccessLogger`: one JSON object per request on the `abrkit.access` logger; extra fields a
  handler puts in `request[LOG_EXTRA]` are merged in, and fields it defers (`add_deferred_log_fields`,
  e.g. CMCD, parsed only here) are computed when the line is written. Signed-URL tokens are redacted
  from logged paths. Lines go to a buffered sink (server/accesslog.py), past `logging`.
- `Metrics`: counters, gauges and histograms rendered in the Prometheus text format (0.0.4).
- `configure_logging`: where a service process sends its messages, access log and audit log.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from server.accesslog import BufferedLineHandler, fast_sink
from server.formats.urls import redact_path

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID = web.RequestKey("abrkit_request_id", str)
LOG_EXTRA = web.RequestKey("abrkit_log_extra", dict)
LOG_DEFERRED = web.RequestKey("abrkit_log_deferred", list)
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # whole value (fullmatch: `$` would let a trailing newline in)

access_log = logging.getLogger("abrkit.access")
audit_log = logging.getLogger("abrkit.audit")  # auth and license: who asked for which tokens and keys

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _RequestIds:
    """A random 64-bit prefix per process and a counter: 32 hex digits, unique like a uuid4, without a
    getrandom() system call on every request. A forked child draws a new prefix."""

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        self.prefix = secrets.token_hex(8)
        self.counter = itertools.count(secrets.randbits(40))

    def new(self) -> str:
        return f"{self.prefix}{next(self.counter) & 0xFFFFFFFFFFFFFFFF:016x}"


_REQUEST_IDS = _RequestIds()
os.register_at_fork(after_in_child=_REQUEST_IDS.reseed)


def new_request_id() -> str:
    return _REQUEST_IDS.new()


class DeferredLogFields:
    """Access-log fields computed only when the line is written (`resolve`), e.g. parsed CMCD."""

    __slots__ = ()

    def resolve(self) -> Mapping[str, object]:
        raise NotImplementedError


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = choose_request_id(request.headers.get(REQUEST_ID_HEADER))
    request[REQUEST_ID] = request_id
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers[REQUEST_ID_HEADER] = request_id
        raise
    response.headers[REQUEST_ID_HEADER] = request_id
    return response


def choose_request_id(incoming: str | None) -> str:
    """The client's `X-Request-ID` when it is sane, else a new one."""
    return incoming if incoming is not None and _SANE_ID.fullmatch(incoming) else new_request_id()


def request_id(request: web.Request) -> str:
    return str(request.get(REQUEST_ID) or "-")


class JsonAccessLogger(AbstractAccessLogger):
    """aiohttp access logger writing one JSON line per request (set `service` via `for_service`)."""

    service = "abrkit"

    @classmethod
    def for_service(cls, service: str) -> type[JsonAccessLogger]:
        return type(f"JsonAccessLogger_{service}", (cls,), {"service": service})

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:  # noqa: A002
        self.write_entry(
            request_id=request.get(REQUEST_ID) or response.headers.get(REQUEST_ID_HEADER, "-"),
            method=request.method, path=request.path, status=response.status,
            size_bytes=response.content_length if response.content_length is not None else response.body_length,
            duration_s=time, remote=request.remote, extra=request.get(LOG_EXTRA), deferred=request.get(LOG_DEFERRED))

    def write_entry(self, *, request_id: str, method: str, path: str, status: int, size_bytes: int,
                    duration_s: float, remote: str | None, extra: Mapping[str, object] | None,
                    deferred: Iterable[DeferredLogFields] | None, path_redacted: bool = False) -> None:
        """Write one line; `log` calls it, and so does a response answered outside aiohttp's request
        cycle (the edge's cache-hit path, server/edgefast.py), so that both write the same line.
        `path_redacted`: `path` has been through `redact_path` already."""
        entry: dict[str, object] = {
            "ts": round(_now(), 3),
            "service": self.service,
            "request_id": request_id,
            "method": method,
            "path": path if path_redacted else redact_path(path),
            "status": status,
            "bytes": size_bytes,
            "duration_ms": round(duration_s * 1000, 3),
            "remote": remote,
        }
        if extra is not None:
            entry.update(extra)
        if deferred is not None:
            for fields in deferred:
                entry.update(fields.resolve())
        line = _JSON.encode(entry)
        sink = fast_sink(self.logger)
        if sink is not None:
            sink.write_line(line)
        else:
            self.logger.info(line)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


def _now() -> float:
    return time.time()


_JSON = json.JSONEncoder(separators=(",", ":"), default=str)  # one encoder: json.dumps(..., separators) makes one per call


class MalformedRequestFilter(logging.Filter):
    """aiohttp logs every request its parser rejects (answered 400/431: the client's fault) as an
    ERROR with a traceback whose text quotes the raw request line, signed-URL token and all. This
    keeps one INFO line without either, so a traceback in a service log means a bug and a client
    cannot flood the log with them. Real errors (anything else) pass unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg = f"{record.getMessage()}: malformed request refused ({type(exc).__name__}, {exc.code})"
            record.args, record.exc_info, record.exc_text = (), None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def quiet_malformed_requests(logger: logging.Logger) -> None:
    """Install `MalformedRequestFilter` on aiohttp's server logger (idempotent)."""
    if not any(isinstance(f, MalformedRequestFilter) for f in logger.filters):
        logger.addFilter(MalformedRequestFilter())


# aiohttp closes a connection that sends no complete request within its keep-alive timeout, armed
# when the connection opens: this bounds idle connections and slow senders trickling headers
# (slowloris). Its default is an hour; clients' pools (aiohttp: 15 s) close idle ones before this.
IDLE_TIMEOUT_S = 30.0


def service_runner(app: web.Application, service: str, *, shutdown_timeout_s: float,
                   idle_timeout_s: float = IDLE_TIMEOUT_S,
                   runner_class: Callable[..., web.AppRunner] = web.AppRunner) -> web.AppRunner:
    """The AppRunner every abrkit service runs under (embedded, `--processes`, standalone edge): the
    JSON access log for `service`, malformed requests logged without tracebacks, idle keep-alive
    connections closed after `idle_timeout_s`, signals left to the caller. `runner_class`: an
    AppRunner subclass taking the same arguments (the edge's, server/edgefast.py)."""
    quiet_malformed_requests(logging.getLogger("aiohttp.server"))
    return runner_class(app, access_log_class=JsonAccessLogger.for_service(service), access_log=access_log,
                         handle_signals=False, shutdown_timeout=shutdown_timeout_s, keepalive_timeout=idle_timeout_s)


def add_log_fields(request: web.Request, **fields: object) -> None:
    """Extra fields for this request's access-log line."""
    extra = request.get(LOG_EXTRA)
    if extra is None:
        extra = request[LOG_EXTRA] = {}
    extra.update(fields)


def add_deferred_log_fields(request: web.Request, fields: DeferredLogFields) -> None:
    """Fields for this request's access-log line, computed only if and when the line is written."""
    deferred = request.get(LOG_DEFERRED)
    if deferred is None:
        request[LOG_DEFERRED] = [fields]
    else:
        deferred.append(fields)


def flush_access_log() -> None:
    """Write out every access-log line still buffered (services call it when they stop)."""
    for handler in access_log.handlers:
        handler.flush()


LogDestination = str | os.PathLike[str] | None  # a file (appended), "-" for stderr, None for off


def configure_logging(access_log_to: LogDestination = "-", *, audit_log_to: LogDestination = "-",
                      level: int = logging.INFO) -> None:
    """Set up logging for a process that runs services: messages to stderr; the JSON access log
    and the audit log (one bare JSON object a line) each to `access_log_to` / `audit_log_to`.

    Safe to call again: the JSON logs then go where the last call says. An access log that is off
    leaves `abrkit.access` below INFO, so aiohttp skips access logging and the edge skips CMCD
    parsing altogether. The access log is written in batches (server/accesslog.py): at least every
    second, and in full when the process stops cleanly (`flush_access_log`, `logging.shutdown`). It also turns off logging's per-record caller, thread and process lookups
    (logging HOWTO, "Optimization"): no format here uses them, and the access log pays for them on
    every request.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    for json_log, destination in ((access_log, access_log_to), (audit_log, audit_log_to)):
        for old in [h for h in json_log.handlers if getattr(h, "abrkit_json", False)]:
            json_log.removeHandler(old)
            old.close()
        json_log.propagate = False
        if destination is None:
            json_log.setLevel(logging.WARNING)
            continue
        handler: logging.Handler
        if json_log is access_log:
            if destination == "-":
                handler = BufferedLineHandler(sys.stderr, close_stream=False)
            else:
                Path(destination).parent.mkdir(parents=True, exist_ok=True)
                handler = BufferedLineHandler(open(destination, "a", encoding="utf-8"),  # noqa: SIM115 - closed with it
                                              close_stream=True)
        elif destination == "-":
            handler = logging.StreamHandler(sys.stderr)
        else:
            Path(destination).parent.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(destination, encoding="utf-8", delay=True)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.abrkit_json = True  # type: ignore[attr-defined]
        json_log.addHandler(handler)
        json_log.setLevel(logging.INFO)


Labels = tuple[tuple[str, str], ...]
DEFAULT_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels(labels: Mapping[str, str] | None) -> Labels:
    return tuple(sorted((labels or {}).items()))


def _fmt_labels(labels: Labels, extra: Iterable[tuple[str, str]] = ()) -> str:
    items = list(labels) + list(extra)
    if not items:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in items)
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@dataclass(slots=True)
class _Histogram:
    buckets: tuple[float, ...]
    counts: list[int]
    total: float = 0.0
    count: int = 0


@dataclass(slots=True)
class Metrics:
    """A small in-process metrics registry; one per service app (not a global)."""

    namespace: str = "abrkit"
    _help: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (type, help)
    _values: dict[str, dict[Labels, float]] = field(default_factory=dict)
    _hists: dict[str, dict[Labels, _Histogram]] = field(default_factory=dict)

    def _declare(self, name: str, kind: str, help_text: str) -> str:
        full = f"{self.namespace}_{name}"
        self._help.setdefault(full, (kind, help_text))
        return full

    def inc(self, name: str, amount: float = 1.0, *, help: str = "", labels: Mapping[str, str] | None = None) -> None:  # noqa: A002
        full = self._declare(name, "counter", help)
        series = self._values.setdefault(full, {})
        key = _labels(labels)
        series[key] = series.get(key, 0.0) + amount

    def set(self, name: str, value: float, *, help: str = "", labels: Mapping[str, str] | None = None) -> None:  # noqa: A002
        full = self._declare(name, "gauge", help)
        self._values.setdefault(full, {})[_labels(labels)] = value

    def observe(self, name: str, value: float, *, help: str = "", labels: Mapping[str, str] | None = None,  # noqa: A002
                buckets: tuple[float, ...] = DEFAULT_BUCKETS_S) -> None:
        full = self._declare(name, "histogram", help)
        series = self._hists.setdefault(full, {})
        key = _labels(labels)
        hist = series.get(key)
        if hist is None:
            hist = series[key] = _Histogram(buckets=buckets, counts=[0] * len(buckets))
        for i, bound in enumerate(hist.buckets):
            if value <= bound:
                hist.counts[i] += 1
        hist.total += value
        hist.count += 1

    def value(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        return self._values.get(f"{self.namespace}_{name}", {}).get(_labels(labels), 0.0)

    def render(self) -> str:
        lines: list[str] = []
        for full, (kind, help_text) in sorted(self._help.items()):
            if help_text:
                lines.append(f"# HELP {full} {help_text}")
            lines.append(f"# TYPE {full} {kind}")
            if kind == "histogram":
                for labels, hist in sorted(self._hists.get(full, {}).items()):
                    for bound, count in zip(hist.buckets, hist.counts):
                        lines.append(f"{full}_bucket{_fmt_labels(labels, [('le', repr(bound))])} {count}")
                    lines.append(f"{full}_bucket{_fmt_labels(labels, [('le', '+Inf')])} {hist.count}")
                    lines.append(f"{full}_sum{_fmt_labels(labels)} {hist.total}")
                    lines.append(f"{full}_count{_fmt_labels(labels)} {hist.count}")
            else:
                for labels, value in sorted(self._values.get(full, {}).items()):
                    lines.append(f"{full}{_fmt_labels(labels)} {_fmt_value(value)}")
        return "\n".join(lines) + "\n"


def _fmt_value(value: float) -> str:
    """Exact integers stay exact (a 512 MiB gauge is not 5.36871e+08); other floats use repr."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**63 else repr(float(value))


METRICS = web.AppKey("abrkit_metrics", Metrics)


async def metrics_handler(request: web.Request) -> web.Response:
    """`GET /metrics` in the Prometheus text format."""
    return web.Response(text=request.app[METRICS].render(), content_type="text/plain", charset="utf-8",
                        headers={"Cache-Control": "no-store"})
