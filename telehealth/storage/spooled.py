"""What the gateway's keeper asks before it drops a spooled record, and the HTTP intake before
it answers an upload: does the store hold it?

Each query takes one JSON array of rows (spool row id first) and returns the spool ids the
store holds. JSON, encoded by msgspec in C, because psycopg dumps a list parameter element by
element in Python: 1.7 µs a key against 0.2, and the keeper asks about every spooled record at
least once. What the store holds: a reading once its (device, seq) has a receipt or the
processor refused it as a dead letter of its own (`orphan:`, `revoked:`, `reassigned:`
origins); a dead letter once its origin is stored; a status once the device's state is as new
or newer (or the device is gone).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import psycopg
from psycopg.rows import tuple_row

_READINGS = """
SELECT s.i FROM (
    SELECT (e->>0)::bigint AS i, e->>1 AS d, (e->>2)::bigint AS q FROM jsonb_array_elements(%s::jsonb) e
) s
WHERE EXISTS (SELECT 1 FROM reading_receipts r WHERE r.device_id = s.d AND r.seq = s.q)
   OR EXISTS (
        SELECT 1 FROM dead_letters l
        WHERE l.origin IN ('orphan:' || s.d || ':' || s.q, 'revoked:' || s.d || ':' || s.q,
                           'reassigned:' || s.d || ':' || s.q))
"""
_LETTERS = """
SELECT s.i FROM (SELECT (e->>0)::bigint AS i, e->>1 AS o FROM jsonb_array_elements(%s::jsonb) e) s
WHERE EXISTS (SELECT 1 FROM dead_letters l WHERE l.origin = 'letter:' || s.o)
"""
_STATUSES = """
SELECT s.i FROM (
    SELECT (e->>0)::bigint AS i, e->>1 AS d, (e->>2)::timestamptz AS t FROM jsonb_array_elements(%s::jsonb) e
) s
WHERE NOT EXISTS (SELECT 1 FROM devices v WHERE v.id = s.d AND (v.state_at IS NULL OR v.state_at < s.t))
"""
_ROWS = msgspec.json.Encoder()


async def _held(conn: psycopg.AsyncConnection[Any], query: str, *columns: Sequence[Any]) -> list[int]:
    rows = _ROWS.encode(list(zip(*columns, strict=True))).decode()
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(query, (rows,))
        return [row[0] for row in await cur.fetchall()]


async def readings_held(
    conn: psycopg.AsyncConnection[Any], ids: list[int], device_ids: list[str | None], seqs: list[int | None]
) -> list[int]:
    return await _held(conn, _READINGS, ids, device_ids, seqs)


async def letters_held(
    conn: psycopg.AsyncConnection[Any], ids: list[int], origins: list[str | None]
) -> list[int]:
    return await _held(conn, _LETTERS, ids, origins)


async def statuses_held(
    conn: psycopg.AsyncConnection[Any], ids: list[int], device_ids: list[str | None], times: list[str | None]
) -> list[int]:
    return await _held(conn, _STATUSES, ids, device_ids, times)


async def missing(
    conn: psycopg.AsyncConnection[Any], readings: Sequence[tuple[str, int]], letters: Sequence[str]
) -> int:
    """How many of these readings (device, seq) and dead letters (by id) the store does not hold."""
    left = 0
    if readings:
        ids = list(range(len(readings)))
        held = await readings_held(conn, ids, [d for d, _ in readings], [q for _, q in readings])
        left += len(readings) - len(held)
    if letters:
        held = await letters_held(conn, list(range(len(letters))), list(letters))
        left += len(letters) - len(held)
    return left
