"""Differencing across projects and groupings: before a cell is released, its patient set is
compared with every cell released before for the same code and overlapping time (any project,
any purpose, any grouping, any bucket size); a cell whose set differs from one of them by 1 to
k-1 patients is suppressed, since the two cells' difference would describe those few.

Works on the transaction's `cell_members` (bucket, grp, patient_id) of the cells about to be
released. Cost: candidates come from an index on (code, bucket_start, patients) and must
differ in size by fewer than k (a symmetric difference is at least the size difference), so
only near-equal cells of overlapping time have their sets compared, one hash probe per member.
Differentially private releases are neither checked nor recorded: DP composes across releases
through the per-patient epsilon cap instead.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

Conn = psycopg.AsyncConnection[Any]
_LOCK_CLASS = 7_301_944

_CHECK = """
WITH new AS (
    SELECT bucket, grp, count(*)::int AS n, array_agg(patient_id) AS ids FROM cell_members GROUP BY 1, 2
)
SELECT DISTINCT new.bucket, new.grp
FROM new
JOIN research_released_cells o
  ON o.code = %(code)s
 AND o.bucket_start > new.bucket - %(widest)s AND o.bucket_start < new.bucket + %(size)s
 AND o.bucket_end > new.bucket
 AND o.patients > new.n - %(k)s AND o.patients < new.n + %(k)s
CROSS JOIN LATERAL (
    SELECT count(*)::int AS common FROM unnest(o.members) AS x(id) WHERE x.id = ANY(new.ids)
) i
WHERE new.n + o.patients - 2 * i.common BETWEEN 1 AND %(k)s - 1
"""

_RECORD = """
INSERT INTO research_released_cells (code, bucket_start, bucket_end, project_id, release_id, grp, patients,
                                     members)
SELECT %(code)s, m.bucket, m.bucket + %(size)s, %(project)s, %(release)s, m.grp, count(*),
       array_agg(m.patient_id ORDER BY m.patient_id)
FROM cell_members m
JOIN unnest(%(buckets)s::timestamptz[], %(groups)s::text[]) AS r(bucket, grp)
  ON r.bucket = m.bucket AND r.grp = m.grp
GROUP BY m.bucket, m.grp
"""

#: the widest bucket a project may have (168 h), bounding how far back an overlapping cell starts
WIDEST = timedelta(hours=168)
REASON = "differs from a cell released before (any project or grouping) by fewer than {k} patients"
GroupBy = Literal["none", "age_band", "sex", "condition"]


async def lock(conn: Conn, code: str) -> None:
    """Serialise checked releases of one code across projects, so two cannot pass together."""
    await conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_CLASS, code))


async def near_duplicates(
    conn: Conn, *, code: str, size: timedelta, k: int
) -> dict[tuple[datetime, str], str]:
    """Cells of `cell_members` to suppress: (bucket, group) -> why."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_CHECK, {"code": code, "size": size, "widest": WIDEST, "k": k})
        return {(r["bucket"], r["grp"]): REASON.format(k=k) for r in await cur.fetchall()}


async def record(
    conn: Conn,
    *,
    code: str,
    size: timedelta,
    project_id: int,
    release_id: int,
    released: list[tuple[datetime, str]],
) -> None:
    if not released:
        return
    await conn.execute(
        _RECORD,
        {
            "code": code,
            "size": size,
            "project": project_id,
            "release": release_id,
            "buckets": [b for b, _ in released],
            "groups": [g for _, g in released],
        },
    )


_FAST_MEMBERS = """
CREATE TEMP TABLE cell_members ON COMMIT DROP AS
SELECT (s.day::timestamp AT TIME ZONE 'UTC') + make_interval(hours => h.h) AS bucket, {group} AS grp,
       s.patient_id
FROM research_patient_days s
JOIN unnest(%(eligible)s::uuid[]) AS e(id) ON e.id = s.patient_id
JOIN patients p ON p.id = s.patient_id
CROSS JOIN generate_series(0, 23) AS h(h)
WHERE s.purpose = %(purpose)s AND s.code = %(code)s AND s.day >= %(first)s AND s.day <= %(last)s
  AND s.hours & (1 << h.h) <> 0
  AND (s.day::timestamp AT TIME ZONE 'UTC') + make_interval(hours => h.h) >= %(start)s
  AND (s.day::timestamp AT TIME ZONE 'UTC') + make_interval(hours => h.h) < %(end)s
  AND NOT (s.day::timestamp AT TIME ZONE 'UTC') + make_interval(hours => h.h) = ANY(%(skip)s)
"""
_DAY_GROUP = {"none": "'all'", "sex": "p.sex", "age_band": "research_age_band(p.birth_date, s.day)"}


async def fast_cell_members(
    conn: Conn,
    *,
    purpose: str,
    code: str,
    group_by: GroupBy,
    eligible: list[UUID],
    start: datetime,
    end: datetime,
    skip: list[datetime],
) -> None:
    """`cell_members` for hourly cells from the per-day bitmaps (the rollup path), as the
    per-patient scan makes it."""
    async with conn.cursor() as cur:
        await cur.execute("DROP TABLE IF EXISTS cell_members")
        await cur.execute(
            _FAST_MEMBERS.format(group=_DAY_GROUP[group_by]).encode(),
            {
                "eligible": eligible,
                "purpose": purpose,
                "code": code,
                "first": start.date(),
                "last": end.date(),
                "start": start,
                "end": end,
                "skip": skip,
            },
        )
