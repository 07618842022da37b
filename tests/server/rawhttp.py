"""Raw HTTP for the hostile tests: requests sent byte for byte as written (headers no client library
would send, bodies that stall), and the answer parsed by hand."""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

HANG_GUARD_S = 30.0


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def parse(raw: bytes) -> Answer:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        out, rest = b"", body
        while rest:
            size_text, _, rest = rest.partition(b"\r\n")
            size = int(size_text, 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2:]
        body = out
    return Answer(status, headers, body)


def request_bytes(base: str, method: str, path: str | bytes, *, headers: dict[str, str | bytes] | None = None,
                  body: bytes = b"", content_length: int | None = None) -> bytes:
    """The request as sent: `Connection: close`; header values given as bytes go out as they are."""
    target = path if isinstance(path, bytes) else path.encode("utf-8", "surrogateescape")
    length = len(body) if content_length is None else content_length
    lines = [method.encode() + b" " + target + b" HTTP/1.1", f"Host: {urlsplit(base).netloc}".encode(),
             b"Connection: close", f"Content-Length: {length}".encode()]
    for name, value in (headers or {}).items():
        lines.append(name.encode("latin-1") + b": " + (value if isinstance(value, bytes) else value.encode("latin-1")))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def raw(base: str, request: bytes, *, timeout_s: float = HANG_GUARD_S) -> Answer:
    """Send `request` as is (blocking) and read the answer until the server closes."""
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout_s) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    return parse(b"".join(chunks))


def http(base: str, method: str, path: str | bytes, *, headers: dict[str, str | bytes] | None = None,
         body: bytes = b"") -> Answer:
    return raw(base, request_bytes(base, method, path, headers=headers, body=body))


async def araw(base: str, request: bytes, *, timeout_s: float = HANG_GUARD_S) -> Answer:
    """`raw` on the running event loop (for tests whose stack runs in the same loop)."""
    parts = urlsplit(base)
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            writer.write(request)
            await writer.drain()
            data = await reader.read()
        finally:
            writer.close()
    return parse(data)


async def ahttp(base: str, method: str, path: str | bytes, *, headers: dict[str, str | bytes] | None = None,
                body: bytes = b"") -> Answer:
    return await araw(base, request_bytes(base, method, path, headers=headers, body=body))


class Stalled:
    """A request whose head and first body bytes were sent, the rest never: the client stopped sending."""

    def __init__(self, writer: asyncio.StreamWriter, reader: asyncio.StreamReader) -> None:
        self.writer, self.reader = writer, reader

    @classmethod
    async def open(cls, base: str, method: str, path: str, *, headers: dict[str, str | bytes] | None = None,
                   sent: bytes = b"{", content_length: int = 1000) -> Stalled:
        parts = urlsplit(base)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(request_bytes(base, method, path, headers=headers, body=sent, content_length=content_length))
        await writer.drain()
        return cls(writer, reader)

    async def answer(self, timeout_s: float = HANG_GUARD_S) -> Answer | None:
        """What the server said (None: it closed without an answer). Read up to the end of its body:
        a server may keep the connection a while after answering, to drain what the client still sends."""
        data = b""
        async with asyncio.timeout(timeout_s):
            while b"\r\n\r\n" not in data:
                chunk = await self.reader.read(65536)
                if not chunk:
                    return parse(data) if data else None
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = parse(head + b"\r\n\r\n").headers.get("content-length")
            while length is not None and len(body) < int(length):
                chunk = await self.reader.read(65536)
                if not chunk:
                    break
                body += chunk
        return parse(head + b"\r\n\r\n" + body)

    def close(self) -> None:
        self.writer.close()


def assert_clean_refusal(answer: Answer, allowed: set[int] | None = None) -> None:
    """A 4xx (or one of `allowed`) with no traceback."""
    assert answer.status < 500, f"{answer.status}: {answer.body[:300]!r}"
    if allowed is not None:
        assert answer.status in allowed, f"{answer.status}: {answer.body[:300]!r}"
    assert b"Traceback" not in answer.body and b'File "' not in answer.body
