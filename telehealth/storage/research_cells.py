"""Raw aggregate cells from the per-patient hourly rollup, one value per patient per cell
(any bucket size, any cohort; `telehealth.storage.research_hourly` is the fast path for hourly ones).

Runs inside the caller's transaction: `cell_members` (a temporary table dropped at commit)
holds which patient is in which cell, so the release can record its contributors without
a second pass over the rollup.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from telehealth.research.disclosure import READINGS_PER_PATIENT_HOUR, RawCell, step_of

Conn = psycopg.AsyncConnection[Any]
GroupBy = Literal["none", "age_band", "sex", "condition"]
#: a patient-day row's group, in SQL over `research_patient_days s` joined to `patients p`
DAY_GROUP = {"none": "'all'", "sex": "p.sex", "age_band": "research_age_band(p.birth_date, s.day)"}


def day_masks(released: list[tuple[datetime, str]]) -> dict[tuple[str, date], int]:
    """(group, UTC day) -> bitmap of the released cells' start hours."""
    masks: dict[tuple[str, date], int] = {}
    for bucket, grp in released:
        at = bucket.astimezone(UTC)
        masks[(grp, at.date())] = masks.get((grp, at.date()), 0) | (1 << at.hour)
    return masks


_AGE = "date_part('year', age(m.bucket::date, p.birth_date))"
GROUPS: dict[str, str] = {
    "none": "'all'",
    "sex": "p.sex",
    "age_band": (
        f"CASE WHEN {_AGE} < 18 THEN '0-17' WHEN {_AGE} < 40 THEN '18-39' WHEN {_AGE} < 60 THEN '40-59'"
        f" WHEN {_AGE} < 80 THEN '60-79' ELSE '80+' END"
    ),
    # a patient with two conditions is in both groups; none recorded: 'none'
    "condition": "unnest(CASE WHEN cardinality(p.conditions) = 0 THEN ARRAY['none'] ELSE p.conditions END)",
}

_MEMBERS = """
CREATE TEMP TABLE cell_members ON COMMIT DROP AS
WITH m AS (
    SELECT date_bin(%(bucket)s, h.hour, TIMESTAMPTZ 'epoch') AS bucket, h.patient_id,
           least(sum(h.n), %(cap)s) AS n, sum(h.total) / sum(h.n) AS mean
    FROM research_hourly h JOIN unnest(%(patients)s::uuid[]) AS e(id) ON e.id = h.patient_id
    WHERE h.purpose = %(purpose)s AND h.code = %(code)s
      AND h.hour >= %(start)s AND h.hour < %(end)s
      AND NOT date_bin(%(bucket)s, h.hour, TIMESTAMPTZ 'epoch') = ANY(%(skip)s)
    GROUP BY 1, 2
)
SELECT m.bucket, {group} AS grp, m.patient_id, m.n, m.mean
FROM m JOIN patients p ON p.id = m.patient_id
"""

_CELLS = """
WITH bins AS (
    SELECT bucket, grp, floor(mean / %(step)s + 0.5)::int AS bin, count(*)::int AS k
    FROM cell_members GROUP BY 1, 2, 3
), histograms AS (
    SELECT bucket, grp, array_agg(bin ORDER BY bin) AS bins, array_agg(k ORDER BY bin) AS counts
    FROM bins GROUP BY 1, 2
)
SELECT bucket, grp, count(*) AS patients, sum(n) AS readings, avg(mean) AS mean, h.bins, h.counts
FROM cell_members JOIN histograms h USING (bucket, grp) GROUP BY bucket, grp, h.bins, h.counts
"""

_TOTALS = "SELECT bucket, count(DISTINCT patient_id) AS patients FROM cell_members GROUP BY bucket"


async def raw_cells(
    conn: Conn,
    *,
    purpose: str,
    code: str,
    bucket: timedelta,
    start: datetime,
    end: datetime,
    group_by: GroupBy,
    patients: list[UUID],
    skip: list[datetime] | None = None,
) -> tuple[list[RawCell], dict[datetime, int]]:
    """Cells and each bucket's distinct-patient total, except buckets in `skip` (released
    already); call inside a transaction."""
    cap = READINGS_PER_PATIENT_HOUR * max(1, int(bucket.total_seconds() // 3600))
    params = {
        "bucket": bucket,
        "cap": cap,
        "purpose": purpose,
        "code": code,
        "start": start,
        "end": end,
        "patients": patients,
        "step": step_of(code),
        "skip": skip or [],
    }
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("DROP TABLE IF EXISTS cell_members")
        await cur.execute(_MEMBERS.format(group=GROUPS[group_by]).encode(), params)
        await cur.execute(_CELLS, params)
        cells = [
            RawCell(
                bucket=r["bucket"],
                group=str(r["grp"]),
                patients=int(r["patients"]),
                readings=int(r["readings"]),
                mean=float(r["mean"]),
                histogram=tuple(zip(r["bins"], r["counts"], strict=True)),
            )
            for r in await cur.fetchall()
        ]
        await cur.execute(_TOTALS)
        totals = {r["bucket"]: int(r["patients"]) for r in await cur.fetchall()}
    return cells, totals


async def members(conn: Conn, released: list[tuple[datetime, str]]) -> list[UUID]:
    """Distinct patients in the released cells (after `raw_cells`, same transaction)."""
    if not released:
        return []
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """SELECT DISTINCT c.patient_id FROM cell_members c
               JOIN unnest(%s::timestamptz[], %s::text[]) AS r(bucket, grp)
                 ON r.bucket = c.bucket AND r.grp = c.grp""",
            ([b for b, _ in released], [g for _, g in released]),
        )
        return [r["patient_id"] for r in await cur.fetchall()]
