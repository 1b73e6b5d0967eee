"""A minimal reader of the dashboard's alert stream (`GET /api/v1/alerts/stream`), the way the
page reads it: one HTTP/1.1 request with the bearer token, chunked transfer, SSE framing.

The bench times alerts to the moment their event reaches a dashboard client, so it needs a
client that adds nothing of its own; httpx is only a test dependency, and this is 80 lines of
asyncio streams.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

STREAM_PATH = "/api/v1/alerts/stream"


@dataclass(frozen=True)
class Event:
    name: str
    data: Any
    received: float  # wall clock, when its last line arrived


async def _chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """The body of a chunked response, chunk by chunk, as the server flushes them."""
    while True:
        size_line = await reader.readline()
        if not size_line:
            return
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return
        chunk = await reader.readexactly(size)
        await reader.readexactly(2)  # CRLF after each chunk
        yield chunk


async def events(host: str, port: int, token: str) -> AsyncIterator[Event]:
    """Each SSE event as it arrives (comments and heartbeats skipped)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            (
                f"GET {STREAM_PATH} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"alert stream refused: {status.decode(errors='replace').strip()}")
        headers = b""
        while (header := await reader.readline()) not in (b"\r\n", b""):
            headers += header.lower()
        if b"transfer-encoding: chunked" not in headers:
            raise RuntimeError("alert stream: expected a chunked response")
        pending, name = b"", "message"
        data: list[str] = []
        async for chunk in _chunks(reader):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                line = raw.rstrip(b"\r").decode()
                if not line:
                    if data:
                        yield Event(name, json.loads("\n".join(data)), time.time())
                    name, data = "message", []
                elif line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())
    finally:
        writer.close()
