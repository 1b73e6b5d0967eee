"""The consensus CGM summary of one patient and their daily glucose profiles, computed in SQL.

Metrics of the International Consensus on Time in Range (Battelino et al., Diabetes Care
2019): time in the five ranges (below 54, 54-69, 70-180, 181-250 and above 250 mg/dL, decided
on whole mg/dL: `telehealth.glucose_ranges`), mean, GMI (3.31 + 0.02392 x mean in mg/dL),
coefficient of variation, the share of expected CGM readings present and whether it reaches
the consensus minimum of 70 %, the days with data, and the ambulatory glucose profile: the 5th,
25th, 50th, 75th and 95th percentiles by time of day in the patient's time zone.

A period of N days is N calendar days in the patient's time zone, today (so far) included: the
days of the daily profiles, so "days with data" and the report's day panels always agree.

Only CGM glucose counts (`source = 'cgm'`, or a reading without a source from a CGM device);
finger-prick readings and values flagged implausible or future-dated are left out. A reading
counts once per device and measured time: one sent again under a new sequence number (a
resend after a lost acknowledgement, a Nightscout re-upload) is the same reading.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import dict_row

from telehealth.codes import MG_DL_PER_MMOL_L
from telehealth.glucose_ranges import (
    LOW_MG_DL,
    TARGET_HIGH_MG_DL,
    VERY_HIGH_MG_DL,
    VERY_LOW_MG_DL,
    Band,
    band_of,
    whole_mg_dl_sql,
)

#: Expected CGM interval when the patient has no CGM device on record (most CGMs: 5 min).
DEFAULT_CGM_INTERVAL_S = 300
PERCENTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
#: the consensus minimum share of CGM data for a 14-day report
SUFFICIENT_PCT = 70.0

# One row per device and measured time (the first stored: lowest sequence number), in time order,
# with its local time in the patient's zone, computed once. Time leads the sort key, so the sort
# compares timestamps, not device names; the device is looked up only for a reading without a
# source (one lookup each), not joined to every reading.
_CGM = f"""
WITH g AS MATERIALIZED (
    SELECT DISTINCT ON (r.measured_at, r.device_id)
           r.measured_at, r.measured_at AT TIME ZONE %(tz)s AS local, r.value,
           {whole_mg_dl_sql("r.value")} AS mg
    FROM readings r
    WHERE r.patient_id = %(patient)s AND r.code = 'glucose'
      AND r.measured_at >= %(start)s AND r.measured_at < %(end)s
      AND (r.source = 'cgm'
           OR (r.source IS NULL
               AND EXISTS (SELECT FROM devices d WHERE d.id = r.device_id AND d.kind = 'cgm')))
      AND NOT (r.quality && ARRAY['implausible', 'future'])
    ORDER BY r.measured_at, r.device_id, r.seq
)
"""


def _share(condition: str) -> str:
    return f"100.0::float8 * count(*) FILTER (WHERE {condition}) / nullif(count(g.value), 0)"


# The metrics and the AGP in one statement, so the readings are read and deduplicated once; the
# AGP's slice of the day is computed in float8 (numeric EXTRACT costs more than the rest).
_SUMMARY = (
    _CGM
    + f""",
step AS (
    SELECT coalesce(min(expected_interval_s), %(default_interval)s) AS s
    FROM devices WHERE patient_id = %(patient)s AND kind = 'cgm'
),
agp AS (
    SELECT (floor(date_part('epoch', g.local::time) / (60 * %(bin)s)) * %(bin)s)::int AS minute_of_day,
           count(*) AS readings,
           percentile_cont(%(percentiles)s::float8[]) WITHIN GROUP (ORDER BY g.value) AS p
    FROM g GROUP BY 1
)
SELECT count(g.value) AS readings,
       (SELECT s FROM step) AS interval_s,
       floor(extract(epoch FROM %(end)s::timestamptz - %(start)s::timestamptz) / (SELECT s FROM step))::bigint
           AS expected_readings,
       count(DISTINCT date_bin(make_interval(secs => (SELECT s FROM step)), g.measured_at,
                               TIMESTAMPTZ 'epoch')) AS slots_with_data,
       count(DISTINCT g.local::date) AS days_with_data,
       {_share(f"g.mg >= {LOW_MG_DL} AND g.mg <= {TARGET_HIGH_MG_DL}")} AS in_range_pct,
       {_share(f"g.mg < {LOW_MG_DL}")} AS below_3_9_pct,
       {_share(f"g.mg < {VERY_LOW_MG_DL}")} AS below_3_0_pct,
       {_share(f"g.mg > {TARGET_HIGH_MG_DL}")} AS above_10_pct,
       {_share(f"g.mg > {VERY_HIGH_MG_DL}")} AS above_13_9_pct,
       {_share(f"g.mg >= {VERY_LOW_MG_DL} AND g.mg < {LOW_MG_DL}")} AS low_pct,
       {_share(f"g.mg > {TARGET_HIGH_MG_DL} AND g.mg <= {VERY_HIGH_MG_DL}")} AS high_pct,
       avg(g.value) AS mean_mmol_l,
       stddev_samp(g.value) AS sd_mmol_l,
       100.0::float8 * stddev_samp(g.value) / nullif(avg(g.value), 0) AS cv_pct,
       3.31 + 0.02392 * avg(g.value) * %(mg_dl)s::float8 AS gmi_pct,
       (SELECT coalesce(json_agg(agp ORDER BY agp.minute_of_day), '[]') FROM agp) AS agp
