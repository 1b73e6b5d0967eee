"""Differencing across projects and groupings: before a cell is released, its patient set is
compared with every cell released before for the same code and overlapping time (any project,
any purpose, any grouping, any bucket size); a cell whose set differs from one of them by 1 to
k-1 patients is suppressed, since the two cells' difference would describe those few.

Cost: candidates come from an index on (code, bucket_start, patients) and must differ in size
by fewer than k (a symmetric difference is at least the size difference), so only near-equal
cells of overlapping time have their memberships read, each one index range of the earlier
release's per-day bitmaps. Recording a release writes one row per released cell and one
bitmap row per (patient, day, group) with a released cell, as `research_patient_days` does.
Differentially private releases are neither checked nor recorded: DP composes across
releases through the per-patient epsilon cap instead.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

Conn = psycopg.AsyncConnection[Any]
GroupBy = Literal["none", "age_band", "sex", "condition"]
_LOCK_CLASS = 7_301_944
#: the widest bucket a project may have (168 h), bounding how far back an overlapping cell starts
WIDEST = timedelta(hours=168)
REASON = "differs from a cell released before (any project or grouping) by fewer than {k} patients"

_CANDIDATES = """
SELECT t.bucket, t.grp, t.n, o.release_id, o.bucket_start AS old_bucket, o.grp AS old_grp, o.patients AS old_n
FROM unnest(%(buckets)s::timestamptz[], %(groups)s::text[], %(ns)s::int[]) AS t(bucket, grp, n)
JOIN research_released_cells o
  ON o.code = %(code)s
 AND o.bucket_start > t.bucket - %(widest)s AND o.bucket_start < t.bucket + %(size)s
 AND o.bucket_end > t.bucket
 AND o.patients > t.n - %(k)s AND o.patients < t.n + %(k)s
"""

#: members of a candidate new cell (from `cell_members`) also in the earlier cell
_COMMON = """
SELECT c.i, count(r.patient_id)::int AS common
FROM unnest(%(i)s::int[], %(buckets)s::timestamptz[], %(groups)s::text[], %(releases)s::int8[],
            %(old_buckets)s::timestamptz[], %(old_groups)s::text[])
     AS c(i, bucket, grp, release_id, old_bucket, old_grp)
LEFT JOIN cell_members m ON m.bucket = c.bucket AND m.grp = c.grp
LEFT JOIN research_released_members r
  ON r.release_id = c.release_id AND r.grp = c.old_grp AND r.patient_id = m.patient_id
 AND r.day = (c.old_bucket AT TIME ZONE 'UTC')::date
 AND r.hours & (1 << extract(hour FROM c.old_bucket AT TIME ZONE 'UTC')::int) <> 0
GROUP BY c.i
"""

_RECORD_CELLS = """
INSERT INTO research_released_cells (release_id, code, bucket_start, bucket_end, grp, patients)
SELECT %(release)s, %(code)s, t.bucket, t.bucket + %(size)s, t.grp, t.n
FROM unnest(%(buckets)s::timestamptz[], %(groups)s::text[], %(ns)s::int[]) AS t(bucket, grp, n)
"""

#: the per-patient scan's members, as day bitmaps
_RECORD_SCANNED = """
INSERT INTO research_released_members (release_id, grp, day, patient_id, hours)
SELECT %(release)s, m.grp, (m.bucket AT TIME ZONE 'UTC')::date, m.patient_id,
       bit_or(1 << extract(hour FROM m.bucket AT TIME ZONE 'UTC')::int)
FROM cell_members m
JOIN unnest(%(buckets)s::timestamptz[], %(groups)s::text[]) AS r(bucket, grp)
  ON r.bucket = m.bucket AND r.grp = m.grp
GROUP BY 1, 2, 3, 4
"""

_DAY_GROUP = {"none": "'all'", "sex": "p.sex", "age_band": "research_age_band(p.birth_date, s.day)"}

#: the rollup path's members: each eligible patient's day bitmap masked by the released hours
_RECORD_FAST = """
INSERT INTO research_released_members (release_id, grp, day, patient_id, hours)
SELECT %(release)s, r.grp, s.day, s.patient_id, s.hours & r.mask
FROM research_patient_days s
JOIN unnest(%(eligible)s::uuid[]) AS e(id) ON e.id = s.patient_id
JOIN patients p ON p.id = s.patient_id
JOIN unnest(%(masks_groups)s::text[], %(days)s::date[], %(masks)s::int[]) AS r(grp, day, mask)
  ON r.day = s.day AND r.grp = {group}
WHERE s.purpose = %(purpose)s AND s.code = %(code)s AND s.day >= %(first)s AND s.day <= %(last)s
  AND s.hours & r.mask <> 0
