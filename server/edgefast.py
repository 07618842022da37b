"""The edge's cache-hit fast path: a plain GET of a fresh cached object answered as its request is parsed.

aiohttp spends more on a small cache hit than the edge's own work does: a task per request, a
`Request` and a `Response` object, the middleware chain, header serialisation. `EdgeProtocol` is
aiohttp's own connection handler (same parser, keep-alive, limits and shutdown) with one addition:
when the connection is idle and a parsed request is a GET that `Edge.hit_or_none` can answer from
the cache at once (signature verified and remembered, revocation check still fresh, object fresh,
no Range or conditional header, no CORS origin, no fault injected), the response goes out from
`data_received`: the object's precomputed head (`CachedObject.hit_head`), Date, X-Request-ID, and
the body in one `writev` from the cached bytes (no join copy), the access-log line (same fields,
same writer, CMCD included) and the metrics as the slow path would. Everything else, and any request
the fast path declines, takes aiohttp's path unchanged, in order. See docs/EDGE.md, "Performance".
"""

from __future__ import annotations

import asyncio
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

from server.observability import REQUEST_ID_HEADER, JsonAccessLogger, choose_request_id

if TYPE_CHECKING:
    from server.edge import Edge

# Request headers the fast path leaves to the full handler (ranges, revalidation, CORS, upgrades).
_DECLINE_HEADERS = ("Range", "If-None-Match", "If-Range", "Origin", "Upgrade", "Expect")
_REQUEST_ID_NAME = REQUEST_ID_HEADER.encode("ascii")


class EdgeProtocol(RequestHandler):
    """aiohttp's `RequestHandler` with the cache-hit fast path (module docstring)."""

    __slots__ = ("_edge", "_fd", "_remote")

    def __init__(self, manager: web.Server, *, edge: Edge, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._edge = edge
        self._fd = -1  # the plain TCP/Unix socket's descriptor; -1: no fast path on this connection
        self._remote: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        # Written to directly only when the transport is a plain socket transport (never TLS).
        if sock is not None and transport.get_extra_info("sslcontext") is None and sock.type == socket.SOCK_STREAM:
            self._fd = sock.fileno()
        peer = transport.get_extra_info("peername")
        self._remote = peer[0] if isinstance(peer, (list, tuple)) else (str(peer) if peer else None)

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if (waiter is None or waiter.done() or self._messages or self._fd < 0 or self._upgraded
                or self._payload_parser is not None):
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
        messages = self._messages
        parser = self._parser
        while messages and self._answer_hit(messages[0]):
            messages.popleft()
            if parser is not None:
                parser.message_consumed()
        if messages:
            if not waiter.done():
                waiter.set_result(None)
        elif self._buffer_paused:
            self._resume_reading_if_drained()

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
        logger = self.access_logger if self._logging_enabled else None
        if logger is not None and not isinstance(logger, JsonAccessLogger):
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
        body = obj.body
        head += b"Date: %s\r\n%s: %s\r\n\r\n" % (rfc822_formatted_time().encode("ascii"), _REQUEST_ID_NAME,
                                                  req_id.encode("ascii"))
        _send(self._fd, transport, head, body, self.force_close)
        if self._manager is not None:
            self._manager.requests_count += 1
        stats = edge.stats
        stats.cache_hits += 1
        stats.fast_hits += 1
        stats.by_status[200] += 1
        stats.bytes_served += len(body)
        if logger is not None:
            logger.write_entry(request_id=req_id, method="GET", path=url.path, status=200, size_bytes=len(body),
                               duration_s=loop.time() - started, remote=self._remote,
                               extra={"edge_id": edge.config.edge_id, "cache": "HIT"},
                               deferred=(edge.cmcd_log_fields(url.raw_query_string, headers),))
        self._next_keepalive_close_time = loop.time() + self._keepalive_timeout
        if self._keepalive_handle is None and self._keepalive_timeout > 0:
            self._keepalive_handle = loop.call_at(self._next_keepalive_close_time, self._process_keepalive)
        return True


def _send(fd: int, transport: asyncio.Transport, head: bytes, body: bytes, broken: Callable[[], None]) -> None:
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

    def __call__(self) -> RequestHandler:
        return EdgeProtocol(self, edge=self.edge, loop=self._loop, **self._kwargs)


class EdgeRunner(web.AppRunner):
    """The edge app's runner: the services' runner (`server.observability.service_runner`) whose
    connections take the cache-hit fast path."""

    def __init__(self, app: web.Application, edge: Edge, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._edge = edge

    async def _make_server(self) -> web.Server:
        return EdgeServer(await super()._make_server(), self._edge)
