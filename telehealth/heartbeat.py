"""Service heartbeats: each gateway and processor reports its backlog and last progress.

A service that is alive but holding work it cannot move (acks held while Kafka refuses,
a batch retried while the database is away) still beats; `/readyz` reads the rows and
calls the pipeline stalled when an instance has a backlog and no progress for a while, or
when no instance of a service beats at all. Times are the database's clock, so instances
on other hosts need no synchronised clocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg

from telehealth.storage import heartbeats

log = logging.getLogger(__name__)

PIPELINE = ("gateway", "processor")


def instance_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Progress:
    """Work waiting in a service (`count`) and when it last moved any (monotonic clock)."""

    count: Callable[[], int] = lambda: 0
    moved_at: float = field(default_factory=time.monotonic)

    def moved(self) -> None:
        self.moved_at = time.monotonic()

    def sample(self) -> tuple[int, float]:
        """Backlog and seconds without progress; an idle service is never stalled."""
        backlog = self.count()
        if backlog <= 0:
            self.moved()
            return 0, 0.0
        return backlog, max(0.0, time.monotonic() - self.moved_at)


async def beat(
    database_url: str, service: str, progress: Progress, stop: asyncio.Event, interval: float = 1.0
) -> None:
    """Write this instance's row every `interval` seconds until `stop`; rides out outages."""
    instance = instance_name()
    conn: psycopg.AsyncConnection[Any] | None = None
    try:
        while not stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = await psycopg.AsyncConnection.connect(
                        database_url, autocommit=True, connect_timeout=2
                    )
                backlog, stalled = progress.sample()
                await heartbeats.write(conn, service, instance, stalled=stalled, backlog=backlog)
            except psycopg.Error as exc:
                log.debug("heartbeat not written: %s", exc)
                if conn is not None:
                    await conn.close()
                conn = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
    finally:
        if conn is not None:
            await conn.close()


@dataclass(frozen=True)
class Beat:
    service: str
    instance: str
    beat_at: datetime
    progress_at: datetime
    backlog: int


async def recent(conn: psycopg.AsyncConnection[Any], within: timedelta) -> tuple[datetime, list[Beat]]:
    """The database's now and the rows that beat within `within` of it."""
    now, rows = await heartbeats.recent(conn, within)
    return now, [Beat(*r) for r in rows]


def assess(
    beats: Sequence[Beat],
    now: datetime,
    *,
    alive: timedelta,
    stall: timedelta,
    services: Sequence[str] = PIPELINE,
) -> dict[str, str]:
    """Per service "ok" or why not: no live instance, or one holding work without progress."""
    verdict: dict[str, str] = {}
    for service in services:
        mine = [b for b in beats if b.service == service]
        live = [b for b in mine if now - b.beat_at <= alive]
        if not live:
            if mine:
                quiet = min(now - b.beat_at for b in mine).total_seconds()
                verdict[service] = f"no heartbeat from any {service} for {quiet:.0f}s"
            else:
                verdict[service] = f"no {service} is running (no heartbeat)"
            continue
        stuck = [b for b in live if b.backlog > 0 and now - b.progress_at > stall]
        if stuck:
            b = stuck[0]
            verdict[service] = (
                f"stalled: {service} {b.instance} holds {b.backlog} message(s) "
                f"with no progress for {(now - b.progress_at).total_seconds():.0f}s"
            )
        else:
            verdict[service] = "ok"
    return verdict
