"""A small Server-Sent Events reader for tests: httpx streaming plus the text/event-stream rules."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Message:
    event: str = "message"
    data: str = ""
    id: str | None = None
    comment: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


async def messages(response: httpx.Response) -> AsyncIterator[Message]:
    """Events and comments as they arrive (comments as messages with `comment` set)."""
    current = Message()
    data: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                current.data = "\n".join(data)
                yield current
            current, data = Message(), []
            continue
        if line.startswith(":"):
            yield Message(event="", comment=line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            current.event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            current.id = value


@dataclass
class Listener:
    """Collects one stream's messages in the background."""

    received: list[Message] = field(default_factory=list)
    status: int | None = None
    task: asyncio.Task[None] | None = None

    def events(self, kind: str = "alert") -> list[Message]:
        return [m for m in self.received if m.event == kind]

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


def listen(client: httpx.AsyncClient, token: str, last_event_id: str | None = None) -> Listener:
    listener = Listener()
    headers = {"Authorization": f"Bearer {token}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id

    async def run() -> None:
        timeout = httpx.Timeout(10, read=None)
        url = "/api/v1/alerts/stream"
        async with client.stream("GET", url, headers=headers, timeout=timeout) as response:
            listener.status = response.status_code
            async for message in messages(response):
                listener.received.append(message)

    listener.task = asyncio.create_task(run())
    return listener
