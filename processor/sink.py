"""Batched, idempotent writes of readings: COPY into staging, then insert-on-conflict.

`add()` buffers; `flush()` writes inside the caller's transaction and returns the keys
that were new, so duplicates (redelivery, replay) are neither stored nor alarmed on twice.
The new observations are also queued in `consent_pending` by the same statement: the consent
step decides them later, in its own transaction (`processor.consent`).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import tuple_row

from processor.normalise import NormalisedObservation
from telehealth.contracts import AcceptedReading
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


class ReadingSink:
    def __init__(self) -> None:
        self._receipts: list[tuple[Any, ...]] = []
        self._rows: list[tuple[Any, ...]] = []
        self._keys: set[Key] = set()

    def __len__(self) -> int:
        return len(self._receipts)

    def add(
        self, reading: AcceptedReading, patient_id: UUID, observations: list[NormalisedObservation]
    ) -> bool:
        """Buffer a reading; False if the same (device_id, seq) is already buffered."""
        key = (reading.device_id, reading.seq)
        if key in self._keys:
            return False
        self._keys.add(key)
        self._receipts.append(
            (
                reading.device_id,
                reading.seq,
                patient_id,
                reading.measured_at,
                reading.received_at,
                reading.battery_pct,
                reading.context,
            )
        )
        for o in observations:
            self._rows.append(
                (
                    o.patient_id,
                    o.measured_at,
                    o.code,
                    o.value,
                    o.unit,
                    o.loinc,
                    o.source,
                    o.device_id,
                    o.seq,
                    o.received_at,
                    [q.value for q in o.quality],
                )
            )
        return True

    async def flush(self, conn: psycopg.AsyncConnection[Any]) -> set[Key]:
        """Write the buffer in the open transaction; returns the (device_id, seq) newly stored."""
        if not self._receipts:
            return set()
        async with conn.cursor(row_factory=tuple_row) as cur:
            await copy_in(cur, RECEIPTS, self._receipts)
            await copy_in(cur, READINGS, self._rows)
            await cur.execute(_MERGE)
            fresh = {(r[0], r[1]) for r in await cur.fetchall()}
        self._receipts.clear()
        self._rows.clear()
        self._keys.clear()
        return fresh
