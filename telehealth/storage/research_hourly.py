"""Hourly cells and their contributors from the cell-level rollups (plain PostgreSQL only).

`research_hourly_cells` holds each (hour, sex, age band) cell's patients, readings and sum of
patient means; `research_hourly_bins` the histogram of those means at the released precision
(`research_hourly_bins_sex`: summed over age bands; `research_hourly_bins_all`: over both);
`research_patient_days` which hours of each day a patient has eligible readings in. A
release over thousands of patients then reads a few rows per hour, not one per patient-hour.
Patients eligible when their readings were processed but not now are taken out again from
their own rollup rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from telehealth.errors import TelehealthError
from telehealth.research.disclosure import READINGS_PER_PATIENT_HOUR, RawCell
from telehealth.storage.research_cells import DAY_GROUP, GroupBy, day_masks

Conn = psycopg.AsyncConnection[Any]

_CELL_GROUP = {"none": "'all'", "sex": "sex", "age_band": "age_band"}
_PATIENT_GROUP = {"none": "'all'", "sex": "p.sex", "age_band": "research_age_band(p.birth_date, h.hour)"}
_BINS = {
    "none": "research_hourly_bins_sex",
    "sex": "research_hourly_bins_sex",
    "age_band": "research_hourly_bins",
}
_BY_SEX = "AND (cardinality(%(sexes)s::text[]) = 0 OR sex = ANY(%(sexes)s))"

#: One statement: the cells, less what excluded patients contributed, each with the histogram
#: of patient means (bins at the released precision, ascending, empty bins left out).
_CELLS = """
WITH cells AS (
    SELECT hour, {group} AS grp, sum(patients)::int8 AS patients, sum(readings)::int8 AS readings,
           sum(sum_means) AS sum_means
    FROM research_hourly_cells
    WHERE purpose = %(purpose)s AND code = %(code)s AND hour >= %(start)s AND hour < %(end)s
      AND NOT hour = ANY(%(skip)s) {by_sex}
    GROUP BY 1, 2
), gone AS (
    SELECT h.hour, {patient_group} AS grp, least(h.n, %(cap)s) AS n, h.total / h.n AS mean
    FROM research_hourly h JOIN patients p ON p.id = h.patient_id
    WHERE h.patient_id = ANY(%(excluded)s) AND h.purpose = %(purpose)s AND h.code = %(code)s
      AND h.hour >= %(start)s AND h.hour < %(end)s AND NOT h.hour = ANY(%(skip)s)
      AND (cardinality(%(sexes)s::text[]) = 0 OR p.sex = ANY(%(sexes)s))
), gone_cells AS (
    SELECT hour, grp, count(*) AS patients, sum(n) AS readings, sum(mean) AS sum_means
    FROM gone GROUP BY 1, 2
), hist AS ({hist}), histograms AS (
    SELECT hour, grp, array_agg(bin ORDER BY bin) AS bins, array_agg(k ORDER BY bin) AS counts
    FROM hist GROUP BY 1, 2
)
SELECT c.hour, c.grp, c.patients - coalesce(g.patients, 0) AS patients,
       c.readings - coalesce(g.readings, 0) AS readings,
       c.sum_means - coalesce(g.sum_means, 0) AS sum_means, h.bins, h.counts
FROM cells c
LEFT JOIN gone_cells g USING (hour, grp)
LEFT JOIN histograms h USING (hour, grp)
WHERE c.patients - coalesce(g.patients, 0) > 0
"""


class RollupMismatch(TelehealthError):
    """The cell rollup and its histogram disagree: rebuild them from `research_hourly`."""


#: a histogram table whose rows are the asked cells' bins already, none excluded: read in
#: key order, no re-aggregation (a third of the time for 30 days by sex)
_HIST_AS_STORED = """
    SELECT hour, {group} AS grp, bin, patients::int4 AS k FROM {bins}
    WHERE purpose = %(purpose)s AND code = %(code)s AND hour >= %(start)s AND hour < %(end)s
      AND NOT hour = ANY(%(skip)s) AND patients > 0 {bins_by_sex}
