"""A patient's glucose readings as Nightscout followers ask for them: newest first, by count
and time range, within the window every stored reading satisfies (telehealth.bounds)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from telehealth.bounds import EARLIEST, MAX_AHEAD
from telehealth.nightscout import add_deltas, ms_of, to_entry

#: rows read beyond `count` so that the oldest entries served still get a `delta`
_LOOKBACK = 3


@dataclass(frozen=True)
class EntryQuery:
    count: int = 10
    #: "sgv" (CGM and unlabelled glucose), "mbg" (meter), or None for both
    entry_type: str | None = None
    since: datetime | None = None  # inclusive
    after: datetime | None = None  # exclusive
    until: datetime | None = None  # inclusive
    before: datetime | None = None  # exclusive
    ascending: bool = False  # oldest first (API v3's `sort=date`)


async def entries(
    conn: psycopg.AsyncConnection[Any], patient_id: UUID, query: EntryQuery
) -> list[dict[str, Any]]:
    """Implausible values are left out, as in the API's buckets: sensor error codes are not glucose.
    CGM entries without an uploaded `delta` get one computed (`telehealth.nightscout.add_deltas`)."""
    order = (
        "r.measured_at, r.device_id, r.seq" if query.ascending else "r.measured_at DESC, r.device_id, r.seq"
    )
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"""SELECT r.device_id, r.seq, r.measured_at, r.value, r.source, rr.context, rr.stored_at
               FROM readings r
               LEFT JOIN reading_receipts rr ON rr.device_id = r.device_id AND rr.seq = r.seq
               WHERE r.patient_id = %(p)s AND r.code = 'glucose'
                 AND NOT ('implausible' = ANY (r.quality))
                 AND r.measured_at >= %(earliest)s AND r.measured_at <= now() + %(ahead)s
                 AND (%(type)s::text IS NULL
                      OR (%(type)s = 'mbg') = (r.source IS NOT DISTINCT FROM 'smbg'))
                 AND (%(since)s::timestamptz IS NULL OR r.measured_at >= %(since)s)
                 AND (%(after)s::timestamptz IS NULL OR r.measured_at > %(after)s)
                 AND (%(until)s::timestamptz IS NULL OR r.measured_at <= %(until)s)
                 AND (%(before)s::timestamptz IS NULL OR r.measured_at < %(before)s)
               ORDER BY {order}
               LIMIT %(count)s""",
            {
                "p": patient_id,
                "earliest": EARLIEST,
                "ahead": MAX_AHEAD,
                "type": query.entry_type,
                "since": query.since,
                "after": query.after,
                "until": query.until,
                "before": query.before,
                "count": query.count + _LOOKBACK,
            },
        )
        rows = await cur.fetchall()
    found = [_entry(row) for row in rows]
    if query.ascending:
        add_deltas(found[::-1])
    else:
        add_deltas(found)
    return found[: query.count]


def _entry(row: dict[str, Any]) -> dict[str, Any]:
    """The entry, with API v3's `identifier` and server times (the receipt's `stored_at`)."""
    entry = to_entry(
        device_id=row["device_id"],
        seq=row["seq"],
        measured_at=row["measured_at"],
        value_mmol=row["value"],
        source=row["source"],
        context=row["context"],
    )
    stored = ms_of(row["stored_at"]) if row.get("stored_at") is not None else entry["date"]
    entry.update(identifier=entry["_id"], srvCreated=stored, srvModified=stored, isValid=True)
    return entry


async def entries_stored_since(
    conn: psycopg.AsyncConnection[Any], patient_id: UUID, since: datetime, limit: int
) -> list[dict[str, Any]]:
    """Glucose entries stored after `since`, in the order stored (API v3's history)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """SELECT r.device_id, r.seq, r.measured_at, r.value, r.source, rr.context, rr.stored_at
               FROM reading_receipts rr
               JOIN readings r ON r.device_id = rr.device_id AND r.seq = rr.seq AND r.code = 'glucose'
               WHERE rr.patient_id = %(p)s AND rr.stored_at > %(since)s
                 AND NOT ('implausible' = ANY (r.quality))
                 AND r.measured_at >= %(earliest)s AND r.measured_at <= now() + %(ahead)s
               ORDER BY rr.stored_at, rr.device_id, rr.seq
               LIMIT %(limit)s""",
            {"p": patient_id, "since": since, "earliest": EARLIEST, "ahead": MAX_AHEAD, "limit": limit},
        )
        rows = await cur.fetchall()
    return [_entry(row) for row in rows]


async def entries_last_stored(conn: psycopg.AsyncConnection[Any], patient_id: UUID) -> datetime | None:
    cur = await conn.execute(
        "SELECT max(stored_at) AS m FROM reading_receipts WHERE patient_id = %s", (patient_id,)
    )
    row = await cur.fetchone()
    value = None if row is None else (row["m"] if isinstance(row, dict) else row[0])
    return value if isinstance(value, datetime) else None


async def is_stored(conn: psycopg.AsyncConnection[Any], device_id: str, seq: int) -> bool:
    cur = await conn.execute(
        "SELECT 1 FROM reading_receipts WHERE device_id = %s AND seq = %s", (device_id, seq)
    )
    return await cur.fetchone() is not None
