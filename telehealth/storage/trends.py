"""The newest CGM trend per device (`glucose_trends`), written by the processor in the
transaction that stores the reading it was derived from; the dashboard draws the forecast
from it (`telehealth.storage.patient_now`), so the clinician sees what the alarm judged."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

import psycopg
from psycopg.rows import tuple_row


class Trend(NamedTuple):
    device_id: str
    seq: int
    patient_id: UUID
    measured_at: datetime
    level: float
    rate_per_min: float


async def store(conn: psycopg.AsyncConnection[Any], trends: list[Trend]) -> None:
    """Keep each device's newest trend; an older one (a backlog judged later) never replaces
    a newer one."""
    if not trends:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            """INSERT INTO glucose_trends (device_id, seq, patient_id, measured_at, level, rate_per_min)
               VALUES (%s, %s, %s, %s, %s, %s)
               ON CONFLICT (device_id) DO UPDATE
                 SET seq = EXCLUDED.seq, patient_id = EXCLUDED.patient_id,
                     measured_at = EXCLUDED.measured_at, level = EXCLUDED.level,
                     rate_per_min = EXCLUDED.rate_per_min
                 WHERE EXCLUDED.measured_at >= glucose_trends.measured_at""",
            trends,
        )


async def cgm_before(
    conn: psycopg.AsyncConnection[Any], patient_id: UUID, start: datetime, end: datetime
) -> list[tuple[datetime, float]]:
    """The patient's CGM glucose in [start, end), oldest first, without implausible, future
    or artefact readings (they are not data): a trend window rebuilt after a restart."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(
            """SELECT measured_at, value FROM readings
               WHERE patient_id = %s AND code = 'glucose' AND source = 'cgm'
                 AND NOT quality && '{implausible,future,artefact}'
                 AND measured_at >= %s AND measured_at < %s ORDER BY measured_at""",
            (patient_id, start, end),
        )
        return [(r[0], r[1]) for r in await cur.fetchall()]
