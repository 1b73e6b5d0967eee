"""Differencing across projects and groupings: before a cell is released, its patient set is
compared with every cell released before for the same code and overlapping time (any project,
any purpose, any grouping, any bucket size); a cell whose set differs from one of them by 1 to
k-1 patients is suppressed, since the two cells' difference would describe those few.

Cost: candidates come from an index on (code, bucket_start, patients) and must differ in size
by fewer than k (a symmetric difference is at least the size difference), so only near-equal
cells of overlapping time have their memberships read, each one index range of the earlier
release's per-day member arrays. Recording a release writes one row per released cell and
one row per (group, day) holding that day's members and their hour bitmaps.
Differentially private releases are neither checked nor recorded: DP composes across
releases through the per-patient epsilon cap instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from telehealth.storage.research_cells import DAY_GROUP, GroupBy, day_masks

Conn = psycopg.AsyncConnection[Any]
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

#: The new release's members as per-day bitmaps (bit h: in the cell of `grp` starting at hour h).
_BITS_SCANNED = """
SELECT grp, (bucket AT TIME ZONE 'UTC')::date AS day, patient_id,
       bit_or(1 << extract(hour FROM bucket AT TIME ZONE 'UTC')::int) AS hours
FROM cell_members GROUP BY 1, 2, 3
"""
#: The eligible as a filter on the scan (hashed by PostgreSQL for a long array), not a join:
#: joined, they made the planner hash every patient-day of the range, 3 times as slow over
#: 10,000 patients. Patients are joined only when the group needs them.
_BITS_FAST = """
SELECT {group} AS grp, s.day, s.patient_id, s.hours
FROM research_patient_days s {patients}
WHERE s.patient_id = ANY(%(eligible)s::uuid[])
  AND s.purpose = %(purpose)s AND s.code = %(code)s AND s.day >= %(first)s AND s.day <= %(last)s
"""
_PATIENTS = "JOIN patients p ON p.id = s.patient_id"

#: Patients common to each candidate pair: the new and the old release's day bitmaps are joined
#: once per (group, day, old release, old group, old day), their mask pairs counted, and each
#: pair's count read off the bits of its two buckets' start hours. The old members are unnested
#: first (MATERIALIZED) and meet `new_bits` in one hash join: unnested inside the join, which
#: PostgreSQL takes for 10 elements an array, they had it scan all of `new_bits` once per old
#: member row (39 s against 7 s for a release by sex over 10,000 patients after six releases
#: of the same days).
_COMMON = """
WITH c AS (
    SELECT i, grp, (bucket AT TIME ZONE 'UTC')::date AS day,
           extract(hour FROM bucket AT TIME ZONE 'UTC')::int AS h, release_id, old_grp,
           (old_bucket AT TIME ZONE 'UTC')::date AS oday,
           extract(hour FROM old_bucket AT TIME ZONE 'UTC')::int AS oh
    FROM unnest(%(i)s::int[], %(buckets)s::timestamptz[], %(groups)s::text[], %(releases)s::int8[],
                %(old_buckets)s::timestamptz[], %(old_groups)s::text[])
         AS t(i, bucket, grp, release_id, old_bucket, old_grp)
), keys AS (
    SELECT DISTINCT grp, day, release_id, old_grp, oday FROM c
), old AS MATERIALIZED (
    SELECT k.grp, k.day, k.release_id, k.old_grp, k.oday, u.patient_id, u.hours AS ohs
    FROM keys k
    JOIN research_released_members o ON o.release_id = k.release_id AND o.grp = k.old_grp AND o.day = k.oday
    CROSS JOIN LATERAL unnest(o.patients, o.hours) AS u(patient_id, hours)
), masks AS (
    SELECT o.grp, o.day, o.release_id, o.old_grp, o.oday, n.hours AS nh, o.ohs, count(*)::int AS k
    FROM old o JOIN new_bits n ON n.grp = o.grp AND n.day = o.day AND n.patient_id = o.patient_id
    GROUP BY 1, 2, 3, 4, 5, 6, 7
)
SELECT c.i,
       coalesce(sum(m.k) FILTER (WHERE m.nh & (1 << c.h) <> 0 AND m.ohs & (1 << c.oh) <> 0), 0)::int AS common
