"""Raw aggregate cells from the hourly rollup, one value per patient per cell.

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

from telehealth.research.disclosure import READINGS_PER_PATIENT_HOUR, RawCell

Conn = psycopg.AsyncConnection[Any]
GroupBy = Literal["none", "age_band", "sex", "condition"]

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
SELECT bucket, grp, count(*) AS patients, sum(n) AS readings, avg(mean) AS mean,
       min(mean) AS lo, max(mean) AS hi,
       percentile_disc(%(fractions)s::float8[]) WITHIN GROUP (ORDER BY mean) AS pct
FROM cell_members GROUP BY bucket, grp
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
    percentiles: list[int],
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
        "fractions": [p / 100 for p in percentiles],
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
                min=float(r["lo"]),
                max=float(r["hi"]),
                percentiles={f"p{p}": float(v) for p, v in zip(percentiles, r["pct"], strict=True)},
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


# --- The cell-level path: hourly buckets read from research_hourly_cells / _bins ----------

_FAST_GROUP = {"none": "'all'", "sex": "sex", "age_band": "age_band"}

_FAST_CELLS = """
SELECT hour, {group} AS grp, sum(patients) AS patients, sum(readings) AS readings,
       sum(sum_means) AS sum_means
FROM research_hourly_cells
WHERE purpose = %(purpose)s AND code = %(code)s AND hour >= %(start)s AND hour < %(end)s
  AND NOT hour = ANY(%(skip)s) AND (cardinality(%(sexes)s::text[]) = 0 OR sex = ANY(%(sexes)s))
GROUP BY 1, 2
"""
_FAST_BINS = """
SELECT hour, {group} AS grp, bin, sum(patients) AS patients
FROM {table}
WHERE purpose = %(purpose)s AND code = %(code)s AND hour >= %(start)s AND hour < %(end)s
  AND NOT hour = ANY(%(skip)s) {sex_filter}
GROUP BY 1, 2, 3 HAVING sum(patients) <> 0
"""
#: what patients who are no longer eligible contributed, to be taken out again
_FAST_EXCLUDED = """
SELECT h.hour, {group} AS grp, least(h.n, %(cap)s) AS n, h.total / h.n AS mean
FROM research_hourly h JOIN patients p ON p.id = h.patient_id
WHERE h.patient_id = ANY(%(excluded)s) AND h.purpose = %(purpose)s AND h.code = %(code)s
  AND h.hour >= %(start)s AND h.hour < %(end)s AND NOT h.hour = ANY(%(skip)s)
  AND (cardinality(%(sexes)s::text[]) = 0 OR p.sex = ANY(%(sexes)s))
"""
_PATIENT_GROUP = {"none": "'all'", "sex": "p.sex", "age_band": "research_age_band(p.birth_date, h.hour)"}


async def rollup_available(conn: Conn) -> bool:
    """The cell-level rollups are maintained on plain PostgreSQL only (see the migration)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT timescale FROM schema_migrations WHERE version = 5")
        row = await cur.fetchone()
    return row is not None and not row["timescale"]


def _step(code: str) -> float:
    return 0.1 if code == "glucose" else 1.0


