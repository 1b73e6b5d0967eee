"""Writing readings: COPY into per-session staging tables, then one statement that inserts the
new receipts, their observations and their consent queue entries, skipping duplicates.

The new observations are queued in `consent_pending` by the same statement: the consent step
decides them later, in its own transaction (`processor.consent`).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import tuple_row

from telehealth.storage.bulk import Columns, copy_in, remember_small_values

Key = tuple[str, int]

_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS staging_receipts
    (LIKE reading_receipts INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS staging_readings
    (LIKE readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
"""


async def prepare(conn: psycopg.AsyncConnection[Any]) -> None:
    """Create this session's staging tables, committed, once per new pooled connection (not
    in each batch's transaction: a batch that rolls back would take them with it), and let
    its COPYs reuse the bytes of repeated `text[]` and `jsonb` values."""
    remember_small_values(conn)
    await conn.execute(_STAGING)
    await conn.commit()


RECEIPTS = Columns(
    "staging_receipts",
    (
        ("device_id", "text"),
        ("seq", "int8"),
        ("patient_id", "uuid"),
        ("measured_at", "timestamptz"),
        ("received_at", "timestamptz"),
        ("battery_pct", "int2"),
        ("context", "jsonb"),
    ),
)
READINGS = Columns(
    "staging_readings",
    (
        ("patient_id", "uuid"),
        ("measured_at", "timestamptz"),
        ("code", "text"),
        ("value", "float8"),
        ("unit", "text"),
        ("loinc", "text"),
        ("source", "text"),
        ("device_id", "text"),
        ("seq", "int8"),
        ("received_at", "timestamptz"),
        ("quality", "text[]"),
    ),
)
_MERGE = f"""
WITH fresh AS (
    INSERT INTO reading_receipts ({RECEIPTS.names})
    SELECT {RECEIPTS.names} FROM staging_receipts
    ON CONFLICT (device_id, seq) DO NOTHING
    RETURNING device_id, seq
), stored AS (
    INSERT INTO readings ({READINGS.names})
    SELECT {", ".join("s." + name for name, _ in READINGS.columns)}
    FROM staging_readings s JOIN fresh f ON f.device_id = s.device_id AND f.seq = s.seq
    RETURNING 1
), undecided AS (
    INSERT INTO consent_pending (device_id, seq, code, patient_id, measured_at, value, quality)
    SELECT s.device_id, s.seq, s.code, s.patient_id, s.measured_at, s.value, s.quality
    FROM staging_readings s JOIN fresh f ON f.device_id = s.device_id AND f.seq = s.seq
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT device_id, seq FROM fresh
"""


async def merge(
    conn: psycopg.AsyncConnection[Any], receipts: list[tuple[Any, ...]], rows: list[tuple[Any, ...]]
) -> set[Key]:
    """Write receipts (RECEIPTS' columns) and observations (READINGS' columns) in the open
    transaction; returns the (device_id, seq) newly stored."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await copy_in(cur, RECEIPTS, receipts)
        await copy_in(cur, READINGS, rows)
        await cur.execute(_MERGE)
        return {(r[0], r[1]) for r in await cur.fetchall()}


async def received_seqs(
    conn: psycopg.AsyncConnection[Any], device_ids: list[str], low: int
) -> dict[str, list[int]]:
    """The sequence numbers from `low` up that have a receipt, per device."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(
            """SELECT device_id, array_agg(seq) FROM reading_receipts
               WHERE device_id = ANY(%s) AND seq >= %s GROUP BY device_id""",
            (device_ids, low),
        )
        return {r[0]: list(r[1]) for r in await cur.fetchall()}