FROM g
"""
)

_DAYS = (
    _CGM
    + """
SELECT g.local::date AS day,
       date_part('epoch', g.local::time) / 60 AS minute_of_day,
       g.measured_at, g.value
FROM g ORDER BY g.measured_at
"""
)


def _params(patient_id: UUID, start: datetime, end: datetime, tz: str) -> dict[str, Any]:
    return {
        "patient": patient_id,
        "start": start,
        "end": end,
        "tz": tz,
        "mg_dl": MG_DL_PER_MMOL_L,
        "default_interval": DEFAULT_CGM_INTERVAL_S,
    }


async def glucose_summary(
    conn: psycopg.AsyncConnection[Any],
    patient_id: UUID,
    start: datetime,
    end: datetime,
    *,
    tz: str = "UTC",
    bin_minutes: int = 30,
) -> dict[str, Any]:
    """Metrics over [start, end) and the AGP in `bin_minutes` slices of the day in `tz`."""
    params = _params(patient_id, start, end, tz) | {"bin": bin_minutes, "percentiles": list(PERCENTILES)}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_SUMMARY, params)
        metrics = await cur.fetchone()
    assert metrics is not None  # one row: an aggregate without GROUP BY
    expected = metrics["expected_readings"] or 0
    sufficiency = min(100.0, 100.0 * metrics["slots_with_data"] / expected) if expected else 0.0
    mean = metrics["mean_mmol_l"]
    shares = {
        Band.VERY_LOW.value: metrics["below_3_0_pct"],
        Band.LOW.value: metrics["low_pct"],
        Band.TARGET.value: metrics["in_range_pct"],
        Band.HIGH.value: metrics["high_pct"],
        Band.VERY_HIGH.value: metrics["above_13_9_pct"],
    }
    return {
        **{k: metrics[k] for k in metrics if k not in ("slots_with_data", "low_pct", "high_pct", "agp")},
        "mean_mg_dl": None if mean is None else mean * MG_DL_PER_MMOL_L,
        "time_in_ranges": shares if metrics["readings"] else None,
        "data_sufficiency_pct": sufficiency,
        "sufficient": sufficiency >= SUFFICIENT_PCT,
        "agp": [
            {
                "minute_of_day": row["minute_of_day"],
                "readings": row["readings"],
                **{f"p{round(q * 100)}": v for q, v in zip(PERCENTILES, row["p"], strict=True)},
            }
            for row in metrics["agp"]
        ],
    }


def local_days(end: datetime, days: int, tz: str) -> tuple[list[date], datetime]:
    """The last `days` calendar days in `tz` up to `end` (today included, oldest first), and the
    moment the first of them began."""
    zone = ZoneInfo(tz)
    today = end.astimezone(zone).date()
    dates = [today - timedelta(days=n) for n in range(days - 1, -1, -1)]
    return dates, datetime.combine(dates[0], time(0), tzinfo=zone)


async def daily_profiles(
    conn: psycopg.AsyncConnection[Any], patient_id: UUID, end: datetime, *, days: int = 14, tz: str = "UTC"
) -> list[dict[str, Any]]:
    """Each of the last `days` calendar days in `tz`: its CGM readings by minute of the day and
    its time in range; days without readings are listed too (empty), so gaps show."""
    dates, start = local_days(end, days, tz)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_DAYS, _params(patient_id, start, end, tz))
        rows = await cur.fetchall()
    by_day: dict[date, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_day[row["day"]].append(row)
    out = []
    for day in dates:
        own = by_day.get(day, [])
        in_range = sum(band_of(r["value"]) is Band.TARGET for r in own)
        out.append(
            {
                "date": day,
                "readings": len(own),
                "in_range_pct": 100.0 * in_range / len(own) if own else None,
                "points": [
                    {
                        "minute_of_day": r["minute_of_day"],
                        "measured_at": r["measured_at"],
                        "value": r["value"],
                    }
                    for r in own
                ],
            }
        )
    return out