FROM c LEFT JOIN masks m USING (grp, day, release_id, old_grp, oday)
GROUP BY c.i
"""

_RECORD_CELLS = """
INSERT INTO research_released_cells (release_id, code, bucket_start, bucket_end, grp, patients)
SELECT %(release)s, %(code)s, t.bucket, t.bucket + %(size)s, t.grp, t.n
FROM unnest(%(buckets)s::timestamptz[], %(groups)s::text[], %(ns)s::int[]) AS t(bucket, grp, n)
"""
#: From the members' query (`new_bits` only if the comparison built it): most releases have no
#: earlier cell near enough in size to compare, and need no temporary table at all. Each row's
#: mask is read off a dense (group, day) array rather than joined: joined, PostgreSQL sorted
#: every member-day for the grouping (a third slower by sex).
_RECORD_MEMBERS = """
INSERT INTO research_released_members (release_id, grp, day, patients, hours)
SELECT %(release)s, grp, day, array_agg(patient_id), array_agg(hours & mask)
FROM (
    SELECT n.grp, n.day, n.patient_id, n.hours,
           (%(masks)s::int[])[(array_position(%(groups)s::text[], n.grp) - 1) * %(days)s
                              + (n.day - %(mask_first)s) + 1] AS mask
    FROM ({bits}) n
    WHERE n.day >= %(mask_first)s AND n.day < %(mask_first)s + %(days)s
) m
WHERE hours & mask <> 0
GROUP BY grp, day
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


@dataclass
class Members:
    """Who is in a release's cells, as (group, day, patient, hours) rows: from the per-patient
    scan's `cell_members`, or (rollup path) the eligible patients' `research_patient_days`;
    from `new_bits` once the comparison has kept them there."""

    fast: bool
    purpose: str
    code: str
    group_by: GroupBy
    eligible: list[UUID]
    start: datetime
    end: datetime
    kept: bool = field(default=False, init=False)

    def query(self) -> tuple[str, dict[str, Any]]:
        if self.kept:
            return "SELECT grp, day, patient_id, hours FROM new_bits", {}
        if not self.fast:
            return _BITS_SCANNED, {}
        sql = _BITS_FAST.format(
            group=DAY_GROUP[self.group_by], patients="" if self.group_by == "none" else _PATIENTS
        )
        return sql, {
            "eligible": self.eligible,
            "purpose": self.purpose,
            "code": self.code,
            "first": self.start.astimezone(UTC).date(),
            "last": self.end.astimezone(UTC).date(),
        }


async def near_duplicates(
    conn: Conn, members: Members, pairs: list[dict[str, Any]], *, k: int
) -> dict[tuple[datetime, str], str]:
    """Cells to suppress, (bucket, group) -> why. The new members are kept in `new_bits` for
    the comparison (and the record after it), only when there is something to compare."""
    if not pairs:
        return {}
    bits, params = members.query()
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("DROP TABLE IF EXISTS new_bits")
        await cur.execute(f"CREATE TEMP TABLE new_bits ON COMMIT DROP AS {bits}".encode(), params)
        await cur.execute("ANALYZE new_bits")
        members.kept = True
        await _room(cur)
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


async def _room(cur: psycopg.AsyncCursor[Any]) -> None:
    """Memory for this transaction's joins and groupings over every member-day: with the default
    4 MB they spill to disk (the comparison after many releases 7 -> 5.8 s with 64 MB)."""
    await cur.execute("SET LOCAL work_mem = '64MB'")


async def record(
    conn: Conn,
    members: Members,
    *,
    release_id: int,
    code: str,
    size: timedelta,
    released: list[tuple[datetime, str, int]],
) -> None:
    """Keep the released cells and their members."""
    if not released:
        return
    masks = day_masks([(bucket, grp) for bucket, grp, _ in released])
    bits, params = members.query()
    async with conn.cursor() as cur:
        await cur.execute(
            _RECORD_CELLS,
            {
                "release": release_id,
                "code": code,
                "size": size,
                "buckets": [b for b, _, _ in released],
                "groups": [g for _, g, _ in released],
                "ns": [n for _, _, n in released],
            },
        )
        await _room(cur)
        await cur.execute(
            _RECORD_MEMBERS.format(bits=bits).encode(), params | _dense(masks) | {"release": release_id}
        )


def _dense(masks: dict[tuple[str, date], int]) -> dict[str, Any]:
    """The masks as one array over every (group, day) from the first day to the last, 0 where
    nothing was released."""
    groups = sorted({g for g, _ in masks})
    first = min(d for _, d in masks)
    days = (max(d for _, d in masks) - first).days + 1
    dense = [0] * (len(groups) * days)
    for (g, d), mask in masks.items():
        dense[groups.index(g) * days + (d - first).days] = mask
    return {"groups": groups, "days": days, "mask_first": first, "masks": dense}
