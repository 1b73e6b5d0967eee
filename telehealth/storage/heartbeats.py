"""The `service_heartbeats` table: one row per service instance (`telehealth.heartbeat`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import tuple_row

_BEAT = """
INSERT INTO service_heartbeats (service, instance, beat_at, progress_at, backlog)
VALUES (%(service)s, %(instance)s, now(), now() - make_interval(secs => %(stalled)s), %(backlog)s)
ON CONFLICT (service, instance) DO UPDATE
SET beat_at = excluded.beat_at, progress_at = excluded.progress_at, backlog = excluded.backlog
"""


async def write(
    conn: psycopg.AsyncConnection[Any], service: str, instance: str, *, stalled: float, backlog: int
) -> None:
    """This instance beats now, with `backlog` waiting and no progress for `stalled` seconds."""
    params = {"service": service, "instance": instance, "stalled": stalled, "backlog": backlog}
    await conn.execute(_BEAT, params)


async def recent(
    conn: psycopg.AsyncConnection[Any], within: timedelta
) -> tuple[datetime, list[tuple[str, str, datetime, datetime, int]]]:
    """The database's now and the rows (service, instance, beat_at, progress_at, backlog) that
    beat within `within` of it."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute("SELECT now()")
        row = await cur.fetchone()
        assert row is not None
        now: datetime = row[0]
        await cur.execute(
            """SELECT service, instance, beat_at, progress_at, backlog FROM service_heartbeats
               WHERE beat_at > %s ORDER BY service, instance""",
            (now - within,),
        )
        return now, [(r[0], r[1], r[2], r[3], r[4]) for r in await cur.fetchall()]
