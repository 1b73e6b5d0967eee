"""The consensus CGM summary of one patient, computed in SQL.

Metrics of the International Consensus on Time in Range (Battelino et al., Diabetes Care
2019): time in range 3.9-10.0 mmol/L (70-180 mg/dL, inclusive), below 3.9 and below 3.0,
above 10.0 and above 13.9 (each "below"/"above" share includes the more extreme one), mean,
GMI (3.31 + 0.02392 x mean in mg/dL), coefficient of variation, the share of expected CGM
readings present, and the ambulatory glucose profile: the 5th, 25th, 50th, 75th and 95th
percentiles by time of day.

Only CGM glucose counts (`source = 'cgm'`, or a reading without a source from a CGM device);
finger-prick readings and values flagged implausible or future-dated are left out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from telehealth.codes import MG_DL_PER_MMOL_L

#: Expected CGM interval when the patient has no CGM device on record (most CGMs: 5 min).
DEFAULT_CGM_INTERVAL_S = 300
PERCENTILES = (0.05, 0.25, 0.5, 0.75, 0.95)

_CGM = """
WITH g AS (
    SELECT r.measured_at, r.value
    FROM readings r LEFT JOIN devices d ON d.id = r.device_id
    WHERE r.patient_id = %(patient)s AND r.code = 'glucose'
      AND r.measured_at >= %(start)s AND r.measured_at < %(end)s
      AND (r.source = 'cgm' OR (r.source IS NULL AND d.kind = 'cgm'))
      AND NOT (r.quality && ARRAY['implausible', 'future'])
)
"""

_METRICS = (
    _CGM
    + """,
step AS (
    SELECT coalesce(min(expected_interval_s), %(default_interval)s) AS s
    FROM devices WHERE patient_id = %(patient)s AND kind = 'cgm'
)
SELECT count(g.value) AS readings,
       step.s AS interval_s,
       floor(extract(epoch FROM %(end)s::timestamptz - %(start)s::timestamptz) / step.s)::bigint
           AS expected_readings,
       count(DISTINCT date_bin(make_interval(secs => step.s), g.measured_at, TIMESTAMPTZ 'epoch'))
           AS slots_with_data,
       100.0::float8 * count(*) FILTER (WHERE g.value >= 3.9 AND g.value <= 10.0) / nullif(count(g.value), 0)
           AS in_range_pct,
       100.0::float8 * count(*) FILTER (WHERE g.value < 3.9) / nullif(count(g.value), 0) AS below_3_9_pct,
       100.0::float8 * count(*) FILTER (WHERE g.value < 3.0) / nullif(count(g.value), 0) AS below_3_0_pct,
       100.0::float8 * count(*) FILTER (WHERE g.value > 10.0) / nullif(count(g.value), 0) AS above_10_pct,
       100.0::float8 * count(*) FILTER (WHERE g.value > 13.9) / nullif(count(g.value), 0) AS above_13_9_pct,
       avg(g.value) AS mean_mmol_l,
       stddev_samp(g.value) AS sd_mmol_l,
       100.0::float8 * stddev_samp(g.value) / nullif(avg(g.value), 0) AS cv_pct,
       3.31 + 0.02392 * avg(g.value) * %(mg_dl)s AS gmi_pct
FROM step LEFT JOIN g ON true
GROUP BY step.s
"""
)

_AGP = (
    _CGM
    + """
SELECT (floor((extract(hour FROM g.measured_at AT TIME ZONE %(tz)s) * 60
               + extract(minute FROM g.measured_at AT TIME ZONE %(tz)s)) / %(bin)s) * %(bin)s)::int
           AS minute_of_day,
       count(*) AS readings,
       percentile_cont(%(percentiles)s::float8[]) WITHIN GROUP (ORDER BY g.value) AS p
FROM g GROUP BY 1 ORDER BY 1
"""
)


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
    params = {
        "patient": patient_id,
        "start": start,
        "end": end,
        "tz": tz,
        "bin": bin_minutes,
        "percentiles": list(PERCENTILES),
        "mg_dl": MG_DL_PER_MMOL_L,
        "default_interval": DEFAULT_CGM_INTERVAL_S,
    }
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_METRICS, params)
        metrics = await cur.fetchone()
        await cur.execute(_AGP, params)
        agp = await cur.fetchall()
    assert metrics is not None  # one row: step always has one
    expected = metrics["expected_readings"] or 0
    sufficiency = min(100.0, 100.0 * metrics["slots_with_data"] / expected) if expected else 0.0
    return {
        **{k: metrics[k] for k in metrics if k not in ("slots_with_data",)},
        "data_sufficiency_pct": sufficiency,
        "agp": [
            {
                "minute_of_day": row["minute_of_day"],
                "readings": row["readings"],
                **{f"p{round(q * 100)}": v for q, v in zip(PERCENTILES, row["p"], strict=True)},
            }
            for row in agp
        ],
    }
