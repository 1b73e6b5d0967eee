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
from telehealth.nightscout import add_deltas, to_entry

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


async def entries(
    conn: psycopg.AsyncConnection[Any], patient_id: UUID, query: EntryQuery
) -> list[dict[str, Any]]:
    """Implausible values are left out, as in the API's buckets: sensor error codes are not glucose.
    CGM entries without an uploaded `delta` get one computed (`telehealth.nightscout.add_deltas`)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """SELECT r.device_id, r.seq, r.measured_at, r.value, r.source, rr.context
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
               ORDER BY r.measured_at DESC, r.device_id, r.seq
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
    found = [
        to_entry(
            device_id=row["device_id"],
            seq=row["seq"],
            measured_at=row["measured_at"],
            value_mmol=row["value"],
            source=row["source"],
            context=row["context"],
        )
        for row in rows
    ]
    add_deltas(found)
    return found[: query.count]