"""

#: `cell_members` of some hourly cells from the per-day bitmaps (the rollup path)
_FAST_MEMBERS = """
CREATE TEMP TABLE cell_members ON COMMIT DROP AS
SELECT r.bucket, r.grp, s.patient_id
FROM unnest(%(buckets)s::timestamptz[], %(groups)s::text[]) AS r(bucket, grp)
JOIN research_patient_days s
  ON s.day = (r.bucket AT TIME ZONE 'UTC')::date
 AND s.hours & (1 << extract(hour FROM r.bucket AT TIME ZONE 'UTC')::int) <> 0
JOIN unnest(%(eligible)s::uuid[]) AS e(id) ON e.id = s.patient_id
JOIN patients p ON p.id = s.patient_id
WHERE s.purpose = %(purpose)s AND s.code = %(code)s AND r.grp = {group}
"""


async def lock(conn: Conn, code: str) -> None:
    """Serialise checked releases of one code across projects, so two cannot pass together."""
    await conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_CLASS, code))


async def candidates(
    conn: Conn, *, code: str, size: timedelta, cells: list[tuple[datetime, str, int]], k: int
) -> list[dict[str, Any]]:
    """Pairs (new cell, earlier released cell) of overlapping time and near-equal size."""
    if not cells:
        return []
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            _CANDIDATES,
            {
                "buckets": [b for b, _, _ in cells],
                "groups": [g for _, g, _ in cells],
                "ns": [n for _, _, n in cells],
                "code": code,
                "widest": WIDEST,
                "size": size,
                "k": k,
            },
        )
        return await cur.fetchall()


async def near_duplicates(
    conn: Conn, pairs: list[dict[str, Any]], *, k: int
) -> dict[tuple[datetime, str], str]:
    """Cells to suppress, (bucket, group) -> why; `cell_members` must hold the new cells of `pairs`."""
    if not pairs:
        return {}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            _COMMON,
            {
                "i": list(range(len(pairs))),
                "buckets": [p["bucket"] for p in pairs],
                "groups": [p["grp"] for p in pairs],
                "releases": [p["release_id"] for p in pairs],
                "old_buckets": [p["old_bucket"] for p in pairs],
                "old_groups": [p["old_grp"] for p in pairs],
            },
        )
        common = {r["i"]: r["common"] for r in await cur.fetchall()}
    out = {}
    for i, p in enumerate(pairs):
        if 0 < p["n"] + p["old_n"] - 2 * common[i] < k:
            out[(p["bucket"], p["grp"])] = REASON.format(k=k)
    return out


async def fast_cell_members(
    conn: Conn,
    *,
    purpose: str,
    code: str,
    group_by: GroupBy,
    eligible: list[UUID],
    cells: list[tuple[datetime, str]],
) -> None:
    """`cell_members` of the given hourly cells from the per-day bitmaps, as the scan makes it."""
    async with conn.cursor() as cur:
        await cur.execute("DROP TABLE IF EXISTS cell_members")
        await cur.execute(
            _FAST_MEMBERS.format(group=_DAY_GROUP[group_by]).encode(),
            {
                "buckets": [b for b, _ in cells],
                "groups": [g for _, g in cells],
                "eligible": eligible,
                "purpose": purpose,
                "code": code,
            },
        )


async def record(
    conn: Conn,
    *,
    release_id: int,
    code: str,
    size: timedelta,
    released: list[tuple[datetime, str, int]],
    fast: dict[str, Any] | None,
) -> None:
    """Keep the released cells and their members. `fast`: purpose, group_by and eligible of a
    rollup-path release (members from the day bitmaps); None: from `cell_members`."""
    if not released:
        return
    buckets, groups = [b for b, _, _ in released], [g for _, g, _ in released]
    async with conn.cursor() as cur:
        await cur.execute(
            _RECORD_CELLS,
            {
                "release": release_id,
                "code": code,
                "size": size,
                "buckets": buckets,
                "groups": groups,
                "ns": [n for _, _, n in released],
            },
        )
        if fast is None:
            await cur.execute(_RECORD_SCANNED, {"release": release_id, "buckets": buckets, "groups": groups})
            return
        masks: dict[tuple[str, Any], int] = {}
        for bucket, grp in zip(buckets, groups, strict=True):
            at = bucket.astimezone(UTC)
            masks[(grp, at.date())] = masks.get((grp, at.date()), 0) | (1 << at.hour)
        await cur.execute(
            _RECORD_FAST.format(group=_DAY_GROUP[fast["group_by"]]).encode(),
            {
                "release": release_id,
                "eligible": fast["eligible"],
                "masks_groups": [g for g, _ in masks],
                "days": [d for _, d in masks],
                "masks": list(masks.values()),
                "purpose": fast["purpose"],
                "code": code,
                "first": min(d for _, d in masks),
                "last": max(d for _, d in masks),
            },
        )
