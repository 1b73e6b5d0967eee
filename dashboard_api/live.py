"""One LISTEN connection per API process fans alert events out to the SSE streams.

PostgreSQL notifies `alert_events` at every commit that added events; the hub then reads
everything after the last position it saw (one indexed query, whatever the number of
clients) and hands each event to the subscribers whose care teams include the patient's.
A missed or coalesced notification costs nothing: each read takes all that is new, and a
poll every `poll_s` covers a notification lost with a dropped connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import psycopg

from telehealth.storage.alert_stream import events_after, head, listen

log = logging.getLogger(__name__)
#: How the hub's LISTEN connection shows in pg_stat_activity.
APPLICATION_NAME = "telehealth-alert-hub"


@dataclass(eq=False)
class Subscription:
    """One client's queue. Overflowing (a client too slow) ends it; the client resumes."""

    teams: frozenset[str]
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(maxsize=1000))
    overflowed: bool = False

    def offer(self, event: dict[str, Any]) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True


class AlertHub:
    def __init__(self, database_url: str, *, poll_s: float = 5.0, retry_s: float = 1.0) -> None:
        self._url = database_url
        self._poll_s = poll_s
        self._retry_s = retry_s
        self._subscribers: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._position: int | None = None

    def subscribe(self, teams: frozenset[str]) -> Subscription:
        subscription = Subscription(teams)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="alert-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self._listen()
            except (psycopg.Error, OSError) as exc:
                log.warning("alert hub lost its database connection (%s); reconnecting", exc)
                await asyncio.sleep(self._retry_s)

    async def _listen(self) -> None:
        async with await psycopg.AsyncConnection.connect(
            self._url, autocommit=True, application_name=APPLICATION_NAME
        ) as conn:
            await listen(conn)
            if self._position is None:  # first start: only what commits from now on
                self._position = await head(conn)
            while True:
                # LISTEN is active before this read, so a commit after it also notifies.
                await self._read(conn)
                async for _ in conn.notifies(timeout=self._poll_s, stop_after=1):
                    pass

    async def _read(self, conn: psycopg.AsyncConnection[Any]) -> None:
        assert self._position is not None
        while True:
            rows = await events_after(conn, self._position, None)
            for row in rows:
                self._position = row["pos"]
                for subscription in list(self._subscribers):
                    if row["care_team"] in subscription.teams:
                        subscription.offer(row)
            if len(rows) < 500:
                return