"""
#: bins summed into the asked groups, less the excluded patients' means
_HIST_SUMMED = """
    SELECT hour, grp, bin, sum(k) AS k FROM (
        SELECT hour, {group} AS grp, bin, patients::int4 AS k FROM {bins}
        WHERE purpose = %(purpose)s AND code = %(code)s AND hour >= %(start)s AND hour < %(end)s
          AND NOT hour = ANY(%(skip)s) {bins_by_sex}
        UNION ALL
        -- the same binning as the rollup trigger's
        SELECT hour, grp, floor(mean / research_step(%(code)s) + 0.5)::int, -1 FROM gone
    ) b
    GROUP BY 1, 2, 3 HAVING sum(k) > 0
"""


async def rollup_available(conn: Conn) -> bool:
    """Whether the trigger that maintains the cell-level rollups is there: on both paths since
    migration 0035 (before it, TimescaleDB databases had a continuous aggregate instead)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """SELECT EXISTS (SELECT 1 FROM pg_trigger
                              WHERE tgname = 'research_readings_rollup'
                                AND tgrelid = to_regclass('research_readings')) AS maintained"""
        )
        row = await cur.fetchone()
    return row is not None and bool(row["maintained"])


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
    skip: list[datetime] | None = None,
) -> tuple[list[RawCell], dict[datetime, int]]:
    """Hourly cells from the cell-level rollups, less the contributions of `excluded` patients
    (eligible when processed, not now); the histogram of patients' means is binned as
    `raw_cells` bins it."""
    # The least detailed histogram that serves: summed over everything, per sex, or per
    # (sex, age band).
    everyone = group_by == "none" and not sexes
    bins = "research_hourly_bins_all" if everyone else _BINS[group_by]
    as_stored = not excluded and (everyone or group_by == "sex")
    shape = {"group": _CELL_GROUP[group_by], "bins": bins, "bins_by_sex": "" if everyone else _BY_SEX}
    hist = (_HIST_AS_STORED if as_stored else _HIST_SUMMED).format(**shape)
    sql = _CELLS.format(
        group=_CELL_GROUP[group_by], patient_group=_PATIENT_GROUP[group_by], by_sex=_BY_SEX, hist=hist
    )
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
    cells: list[RawCell] = []
    totals: dict[datetime, int] = {}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql.encode(), params)
        rows = await cur.fetchall()
    for r in rows:
        n = int(r["patients"])
        if r["bins"] is None:
            raise RollupMismatch(f"{code} cell {r['hour']} {r['grp']} has {n} patients and no histogram")
        cells.append(
            RawCell(
                bucket=r["hour"],
                group=str(r["grp"]),
                patients=n,
                readings=int(r["readings"]),
                mean=r["sum_means"] / n,
                histogram=tuple(zip(r["bins"], r["counts"], strict=True)),
            )
        )
        totals[r["hour"]] = totals.get(r["hour"], 0) + n
    return cells, totals


#: For each eligible patient, one probe of their own day rows (index on patient_id) that stops
#: at the first day with a reading in a released cell of their group: LATERAL ... LIMIT 1
#: keeps PostgreSQL from turning it into a hash join over every patient-day of the range.
_MEMBERS = """
SELECT e.id AS patient_id
FROM unnest(%(eligible)s::uuid[]) AS e(id)
JOIN patients p ON p.id = e.id
CROSS JOIN LATERAL (
    SELECT 1 FROM research_patient_days s
    JOIN unnest(%(groups)s::text[], %(days)s::date[], %(masks)s::int[]) AS r(grp, day, mask)
      ON r.day = s.day AND r.grp = {group}
    WHERE s.patient_id = e.id AND s.purpose = %(purpose)s AND s.code = %(code)s
      AND s.day >= %(first)s AND s.day <= %(last)s AND s.hours & r.mask <> 0
    LIMIT 1
) hit
"""


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
    masks = day_masks(released)
    if not masks:
        return []
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            _MEMBERS.format(group=DAY_GROUP[group_by]).encode(),
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
