"""The edge's cache-hit fast path: a plain GET of a fresh cached object answered as its request is parsed.

aiohttp spends more on a small cache hit than the edge's own work does: a task per request, a
`Request` and a `Response` object, the middleware chain, header serialisation. `EdgeProtocol` is
aiohttp's own connection handler (same parser, keep-alive, limits and shutdown) with one addition:
when the connection is idle and a parsed request is a GET that `Edge.hit_or_none` can answer from
the cache at once (signature verified and remembered, revocation check still fresh, object fresh,
no Range or conditional header, no CORS origin, no fault injected), the response goes out from
`data_received`: the object's precomputed head (`CachedObject.hit_head`), Date, X-Request-ID, then
the body with `sendfile` from its memory file (large objects) or in one `writev` with the head
(small ones), the access-log line (same fields, same writer, CMCD included) and the metrics as the
full handler would. Everything else, and any request the fast path declines, takes aiohttp's path
unchanged, in order. See docs/EDGE.md, "Performance".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import HttpVersion11
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import EMPTY_PAYLOAD
from aiohttp.web_protocol import RequestHandler

from server.edgelog import HitLogLine, json_text
from server.edgeorigin import MemoryFile
from server.observability import REQUEST_ID_HEADER, JsonAccessLogger, choose_request_id

if TYPE_CHECKING:
    from server.edge import Edge

# Request headers the fast path leaves to the full handler (ranges, revalidation, upgrades).
_DECLINE_HEADERS = ("Range", "If-None-Match", "If-Range", "Upgrade", "Expect")
_GRANTS_MAX = 256  # CORS grants remembered per edge process, by request Origin
_REQUEST_ID_NAME = REQUEST_ID_HEADER.encode("ascii")
_MSG_MORE = getattr(socket, "MSG_MORE", 0)  # Linux: hold this send for the next one (like TCP_CORK)


class EdgeProtocol(RequestHandler):
    """aiohttp's `RequestHandler` with the cache-hit fast path (module docstring)."""

    __slots__ = ("_edge", "_hit_log", "_fd", "_send_more", "_remote", "_remote_json", "_sending", "_rest")

    def __init__(self, manager: web.Server, *, edge: Edge, hit_log: HitLogLine | None, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._edge = edge
        self._hit_log = hit_log  # None: the access log is not the JSON one (fast hits then decline)
        self._fd = -1  # the plain TCP/Unix socket's descriptor; -1: no fast path on this connection
        # The socket's `send` with MSG_MORE (TCP on Linux), so that a head leaves in its body's first
        # packet (nginx's tcp_nopush) without two TCP_CORK system calls; None: a plain write.
        self._send_more: Callable[[bytes, int], int] | None = None
        self._remote: str | None = None
        self._remote_json = "null"
        self._sending: asyncio.Future[None] | None = None  # done when the rest of a body has gone out
        self._rest: _Rest | None = None  # that rest, written as the socket drains (`_write_rest`)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        # Written to directly only when the transport is a plain socket transport (never TLS).
        if sock is not None and transport.get_extra_info("sslcontext") is None and sock.type == socket.SOCK_STREAM:
            self._fd = sock.fileno()
            raw = getattr(sock, "_sock", sock)  # asyncio's TransportSocket wraps the socket object
            if _MSG_MORE and sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(raw, socket.socket):
                self._send_more = raw.send
        peer = transport.get_extra_info("peername")
        self._remote = peer[0] if isinstance(peer, (list, tuple)) else (str(peer) if peer else None)
        self._remote_json = json_text(self._remote)

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if (waiter is None or waiter.done() or (self._messages and self._sending is None) or self._fd < 0
                or self._upgraded or self._payload_parser is not None):
            # Busy (a request in progress or queued), or not a connection we answer ourselves.
            super().data_received(data)
            return
        # Idle: hold start()'s waiter back while the parser queues what arrived, answer what we can
        # from the front of the queue, and wake start() only for what is left (in order).
        self._waiter = None
        try:
            super().data_received(data)
        finally:
            self._waiter = waiter
        self._answer_queued()

    def _answer_queued(self) -> None:
        """Answer queued requests from the front while the fast path can, then hand the rest to
        start(); while a body is still going out with sendfile, wait for it (`_send_rest`)."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        messages = self._messages
        parser = self._parser
        while self._sending is None and messages and self._answer_hit(messages[0]):
            messages.popleft()
            if parser is not None:
                parser.message_consumed()
        if self._sending is not None:
            return
        if messages:
            waiter.set_result(None)
        elif self._buffer_paused:
            self._resume_reading_if_drained()

    def _process_keepalive(self) -> None:
        if self._sending is not None:  # not idle: a response is still going out
            self._keepalive_handle = self._loop.call_later(self._keepalive_timeout, self._process_keepalive)
            return
        super()._process_keepalive()

    async def shutdown(self, timeout: float | None = 15.0) -> None:
        sending = self._sending
        if sending is not None:  # let a response being sent finish, as aiohttp does for its own
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(sending), timeout)
        await super().shutdown(timeout)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._rest is not None:  # before the socket closes: its descriptor may be reused after
            self._end_rest()
        super().connection_lost(exc)
        if self._sending is not None:
            self._sending.cancel()

    def _answer_hit(self, queued: tuple[Any, Any]) -> bool:
        """Answer one parsed request from the cache now; False (nothing sent) to leave it to aiohttp."""
        message, payload = queued
        if type(message) is not RawRequestMessage or payload is not EMPTY_PAYLOAD:
            return False
        if message.method != "GET" or message.version != HttpVersion11 or message.should_close:
            return False
        transport = self.transport
        if transport is None or transport.get_write_buffer_size() or self._force_close or self._close:
            return False
        headers = message.headers
        for name in _DECLINE_HEADERS:
            if name in headers:
                return False
        url = message.url
        if url.absolute:
            return False
        hit_log = None
        if self._logging_enabled:
            hit_log = self._hit_log
            if hit_log is None:  # an access logger whose line we cannot write by hand
                return False
        loop = self._loop
        started = loop.time()
        edge = self._edge
        obj = edge.hit_or_none(url.path, started)
        if obj is None:
            return False
        req_id = choose_request_id(headers.get(REQUEST_ID_HEADER))
        head = obj.hit_head
        assert head is not None  # hit_or_none only returns objects with one
        origin = headers.get("Origin")
        if origin is not None:  # a browser's cross-origin request: the CORS middleware's grant, if any
            head += self._manager.cors_grant(origin) if isinstance(self._manager, EdgeServer) else b""
        body = obj.body
        head += b"Date: %s\r\n%s: %s\r\n\r\n" % (rfc822_formatted_time().encode("ascii"), _REQUEST_ID_NAME,
                                                  req_id.encode("ascii"))
        if obj.memory_file is not None:
            self._send_file(transport, head, obj.memory_file)
        else:
            _send(self._fd, transport, head, body, self.force_close)
        if self._manager is not None:
            self._manager.requests_count += 1
        stats = edge.stats
        stats.cache_hits += 1
        stats.fast_hits += 1
        stats.by_status[200] += 1
        stats.bytes_served += len(body)
        if hit_log is not None:
            # The request path is /s/<token> + the object's content path (Edge.hit_or_none): its
            # redacted form is the object's. The same line as JsonAccessLogger.write_entry's.
            hit_log.write(request_id=req_id, path_json=obj.log_path_json, size_bytes=len(body),
                          duration_s=loop.time() - started, remote_json=self._remote_json,
                          raw_query=url.raw_query_string, headers=headers)
        self._next_keepalive_close_time = loop.time() + self._keepalive_timeout
        if self._keepalive_handle is None and self._keepalive_timeout > 0:
            self._keepalive_handle = loop.call_at(self._next_keepalive_close_time, self._process_keepalive)
        return True


    def _send_file(self, transport: asyncio.Transport, head: bytes, memory_file: MemoryFile) -> None:
        """Head, then the body with sendfile from its memory file (the head sent with MSG_MORE, so that
        it leaves in the body's first packet, as nginx's tcp_nopush); the rest, if the socket is full,
        as it drains."""
        fd, size = self._fd, len(memory_file.view)
        send_more = self._send_more
        try:
            try:
                sent_head = os.write(fd, head) if send_more is None else send_more(head, _MSG_MORE)
            except (BlockingIOError, InterruptedError):
                sent_head = 0
            if sent_head < len(head):  # the socket is full already: hand it all to the transport
                transport.write(head[sent_head:])
                transport.write(memory_file.view)
                return
            try:
                sent = os.sendfile(fd, memory_file.file.fileno(), 0, size)
            except (BlockingIOError, InterruptedError):
                sent = 0
        except OSError:
            self.force_close()  # the client went away: nothing to tell it
            return
        if sent >= size:
            return
        add_writer = getattr(self._loop, "_add_writer", None)
        if add_writer is None:  # not a selector event loop: the loop's own sendfile, from a task
            self._sending = self._loop.create_task(self._send_rest(transport, memory_file, sent, size - sent))
            return
        # The rest as the socket drains, from a writer callback on it (as nginx waits for EPOLLOUT):
        # the loop's sendfile would cost a task, futures and a selector update per wait.
        self._sending = self._loop.create_future()
        self._rest = _Rest(memory_file, sent, size - sent)
        add_writer(fd, self._write_rest)

    def _write_rest(self) -> None:
        rest = self._rest
        assert rest is not None
        try:
            sent = os.sendfile(self._fd, rest.file_fd, rest.offset, rest.count)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            sent = 0
        if sent <= 0:  # the client went away (or the file ended early: never for a memory file)
            self._end_rest()
            self.force_close()
            return
        rest.offset += sent
        rest.count -= sent
        if rest.count <= 0:
            self._end_rest()
            self._next_keepalive_close_time = self._loop.time() + self._keepalive_timeout
            self._answer_queued()

    def _end_rest(self) -> None:
        """Stop writing the rest (sent, or never to be): the connection is idle again."""
        self._loop._remove_writer(self._fd)  # type: ignore[attr-defined]
        self._rest = None
        sending, self._sending = self._sending, None
        if sending is not None and not sending.done():
            sending.set_result(None)

    async def _send_rest(self, transport: asyncio.Transport, memory_file: MemoryFile, offset: int, count: int) -> None:
        """The rest of a body with the loop's sendfile (reading paused meanwhile); then the requests
        that queued behind it, in order."""
        try:
            await self._loop.sendfile(transport, memory_file.file, offset, count)
        except (OSError, RuntimeError):  # the client went away, or the transport closed meanwhile
            self._sending = None
            self.force_close()
            return
        except asyncio.CancelledError:
            self._sending = None
            raise
        self._sending = None
        self._next_keepalive_close_time = self._loop.time() + self._keepalive_timeout
        self._answer_queued()


class _Rest:
    """What is left to send of a memory file's body."""

    __slots__ = ("memory_file", "file_fd", "offset", "count")

    def __init__(self, memory_file: MemoryFile, offset: int, count: int) -> None:
        self.memory_file = memory_file  # kept open until sent (an evicted object's file closes after)
        self.file_fd = memory_file.file.fileno()
        self.offset = offset
        self.count = count


def _send(fd: int, transport: asyncio.Transport, head: bytes, body: bytes | memoryview,
          broken: Callable[[], None]) -> None:
    """Head and body in one `writev` on the idle socket; what the kernel did not take goes to the
    transport's buffer (sent as the socket drains, after which the connection takes requests again)."""
    total = len(head) + len(body)
    try:
        sent = os.writev(fd, (head, body))
    except (BlockingIOError, InterruptedError):
        sent = 0
    except OSError:
        broken()  # the client went away: nothing to tell it
        return
    if sent >= total:
        return
    if sent < len(head):
        transport.write(head[sent:])
        transport.write(body)
    else:
        transport.write(memoryview(body)[sent - len(head):])


class EdgeServer(web.Server):
    """aiohttp's low-level server as `web.AppRunner` built it, making `EdgeProtocol` connections."""

    def __init__(self, built: web.Server, edge: Edge) -> None:
        super().__init__(built.request_handler, request_factory=built.request_factory,
                         handler_cancellation=built.handler_cancellation, loop=built._loop, **built._kwargs)
        self.edge = edge
        self._grants: dict[str, bytes] = {}
        log_class, logger = self._kwargs.get("access_log_class"), self._kwargs.get("access_log")
        self.hit_log = (HitLogLine(logger, log_class.service, edge.config.edge_id, edge.stats)
                        if isinstance(log_class, type) and issubclass(log_class, JsonAccessLogger)
                        and logger is not None else None)

    def __call__(self) -> RequestHandler:
        return EdgeProtocol(self, edge=self.edge, hit_log=self.hit_log, loop=self._loop, **self._kwargs)

    def cors_grant(self, origin: str) -> bytes:
        """The header lines `cors_middleware` adds to an answer for a request from `origin` (none for
        an origin not allowed); remembered for allowed origins (at most `_GRANTS_MAX`)."""
        grant = self._grants.get(origin)
        if grant is None:
            lines = self.edge.cors.response_headers(origin)
            # An allowed origin is one of the configured ones (validated) or "*": safe to send verbatim.
            grant = "".join(f"{name}: {value}\r\n" for name, value in lines.items()).encode("ascii")
            if lines and len(self._grants) < _GRANTS_MAX:
                self._grants[origin] = grant
        return grant


class EdgeRunner(web.AppRunner):
    """The edge app's runner: the services' runner (`server.observability.service_runner`) whose
    connections take the cache-hit fast path."""

    def __init__(self, app: web.Application, edge: Edge, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._edge = edge

    async def _make_server(self) -> web.Server:
        return EdgeServer(await super()._make_server(), self._edge)
