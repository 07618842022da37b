"""Shared helpers of the netsim tests."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from server.formats.servertiming import publish_wait_header


@asynccontextmanager
async def held_server(hold_s: float, *, stated_s: float | None, split_head: bool = False,
                      on_hold: Callable[[], None] | None = None, answer: bytes | None = None,
                      reset: bool = False, heads: list[bytes] | None = None) -> AsyncIterator[int]:
    """A raw HTTP/1.1 server that holds each request `hold_s` and says it waited `stated_s` for
    publication (None: says nothing); `split_head`: the head's last lines come 30 ms after its first;
    `on_hold` is called as each request comes and as its hold ends; `answer`: these bytes instead
    (head and body), then the connection closes (`reset`: is reset 0.1 s later); `heads` gets each
    request's head."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if heads is not None:
            heads.append(head)
        if on_hold is not None:
            on_hold()
        await asyncio.sleep(hold_s)
        if on_hold is not None:
            on_hold()
        if answer is not None:
            writer.write(answer)
            if reset:
                await writer.drain()
                await asyncio.sleep(0.1)
                writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
            else:
                writer.close()
            return
        timing = b"" if stated_s is None else f"Server-Timing: {publish_wait_header(stated_s)}\r\n".encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n")
        if split_head:
            await writer.drain()
            await asyncio.sleep(0.03)
        writer.write(timing + b"Content-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
