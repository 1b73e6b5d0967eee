"""Dead letters: what could not be stored as a reading, kept with its reason and raw bytes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from telehealth.contracts import DeadLetter


async def store(conn: psycopg.AsyncConnection[Any], letters: list[tuple[DeadLetter, str]]) -> None:
    """(letter, origin) pairs; a letter whose origin is already stored (a replay) is skipped."""
    if not letters:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            """INSERT INTO dead_letters (reason, detail, source_topic, device_id, received_at, raw,
                                         origin, raw_size, raw_sha256)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (origin) DO NOTHING""",
            [
                (
                    letter.reason.value,
                    letter.detail,
                    letter.source_topic,
                    letter.device_id,
                    letter.received_at,
                    letter.raw,
                    origin,
                    letter.size,
                    letter.sha256,
                )
                for letter, origin in letters
            ],
        )


async def count_by_reason(
    conn: psycopg.AsyncConnection[Any], device_ids: list[str], since: datetime
) -> dict[str, int]:
    """Dead letters of these devices received since `since`, counted per reason."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(
            """SELECT reason, count(*) FROM dead_letters
               WHERE device_id = ANY(%s) AND received_at >= %s GROUP BY reason""",
            (device_ids, since),
        )
        return {r[0]: int(r[1]) for r in await cur.fetchall()}