async def fast_cells(
    conn: Conn,
    *,
    purpose: str,
    code: str,
    start: datetime,
    end: datetime,
    group_by: GroupBy,
    sexes: list[str],
    excluded: list[UUID],
    percentiles: list[int],
    skip: list[datetime] | None = None,
) -> tuple[list[RawCell], dict[datetime, int]]:
    """Hourly cells from the cell-level rollups, less the contributions of `excluded` patients
    (eligible when processed, not now). Percentiles are nearest-rank over patients' means at
    the released precision, as `raw_cells` computes them."""
    params = {
        "purpose": purpose,
        "code": code,
        "start": start,
        "end": end,
        "skip": skip or [],
        "sexes": sexes,
        "excluded": excluded,
        "cap": READINGS_PER_PATIENT_HOUR,
    }
    step = _step(code)
    totals_by: dict[tuple[datetime, str], list[float]] = {}
    bins: dict[tuple[datetime, str], dict[int, int]] = {}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_FAST_CELLS.format(group=_FAST_GROUP[group_by]).encode(), params)
        for r in await cur.fetchall():
            totals_by[(r["hour"], r["grp"])] = [float(r["patients"]), float(r["readings"]), r["sum_means"]]
        # Ungrouped releases of an unrestricted cohort read the histogram summed over groups.
        if group_by == "none" and not sexes:
            sql = _FAST_BINS.format(group="'all'", table="research_hourly_bins_all", sex_filter="")
        else:
            by_sex = "AND (cardinality(%(sexes)s::text[]) = 0 OR sex = ANY(%(sexes)s))"
            sql = _FAST_BINS.format(
                group=_FAST_GROUP[group_by], table="research_hourly_bins", sex_filter=by_sex
            )
        await cur.execute(sql.encode(), params)
        for r in await cur.fetchall():
            bins.setdefault((r["hour"], r["grp"]), {})[r["bin"]] = int(r["patients"])
        if excluded:
            await cur.execute(_FAST_EXCLUDED.format(group=_PATIENT_GROUP[group_by]).encode(), params)
            for r in await cur.fetchall():
                key = (r["hour"], r["grp"])
                sums = totals_by[key]
                sums[0] -= 1
                sums[1] -= r["n"]
                sums[2] -= r["mean"]
                bins[key][_floor_half(r["mean"], step)] -= 1
    cells: list[RawCell] = []
    totals: dict[datetime, int] = {}
    for (hour, grp), (patients, readings, sum_means) in totals_by.items():
        n = round(patients)
        if n <= 0:
            continue
        values = sorted((b, k) for b, k in bins.get((hour, grp), {}).items() if k > 0)
        cells.append(
            RawCell(
                bucket=hour,
                group=str(grp),
                patients=n,
                readings=round(readings),
                mean=sum_means / n,
                min=values[0][0] * step,
                max=values[-1][0] * step,
                percentiles={f"p{p}": _nearest_rank(values, n, p) * step for p in percentiles},
            )
        )
        totals[hour] = totals.get(hour, 0) + n
    return cells, totals


def _floor_half(value: float, step: float) -> int:
    return int((value / step + 0.5) // 1)


def _nearest_rank(histogram: list[tuple[int, int]], n: int, percentile: int) -> int:
    """The bin holding the k-th smallest of n values, k = ceil(p/100 * n) (nearest rank)."""
    rank = max(1, -(-percentile * n // 100))
    seen = 0
    for b, count in histogram:
        seen += count
        if seen >= rank:
            return b
    return histogram[-1][0]


async def fast_members(
    conn: Conn,
    *,
    purpose: str,
    code: str,
    group_by: GroupBy,
    eligible: list[UUID],
    released: list[tuple[datetime, str]],
) -> list[UUID]:
    """Eligible patients with a reading in an hour whose cell for their group was released,
    from each patient's per-day bitmap of hours with eligible readings."""
    masks: dict[tuple[str, date], int] = {}
    for hour, grp in released:
        at = hour.astimezone(UTC)
        masks[(grp, at.date())] = masks.get((grp, at.date()), 0) | (1 << at.hour)
    if not masks:
        return []
    group = {"none": "'all'", "sex": "p.sex", "age_band": "research_age_band(p.birth_date, s.day)"}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"""SELECT DISTINCT s.patient_id
                FROM research_patient_days s
                JOIN unnest(%(eligible)s::uuid[]) AS e(id) ON e.id = s.patient_id
                JOIN patients p ON p.id = s.patient_id
                JOIN unnest(%(groups)s::text[], %(days)s::date[], %(masks)s::int[]) AS r(grp, day, mask)
                  ON r.day = s.day AND r.grp = {group[group_by]}
                WHERE s.purpose = %(purpose)s AND s.code = %(code)s
                  AND s.day >= %(first)s AND s.day <= %(last)s AND s.hours & r.mask <> 0""".encode(),
            {
                "eligible": eligible,
                "groups": [g for g, _ in masks],
                "days": [d for _, d in masks],
                "masks": list(masks.values()),
                "purpose": purpose,
                "code": code,
                "first": min(d for _, d in masks),
                "last": max(d for _, d in masks),
            },
        )
        return [r["patient_id"] for r in await cur.fetchall()]
